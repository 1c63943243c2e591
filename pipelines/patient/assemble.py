"""Patient-level report assembly: one X-ray and one MRI study of one patient -> patient SR + PDF.

The node (``node.patients``) finds the two studies (salted patient key, time window) and hands their typed
results here; this module reads the images the results refer to, builds the rule-based report
(``pipelines.patient.report.patient_report``), adds the model predictions that need both modalities
(postoperative neck-pain recovery, ``models.neck_pain``) and encodes it
(``pipelines.dicom_out.patient.encode_patient``). A model that cannot run leaves a warning in the report;
it never blocks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from pipelines.interfaces import PatientModel
from pipelines.patient.history import PAIRED, PatientHistory, other_modality
from pipelines.patient.report import PatientReport, neck_pain_finding, patient_report
from pipelines.results import StudyResult
from pipelines.study import Study
from pipelines.vocabulary import KEYPOINT_NAMES, SEGMENTS, PipelineName, View

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pipelines.dicom_out._sources import Sources

LOG = logging.getLogger("pipelines.patient")


@dataclass(frozen=True)
class NeckPainInputs:
    """What the neck-pain model needs, read from the two studies."""

    xray: np.ndarray
    corners: np.ndarray
    mri_slice: np.ndarray
    disc_centres: np.ndarray
    mri_spacing_mm: float
    clinical: dict[str, float | None]


def dicom_clinical(*headers: Dataset) -> dict[str, float | None]:
    """Age (years, PatientAge or birth date vs study date) and sex (``female`` 1/0) from the first header that
    has them; the other clinical variables are not in DICOM (None)."""
    age: float | None = None
    female: float | None = None
    for ds in headers:
        if age is None:
            text = str(ds.get("PatientAge", "") or "").strip().upper()
            if len(text) == 4 and text[:3].isdigit():
                age = {"Y": 1.0, "M": 1 / 12, "W": 1 / 52, "D": 1 / 365}.get(text[3], 1.0) * int(text[:3])
            else:
                birth, study = str(ds.get("PatientBirthDate", "") or ""), str(ds.get("StudyDate", "") or "")
                if len(birth) == 8 and len(study) == 8 and birth.isdigit() and study.isdigit():
                    age = float(int(study[:4]) - int(birth[:4]) - ((study[4:] < birth[4:]) * 1))
        if female is None and str(ds.get("PatientSex", "") or "").upper() in ("M", "F"):
            female = float(str(ds.PatientSex).upper() == "F")
    return {"age": age, "female": female, "duration_months": None, "ndi": None, "vas": None}


def neck_pain_inputs(xray: StudyResult, mri: StudyResult, sources: Sources) -> NeckPainInputs:
    """The neutral radiograph with its 24 corners and the MRI slice with its five disc centres; ValueError
    when a result does not have them."""
    from pipelines.xray.preprocessing import image_from_dataset

    neutral = [i for i in xray.images if i.view == View.NEUTRAL and i.image_uid in sources.datasets]
    if not neutral:
        raise ValueError("no neutral radiograph in the X-ray result")
    trusted = [i for i in neutral if not i.rejected]
    if not trusted:  # the X-ray gates refused its keypoints: the model must not use them either
        raise ValueError(f"the neutral radiograph's keypoints are not trusted ({neutral[0].rejected})")
    img = trusted[0]
    kp = {k.name: (k.x, k.y) for k in img.keypoints}
    if not all(n in kp for n in KEYPOINT_NAMES[:24]):
        raise ValueError("the neutral radiograph lacks vertebral corners C2..C7")
    corners = np.array([kp[n] for n in KEYPOINT_NAMES[:24]], float)
    mimg = None
    for i in mri.images:
        names = {k.name: (k.x, k.y) for k in i.keypoints}
        if i.image_uid in sources.datasets and all(f"{lv} disc" in names for lv in SEGMENTS):
            mimg, centres = i, np.array([names[f"{lv} disc"] for lv in SEGMENTS], float)
            break
    if mimg is None:
        raise ValueError("no MRI slice with the five disc centres C2-C3..C6-C7")
    xds, mds = sources.full(img.image_uid), sources.full(mimg.image_uid)
    spacing = mimg.pixel_spacing_mm or tuple(float(v) for v in mds.PixelSpacing)
    mpx = np.asarray(mds.pixel_array, np.float32)
    if mpx.ndim == 3:
        mpx = mpx[0]
    return NeckPainInputs(image_from_dataset(xds), corners, mpx, centres, float(spacing[0]),
                          dicom_clinical(mds, xds))


def add_neck_pain(report: PatientReport, xray: StudyResult, mri: StudyResult, sources: Sources,
                  predictor: PatientModel | None) -> None:
    """Add the ``neck_pain_recovery`` prediction to ``report`` (or a warning when the model cannot run)."""
    if predictor is None:
        report.warnings.append("postoperative neck pain recovery not assessed: model not configured")
        return
    try:
        inp = neck_pain_inputs(xray, mri, sources)
        p = predictor.predict(inp.xray, inp.corners, inp.mri_slice, inp.disc_centres, inp.mri_spacing_mm, inp.clinical)
        report.predictions.append(neck_pain_finding(p, predictor.algorithm, inp.clinical))
        report.algorithms.append(predictor.algorithm)
    except Exception as exc:  # noqa: BLE001 - a model failure must not block the report
        LOG.warning("neck-pain model not applied: %s: %s", type(exc).__name__, str(exc)[:200])
        report.warnings.append(f"postoperative neck pain recovery not assessed: {type(exc).__name__}: {str(exc)[:200]}")


def merged_sources(study: Study, mine: dict[str, StudyResult], partner: tuple[Study, StudyResult] | None,
                   on_partner_error: Callable[[Exception], None] | None = None) -> tuple[dict[str, StudyResult], Sources, str]:
    """(results by pipeline, the images of both, the pipeline of ``study``). Images of the partner that are no
    longer readable are left out (``on_partner_error`` is told)."""
    from pipelines.dicom_out._sources import Sources, load_sources

    results = dict(mine)
    current = next(p for p in PAIRED if p in mine)
    sources = load_sources(study, mine[current])
    if partner is not None:
        other_study, other = partner
        results[other.pipeline] = other
        try:
            extra = load_sources(other_study, other)
            sources = Sources({**sources.datasets, **extra.datasets}, {**sources.paths, **extra.paths})
        except (ValueError, OSError) as exc:
            if on_partner_error is not None:
                on_partner_error(exc)
    else:  # one study with both modalities
        for p in PAIRED:
            if p != current:
                extra = load_sources(study, mine[p])
                sources = Sources({**sources.datasets, **extra.datasets}, {**sources.paths, **extra.paths})
    return results, sources, current


def build_patient_report(results: dict[str, StudyResult], sources: Sources,
                         predictor: PatientModel | None) -> PatientReport:
    """The rule-based report of ``results["xray"]`` and ``results["mri"]`` plus the model predictions."""
    report = patient_report(results["xray"], results["mri"])
    add_neck_pain(report, results["xray"], results["mri"], sources, predictor)
    return report


def build_patient_objects(study: Study, mine: dict[str, StudyResult], partner: tuple[Study, StudyResult] | None,
                          predictor: PatientModel | None, now: datetime | None = None, *,
                          on_partner_error: Callable[[Exception], None] | None = None,
                          first: Callable[[list[Dataset]], None] | None = None) -> list[Dataset]:
    """Encode the patient report of ``mine`` (this study's results by pipeline) and ``partner`` (the other study
    and its result) in this study: ``[sr, pdf]`` (``first``: called with ``[sr]`` before the PDF is rendered)."""
    from pipelines.dicom_out.patient import encode_patient

    results, sources, current = merged_sources(study, mine, partner, on_partner_error)
    report = build_patient_report(results, sources, predictor)
    return encode_patient(report, {"xray": results["xray"], "mri": results["mri"]}, sources, current=current, now=now,
                          first=first)


def patient_objects(study: Study, results: list[StudyResult], predictor: PatientModel | None,
                    history: PatientHistory | None, now: datetime | None = None, *,
                    first: Callable[[list[Dataset]], None] | None = None) -> tuple[list[Dataset], str]:
    """The patient-level SR + PDF for this study's ``results``, or none: ``(objects, partner study UID)``.

    A study holding both modalities pairs with itself; one holding one modality asks ``history`` for the
    patient's other study. Returns ``([], "")`` when there is nothing to pair. Images of the partner that are
    no longer readable are left out of the evidence (its study UID stays in the text)."""
    mine = {PipelineName(r.pipeline): r for r in results if r.pipeline in PAIRED and r.images}
    if not mine:
        return [], ""
    if len(mine) == len(PAIRED):
        return build_patient_objects(study, mine, None, predictor, now, first=first), study.study_uid
    if history is None:
        return [], ""
    (pipeline,) = mine
    partner = history.partner(study, other_modality(pipeline))
    if partner is None:
        return [], ""

    def unreadable(exc: Exception) -> None:
        LOG.warning("partner images not readable (%s): referenced by study UID only", type(exc).__name__)

    objects = build_patient_objects(study, mine, partner, predictor, now, on_partner_error=unreadable, first=first)
    return objects, partner[0].study_uid
