"""The patient-level report (paper 002 Fig. 7/8) as DICOM: a TID 1500 SR and a one-page PDF.

``encode_patient(report, sources, current=...)`` takes a ``pipelines.patient.report.PatientReport`` of one
X-ray and one MRI study of the same patient and returns ``[sr, pdf]``. Both objects belong to the study
named by ``current`` (the node puts them in the study whose analysis completed the pair, i.e. the later
one): patient and study attributes come from that study's first image; the other study's images are
referenced as evidence (highdicom lists them in the Pertinent Other Evidence Sequence) and in the Image
Library, and both Study Instance UIDs are written as text.

SR tree (TID 1500 root, so OHIF lists it)::

    Imaging Measurement Report (126000)
      procedure reported: plain radiography + magnetic resonance imaging
      Image Library: the images of both studies the results were found on
      Imaging Measurements
        one group per Fig. 7 factor (coded finding type ``F-PAT-*``, value present/absent/not assessed,
            finding sites = the positive levels)
        one group for the overall diagnosis (cervical spondylosis)
        one group per corroboration (finding type ``F-PAT-CORROB``, sites = the shared level, the rule as a
            coded qualitative evaluation, the weaker probability as NUM)
        one group per model prediction (``neck_pain_recovery``: finding type ``F-PAT-NECKPAIN``, value
            likely/unlikely, the probability as NUM; the model is a further Contributing Equipment item)
      Qualitative Evaluations (text): research statement, the two studies, evidence of every factor and
        every corroboration in words

Every group gets a SCOORD outline of its levels (the whole C2-C7 for a factor not assessed) on an image of
the current study where the keypoints allow (OHIF needs a SCOORD in every group and draws it), else on an
image of the other study, else it is a TID 1501 group without geometry.
Series: ``result_series_uid(study, "patient", "sr" | "pdf")`` (deterministic per study, like the others).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import sites_graphic
from pipelines.dicom_out.identity import (
    RESEARCH_STATEMENT,
    Provenance,
    new_uid,
    result_series_uid,
    run_number,
    series_number,
)
from pipelines.dicom_out.page import Page, RenderedPage
from pipelines.dicom_out.report import build_pdf
from pipelines.dicom_out.sr_content import Group, ImageRef, Num, Region, measurement_report
from pipelines.patient.report import FACTORS, RULES, PatientReport, sites_overlap, vertebrae_of
from pipelines.results import SEGMENTS, AlgorithmInfo, Finding, StudyResult

PIPELINE = "patient"
"""Pseudo pipeline name of the patient-level report (result series, Contributing Equipment)."""
ALGORITHM = AlgorithmInfo(
    name="cspine-node patient report", version="1",
    model_card="Rules of paper 002 Fig. 7/8 over the X-ray and MRI pipelines' findings (pipelines/patient/report.py)",
)
MODALITY_NAMES = {"xray": "X-ray", "mri": "MRI"}

_FACTOR_VALUES = {
    "developmental_stenosis": "F-PAT-DEVSTEN", "curvature": "F-PAT-CURVE", "stability": "F-PAT-STABLE",
    "sagittal_balance": "F-PAT-SVA", "spinal_stenosis": "F-PAT-STENOSIS", "foramen_left": "F-PAT-FORAMEN-L",
    "foramen_right": "F-PAT-FORAMEN-R", "disc_degeneration": "F-PAT-DISC",
}
FACTOR_CODES: dict[str, Code] = {
    f"factor_{f.key}": Code(_FACTOR_VALUES[f.key], codes.PRIVATE_SCHEME, f.name[:64]) for f in FACTORS
}
"""Coded finding type of each Fig. 7 factor (private scheme ``99CSPINE``, values <= 16 characters)."""
SPONDYLOSIS = Code("F-PAT-CSM", codes.PRIVATE_SCHEME, "Cervical spondylosis")
PREDICTION_CODES: dict[str, Code] = {
    "neck_pain_recovery": Code("F-PAT-NECKPAIN", codes.PRIVATE_SCHEME, "Postoperative neck pain recovery"),
}
"""Coded finding type of each model prediction of the report (``PatientReport.predictions``)."""
CORROBORATION = Code("F-PAT-CORROB", codes.PRIVATE_SCHEME, "Corroborating findings at one level")
_RULE_VALUES = {
    "herniation_canal": ("R-HERN-CANAL", "MRI disc herniation with MRI canal stenosis"),
    "herniation_foramen_left": ("R-HERN-FOR-L", "MRI disc herniation with MRI left foramen stenosis"),
    "herniation_foramen_right": ("R-HERN-FOR-R", "MRI disc herniation with MRI right foramen stenosis"),
    "developmental_canal": ("R-DEV-CANAL", "X-ray developmental stenosis with MRI canal stenosis"),
    "instability_herniation": ("R-INST-HERN", "X-ray instability with MRI disc herniation"),
    "instability_canal": ("R-INST-CANAL", "X-ray instability with MRI canal stenosis"),
}
RULE_CODES: dict[str, Code] = {
    r.key: Code(v, codes.PRIVATE_SCHEME, m)
    for r in RULES
    for v, m in [_RULE_VALUES.get(r.key, ("R-" + r.key.upper()[:14], r.key))]
}
"""Coded name of each corroboration rule (``pipelines.patient.report.RULES``)."""

def split_sites(site: str) -> list[str]:
    """``"C3-C4, C5-C6"`` -> ["C3-C4", "C5-C6"]; ``"C3-C4..C6-C7"`` -> ["C3-C4", "C6-C7"]; "" -> []."""
    return [s.strip() for part in site.split(",") for s in part.split("..") if s.strip()]


def _site_codes(site: str) -> tuple[Code, ...]:
    seen: dict[tuple[str, str], Code] = {}
    for s in split_sites(site):
        for c in codes.site_codes(s):
            seen.setdefault((c.value, c.scheme_designator), c)
    return tuple(seen.values())


def _region_sites(site: str) -> list[str]:
    """Sites to outline for a finding: its sites plus every segment within a span (MRI results locate
    segments by disc points, X-ray results vertebrae by corners); the whole C2-C7 when it has none."""
    out: list[str] = []
    for s in split_sites(site) or ["C2-C7"]:
        out.append(s)
        vs = vertebrae_of(s)
        out += [f"{a}-{b}" for a, b in zip(vs[:-1], vs[1:], strict=True)]
    return list(dict.fromkeys(out))


def _region(f: Finding, order: list[StudyResult], sources: Sources) -> Region | None:
    sites = _region_sites(f.site)
    for result in order:
        for image in result.images:
            g = sites_graphic(sites, image)
            if g is not None and g.image_uid in sources.datasets:
                src = sources[g.image_uid]
                frames = sources.frames(g.image_uid, g.frame)
                return Region(g.kind, tuple(g.dicom_points(int(src.Rows), int(src.Columns)).ravel().tolist()),
                              ImageRef(str(src.SOPClassUID), str(src.SOPInstanceUID),
                                       tuple(frames) if frames else None))
    return None


def _group(f: Finding, finding_type: Code, evaluation: tuple[Code, Code], order: list[StudyResult],
           sources: Sources, prov: Provenance) -> Group:
    """A TID 1410 group (outlined on an image of ``order``) or, without a figure, a TID 1501 group."""
    probability = () if f.probability is None else (
        Num(name=codes.PROBABILITY, value=float(f.probability), unit=codes.unit_code("1")),)
    return Group(identifier=f"{f.name} {f.site}: {f.value}"[:64], uid=new_uid(),
                 algorithm=(prov.model_name, prov.software_version), region=_region(f, order, sources),
                 finding_type=finding_type, finding_sites=_site_codes(f.site), measurements=probability,
                 evaluations=(evaluation,))


def _texts(report: PatientReport, results: dict[str, StudyResult]) -> list[str]:
    out = [RESEARCH_STATEMENT]
    for modality in ("xray", "mri"):
        r = results[modality]
        out.append(f"{MODALITY_NAMES[modality]} study {r.study_uid} ({r.algorithm.name} {r.algorithm.version})")
    for f in report.findings():
        rule = f" [rule: {f.threshold}]" if f.threshold else ""
        prefix = "Corroboration - " if f.key == "corroboration" else ""
        prob = f" (p={f.probability:.3f})" if f in report.predictions and f.probability is not None else ""
        out.append(f"{prefix}{f.name} {f.site}: {f.value}{prob}" + (f" - {'; '.join(f.evidence)}" if f.evidence else "") + rule)
    out += [f"Warning: {w}" for w in report.warnings]
    return out


def build_patient_sr(report: PatientReport, results: dict[str, StudyResult], sources: Sources, current: str,
                     prov: Provenance, *, series_uid: str, series_number: int) -> Dataset:
    """The TID 1500 SR of a patient report (see the module docstring)."""
    order = [results[current], results["mri" if current == "xray" else "xray"]]
    groups: list[Group] = []
    for f in report.factors:
        code = FACTOR_CODES.get(f.key) or codes.finding_code(f.key, f.name)
        groups.append(_group(f, code, (code, codes.value_code(f.value)), order, sources, prov))
    if report.overall is not None:
        ov = report.overall
        groups.append(_group(ov, SPONDYLOSIS, (SPONDYLOSIS, codes.value_code(ov.value)), order, sources, prov))
    for c in report.corroborations:
        rule = RULE_CODES.get(c.threshold) or Code("R-" + c.threshold.upper()[:14], codes.PRIVATE_SCHEME, c.name[:64])
        groups.append(_group(c, CORROBORATION, (rule, codes.value_code(c.value)), order, sources, prov))
    for f in report.predictions:  # model outputs (probability as NUM, value likely/unlikely)
        code = PREDICTION_CODES.get(f.key) or codes.finding_code(f.key, f.name)
        groups.append(_group(f, code, (code, codes.value_code(f.value)), order, sources, prov))
    evidence = [sources[i.image_uid] for r in order for i in r.images if i.image_uid in sources.datasets]
    if not evidence:
        raise ValueError("no source image of the current study to attach the patient report to")
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=prov.device_uid(), name=prov.model_name, manufacturer_name=ALGORITHM.manufacturer[:64],
            model_name=prov.model_name),
    )
    sr = measurement_report(
        evidence=evidence, library=evidence, observer=observer, procedures=[codes.PROCEDURE_XRAY, codes.PROCEDURE_MRI],
        groups=groups, remarks=_texts(report, results),
        series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=new_uid(), instance_number=prov.instance_base, manufacturer=ALGORITHM.manufacturer[:64],
        is_complete=True, is_final=False, is_verified=False, contributing_equipment=prov.contributing_equipment(),
        series_description="AI patient-level report X-ray + MRI (SR) - RESEARCH USE",
    )
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    sr.ManufacturerModelName = prov.model_name
    sr.SoftwareVersions = prov.software_version
    return sr


def _wrap(text: str, width: int, lines: int = 3) -> str:
    out = textwrap.wrap(text, width) or [""]
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 3] + "..."
    return "\n".join(out)


FACTOR_SHORT: dict[str, str] = {
    "developmental_stenosis": "Pavlov\n(X-ray)", "curvature": "Kyphosis\n(X-ray)", "stability": "Instability\n(X-ray)",
    "sagittal_balance": "SVA\n(X-ray)", "spinal_stenosis": "Canal\nstenosis (MRI)", "foramen_left": "Foramen L\n(MRI)",
    "foramen_right": "Foramen R\n(MRI)", "disc_degeneration": "Disc\nherniation (MRI)",
}
WHOLE_SPINE_FACTORS = ("curvature", "sagittal_balance")


def level_grid(report: PatientReport) -> tuple[list[str], list[list[str]]]:
    """Fig. 7 factors by level: header, then one row per segment C2-C3..C6-C7 and one for the whole
    C2-C7; cells ``+`` (positive at that level), ``-`` (assessed, negative), ``n/a`` (not assessed) and
    ``*`` marks a level with a corroboration."""
    header = ["Level", *(FACTOR_SHORT[f.key] for f in FACTORS), "Corroborated"]
    by_key = {f.key: f for f in report.factors}
    rows = []
    for level in (*SEGMENTS, "C2-C7"):
        row = [level]
        for fac in FACTORS:
            f = by_key.get(f"factor_{fac.key}")
            whole = fac.key in WHOLE_SPINE_FACTORS
            if f is None or f.value == "not assessed" or whole != (level == "C2-C7"):
                row.append("n/a" if f is None or f.value == "not assessed" else "")
            elif f.value == "present" and any(sites_overlap(level, s) for s in split_sites(f.site)):
                row.append("+")
            else:
                row.append("-")
        corr = [c for c in report.corroborations if level != "C2-C7" and sites_overlap(level, c.site)]
        row.append(", ".join(_RULE_VALUES.get(c.threshold, (c.threshold, ""))[0][2:] for c in corr))
        rows.append(row)
    return header, rows


def table_rows(report: PatientReport) -> list[list[str]]:
    """Rows of the factor/corroboration table: name, site, result, evidence (wrapped for the page)."""
    rows = []
    for f in report.findings():
        prob = f" (p={f.probability:.2f})" if f.probability is not None else ""
        name = ("Corroboration: " if f.key == "corroboration" else "") + f.name
        rows.append([_wrap(name, 34), _wrap(f.site, 14), _wrap(f.value + prob, 14), _wrap("; ".join(f.evidence), 92)])
    return rows


def _shaded(rows: list[list[str]], col: int) -> set[tuple[int, int]]:
    """Cells to shade: a positive grid cell ``+`` or a corroborated level (``col`` < 0: the level grid), or the
    result column ``col`` of a factor that is present."""
    out = set()
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if (col < 0 and (text == "+" or (c == len(row) - 1 and text))) or (c == col and text.startswith("present")):
                out.add((r, c))
    return out


def render_patient(report: PatientReport, results: dict[str, StudyResult]) -> RenderedPage:
    """The one-page patient report (A4) as RGB pixels with its text: factors by level (Fig. 7), then every factor
    and corroboration (Fig. 8) with its evidence."""
    page = Page()
    page.text(0.5, 0.985, "Cervical spondylosis - patient-level report (X-ray + MRI)", 12, ha="center", va="top",
              bold=True)
    page.text(0.5, 0.962, "Degenerative factors of paper 002 Fig. 7 by level; corroborations as in Fig. 8", 7,
              ha="center", va="top")
    for i, modality in enumerate(("xray", "mri")):
        r = results[modality]
        page.text(0.04, 0.94 - 0.014 * i, f"{MODALITY_NAMES[modality]} study {r.study_uid} "
                  f"({r.algorithm.name} {r.algorithm.version})", 6)
    header, grid = level_grid(report)
    page.table((0.03, 0.7, 0.94, 0.19), header, grid, [0.07] + [0.095] * len(FACTORS) + [0.17],
               "Factors by level (+ positive, - negative, n/a not assessed)", shaded=_shaded(grid, -1), max_size=6,
               align="center")
    rows = table_rows(report)
    height = min(0.58, 0.58 * 0.055 * (len(rows) + 1))
    page.table((0.03, 0.65 - height, 0.94, height), ["Factor / corroboration", "Site", "Result", "Evidence"], rows,
               [0.24, 0.1, 0.1, 0.56], "Factors and corroborations", shaded=_shaded(rows, 2), max_size=5)
    for i, w in enumerate(report.warnings[:3]):
        page.text(0.04, 0.055 + 0.012 * (len(report.warnings[:3]) - 1 - i), _wrap(f"Warning: {w}", 160, 1), 5,
                  color="#805000")
    page.text(0.5, 0.035, RESEARCH_STATEMENT, 7, ha="center", bold=True, color="#b00000", wrap=0.9)
    return page.render()


def encode_patient(report: PatientReport, results: dict[str, StudyResult], sources: Sources, *, current: str,
                   now: datetime | None = None, first: Callable[[list[Dataset]], None] | None = None) -> list[Dataset]:
    """``[sr, pdf]`` of a patient report, in the study of ``results[current]``. ``first`` is called with ``[sr]``
    before the PDF is rendered (``pipelines.dicom_out.encode``).

    ``results`` maps ``"xray"``/``"mri"`` to the two studies' results; ``sources`` holds the headers of
    their images (those of the other study may be missing: then it is referenced by text only).
    """
    if set(results) != {"xray", "mri"} or current not in results:
        raise ValueError("results must map 'xray' and 'mri' to StudyResults and current must be one of them")
    now = now or datetime.now(UTC)
    prov = Provenance(algorithm=ALGORITHM, pipeline=PIPELINE, created=now, instance_base=run_number(now),
                      contributors=tuple(dict.fromkeys(report.algorithms)))
    study_uid = results[current].study_uid

    def series(kind: str) -> dict:
        return {"series_uid": result_series_uid(study_uid, PIPELINE, kind), "series_number": series_number(PIPELINE, kind)}

    sr = build_patient_sr(report, results, sources, current, prov, **series("sr"))
    if first is not None:
        first([sr])
    pdf = build_pdf(results[current], sources, prov, render_patient(report, results), **series("pdf"))
    pdf.DocumentTitle = "Cervical spondylosis patient-level AI report - research use only"
    pdf.SeriesDescription = "AI patient-level report X-ray + MRI (PDF) - RESEARCH USE ONLY"
    return [sr, pdf]
