"""Patient-level report: the degenerative factors of paper 002 Fig. 7 across X-ray and MRI, by level,
and where findings of the two modalities (or of one) corroborate each other (Fig. 8).

Pure Python over ``StudyResult`` objects: no I/O, no DICOM. The node finds the matching studies (same
Patient ID within a time window) and ``pipelines.dicom_out`` encodes the report.

Sites: MRI findings are per disc level (segment ``"C4-C5"``); X-ray instability is per segment; X-ray
developmental canal stenosis is a run of vertebrae (``"C3-C5"`` = C3, C4, C5); kyphosis, SVA deformity and
curvature are whole-spine (``"C2-C7"``). A segment lies within a vertebral run when both its vertebrae do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipelines.results import AlgorithmInfo, Finding, StudyResult

POSITIVE = "present"


@dataclass(frozen=True)
class Factor:
    """One axis of paper 002 Fig. 7."""

    key: str
    name: str
    modality: str
    """``"xray"`` or ``"mri"``."""
    finding_keys: tuple[str, ...]
    """Finding keys of that modality's pipeline that make up the factor."""


FACTORS: tuple[Factor, ...] = (
    Factor("developmental_stenosis", "Developmental cervical stenosis (Pavlov ratio)", "xray", ("canal_stenosis",)),
    Factor("curvature", "Cervical spine curvature (Cobb angle)", "xray", ("kyphosis",)),
    Factor("stability", "Vertebral stability (spondylolisthesis angle and distance)", "xray", ("instability",)),
    Factor("sagittal_balance", "Sagittal plane balance (SVA)", "xray", ("cervical_deformity",)),
    Factor("spinal_stenosis", "Spinal stenosis", "mri", ("canal_stenosis",)),
    Factor("foramen_left", "Left foramen stenosis", "mri", ("foraminal_stenosis_left",)),
    Factor("foramen_right", "Right foramen stenosis", "mri", ("foraminal_stenosis_right",)),
    Factor("disc_degeneration", "Intervertebral disc degeneration", "mri", ("disc_degeneration",)),
)
"""The eight factors of Fig. 7; the ninth axis (overall cervical spondylosis) is any factor positive."""


@dataclass(frozen=True)
class Rule:
    """Two findings that corroborate each other when both are positive at overlapping sites."""

    key: str
    first: tuple[str, str]
    """(modality, finding key)."""
    second: tuple[str, str]
    rationale: str


RULES: tuple[Rule, ...] = (
    Rule("herniation_canal", ("mri", "disc_degeneration"), ("mri", "canal_stenosis"),
         "disc herniation narrows the canal; canal stenosis at the same level is its manifestation (paper 002 Fig. 8)"),
    Rule("herniation_foramen_left", ("mri", "disc_degeneration"), ("mri", "foraminal_stenosis_left"),
         "disc material and uncovertebral degeneration at one level narrow the foramen"),
    Rule("herniation_foramen_right", ("mri", "disc_degeneration"), ("mri", "foraminal_stenosis_right"),
         "disc material and uncovertebral degeneration at one level narrow the foramen"),
    Rule("developmental_canal", ("xray", "canal_stenosis"), ("mri", "canal_stenosis"),
         "a developmentally narrow canal (Pavlov ratio, X-ray) leaves less reserve: MRI stenosis at a level within it"),
    Rule("instability_herniation", ("xray", "instability"), ("mri", "disc_degeneration"),
         "segmental instability (flexion-extension X-ray) and disc herniation (MRI) at the same segment"),
    Rule("instability_canal", ("xray", "instability"), ("mri", "canal_stenosis"),
         "segmental instability (X-ray) with canal stenosis (MRI) at the same segment: dynamic cord compression"),
)


@dataclass
class PatientReport:
    """The combined report of one patient (Fig. 7 factors + Fig. 8 corroborations)."""

    factors: list[Finding] = field(default_factory=list)
    """One finding per Fig. 7 factor, key ``factor_<key>``, value ``present``/``absent``/``not assessed``,
    site the positive sites (comma separated) or the assessed span."""
    overall: Finding | None = None
    corroborations: list[Finding] = field(default_factory=list)
    study_uids: dict[str, str] = field(default_factory=dict)
    """``{"xray": uid, "mri": uid}`` of the studies used."""
    predictions: list[Finding] = field(default_factory=list)
    """Model outputs on both studies' images (e.g. ``neck_pain_recovery`` with its probability,
    ``pipelines.patient``)."""
    algorithms: list[AlgorithmInfo] = field(default_factory=list)
    """The algorithms behind ``predictions`` (Contributing Equipment of the report)."""
    warnings: list[str] = field(default_factory=list)
    """Things a reader should know, e.g. a model that could not run."""

    def findings(self) -> list[Finding]:
        return [*self.factors, *([self.overall] if self.overall else []), *self.corroborations, *self.predictions]

    def summary(self) -> str:
        lines = ["Patient-level cervical spondylosis report (paper 002 Fig. 7/8)"]
        for f in self.findings():
            p = f" (p={f.probability:.2f})" if f.key in PREDICTION_KEYS and f.probability is not None else ""
            lines.append(f"  {f.name}: {f.value}{p} [{f.site}]" + (f" - {'; '.join(f.evidence)}" if f.evidence else ""))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


NECK_PAIN_KEY = "neck_pain_recovery"
PREDICTION_KEYS: tuple[str, ...] = (NECK_PAIN_KEY,)
"""Keys of ``PatientReport.predictions``."""


def neck_pain_finding(probability: float, algorithm: AlgorithmInfo, clinical: dict[str, float | None],
                      threshold: float = 0.5) -> Finding:
    """The ``neck_pain_recovery`` prediction (seed 000) as a finding: value ``likely``/``unlikely`` at
    ``threshold``, the probability, and which clinical variables the model had."""
    known = [k for k, v in clinical.items() if v is not None]
    return Finding(
        key=NECK_PAIN_KEY, name="Postoperative neck pain recovery", value="likely" if probability >= threshold else "unlikely",
        site="C2-C7", probability=float(probability),
        evidence=(f"P(recovery) = {probability:.2f} from the neutral radiograph and the T2 sagittal MRI "
                  f"({algorithm.name} {algorithm.version})",
                  "clinical variables used: " + (", ".join(known) if known else "none (image-only)"),
                  "research use; trained on synthetic phantoms"),
        threshold=f"P >= {threshold:g}")


def vertebrae_of(site: str) -> tuple[str, ...]:
    """``"C3-C5"`` -> ("C3", "C4", "C5"); ``"C4"`` -> ("C4",); unknown forms -> ()."""
    order = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1")
    parts = site.split("-")
    if len(parts) == 1:
        return (parts[0],) if parts[0] in order else ()
    if len(parts) == 2 and parts[0] in order and parts[1] in order:
        i, j = order.index(parts[0]), order.index(parts[1])
        return order[min(i, j): max(i, j) + 1]
    return ()


def sites_overlap(a: str, b: str) -> bool:
    """True when one site lies within the other (segments and vertebral runs, see the module docstring)."""
    va, vb = set(vertebrae_of(a)), set(vertebrae_of(b))
    if not va or not vb:
        return False
    return va <= vb or vb <= va


def _positives(result: StudyResult | None, key: str) -> list[Finding]:
    if result is None:
        return []
    return [f for f in result.findings if f.key == key and f.value == POSITIVE]


def _assessed(result: StudyResult | None, key: str) -> list[Finding]:
    if result is None:
        return []
    return [f for f in result.findings if f.key == key and f.value in (POSITIVE, "absent")]


def _describe(modality: str, f: Finding) -> str:
    p = f" (p={f.probability:.2f})" if f.probability is not None else ""
    return f"{'MRI' if modality == 'mri' else 'X-ray'}: {f.name} at {f.site}{p}"


def correlate(xray: StudyResult | None, mri: StudyResult | None) -> list[Finding]:
    """Pairs of positive findings that corroborate each other at the same level (``RULES``).

    Each is a ``Finding`` with key ``corroboration``, value ``present``, site the shared (narrower) site,
    evidence naming both findings and the rationale, ``threshold`` the rule key.
    """
    by = {"xray": xray, "mri": mri}
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for rule in RULES:
        for f1 in _positives(by[rule.first[0]], rule.first[1]):
            for f2 in _positives(by[rule.second[0]], rule.second[1]):
                if not sites_overlap(f1.site, f2.site):
                    continue
                site = min((f1.site, f2.site), key=lambda s: len(vertebrae_of(s)))
                if (rule.key, site) in seen:
                    continue
                seen.add((rule.key, site))
                probs = [f.probability for f in (f1, f2) if f.probability is not None]
                out.append(Finding(
                    key="corroboration", name=f"{f1.name} and {f2.name}", value=POSITIVE, site=site,
                    evidence=(_describe(rule.first[0], f1), _describe(rule.second[0], f2), rule.rationale),
                    probability=min(probs) if probs else None, threshold=rule.key))
    return out


def _factor_finding(factor: Factor, result: StudyResult | None) -> Finding:
    if result is None:
        return Finding(key=f"factor_{factor.key}", name=factor.name, value="not assessed", site="",
                       evidence=(f"no {'X-ray' if factor.modality == 'xray' else 'MRI'} study",))
    assessed = [f for k in factor.finding_keys for f in _assessed(result, k)]
    pos = [f for k in factor.finding_keys for f in _positives(result, k)]
    if not assessed:
        return Finding(key=f"factor_{factor.key}", name=factor.name, value="not assessed", site="",
                       evidence=("not measurable on the available images",))
    if pos:
        sites = ", ".join(_unique(f.site for f in pos))
        return Finding(key=f"factor_{factor.key}", name=factor.name, value=POSITIVE, site=sites,
                       evidence=tuple(_describe(factor.modality, f) for f in pos),
                       probability=max((f.probability for f in pos if f.probability is not None), default=None))
    sites = _unique(f.site for f in assessed)
    return Finding(key=f"factor_{factor.key}", name=factor.name, value="absent",
                   site=sites[0] if len(sites) == 1 else f"{sites[0]}..{sites[-1]}",
                   evidence=(f"assessed at {len(sites)} site(s), none positive",))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def patient_report(xray: StudyResult | None, mri: StudyResult | None) -> PatientReport:
    """Fig. 7 factors, the overall diagnosis and the Fig. 8 corroborations for one patient."""
    if xray is not None and xray.pipeline != "xray":
        raise ValueError(f"xray result comes from the {xray.pipeline!r} pipeline")
    if mri is not None and mri.pipeline != "mri":
        raise ValueError(f"mri result comes from the {mri.pipeline!r} pipeline")
    by = {"xray": xray, "mri": mri}
    rep = PatientReport(study_uids={k: v.study_uid for k, v in by.items() if v is not None})
    rep.factors = [_factor_finding(f, by[f.modality]) for f in FACTORS]
    pos = [f for f in rep.factors if f.value == POSITIVE]
    assessed = [f for f in rep.factors if f.value != "not assessed"]
    rep.overall = Finding(
        key="cervical_spondylosis", name="Cervical spondylosis (overall)",
        value=POSITIVE if pos else ("absent" if assessed else "not assessed"), site="C2-C7",
        evidence=tuple(f"{f.name}: {f.site}" for f in pos) or (f"{len(assessed)} factor(s) assessed, none positive",),
        threshold="any Fig. 7 factor positive (paper 002)")
    rep.corroborations = correlate(xray, mri)
    return rep
