"""The classifiers of the seed papers that run beside the keypoint model in the X-ray pipeline.

* whole-image classifiers (``interfaces.ImageClassifier``): seed 003 curvature class (normal / straightened /
  reversed) from the neutral view, seed 001 six upper-cervical (C0-C2) abnormalities from the extension,
  neutral and flexion views together;
* the per-segment classifier (``interfaces.SegmentClassifier``): seed 004 spinal cord compression per segment
  C2-C3..C6-C7 on crops of the neutral view located by its keypoints, with Grad-CAM maps.

The models are handed in (``models.registry`` builds them); this module only decides whether each can run on
the views at hand and turns a model that cannot run (not configured, a view missing, a failure) into a warning
instead of a finding.

Trust (issue 13): each model checks its own input against its training distribution (an out-of-distribution gate on
its penultimate-layer features, stored with its weights: ``models.common.ood``) and gives "not assessable" findings
with the reason ("image unlike the training data: ...") instead of a class or probability; those reasons are
repeated here as warnings. The curvature class is also checked against the keypoint geometry
(:func:`check_curvature_geometry`): a class that the measured C2-C7 Cobb angle contradicts by more than
``CURVATURE_MARGIN_DEG`` is not assessable either. The upper-cervical model's own gate does not separate unlike images
(renderer B, see its card), so its six findings are also withheld when the curvature model's gate refuses any of the
three views it read (:func:`check_upper_cervical_input`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.interfaces import ImageClassifier, ImageInputCheck, SegmentClassifier
from pipelines.results import AlgorithmInfo, Finding, HeatMap, Measurement
from pipelines.vocabulary import NOT_ASSESSABLE, UNLIKE_TRAINING_DATA, UPPER_CERVICAL_LABELS, View
from pipelines.xray.findings import Thresholds

log = logging.getLogger(__name__)

CURVATURE_MODEL_KEY = "curvature_class_model"
"""The finding key of the seed-003 curvature class model."""
CURVATURE_MARGIN_DEG = 5.0
"""How far (deg) the measured C2-C7 Cobb angle may lie outside the Cobb range of the model's class before the class
is not assessable. Chosen from the renderer-A held-out disagreements of model and geometry (69 of 83 lie within 5 deg
of a class boundary, where the measurement's own error and the narrow straightened band decide; see the card)."""


def not_assessable_warnings(name: str, findings: Sequence[Finding]) -> list[str]:
    """One warning per distinct reason among ``findings`` that are not assessable, naming their sites."""
    by_reason: dict[str, list[str]] = {}
    for f in findings:
        if f.value == NOT_ASSESSABLE:
            sites = by_reason.setdefault(f.evidence[0] if f.evidence else "no reason given", [])
            if f.site not in sites:
                sites.append(f.site)
    return [f"{name}: not assessable at {', '.join(sites)} ({why})" for why, sites in by_reason.items()]


def curvature_class_range(label: str, thresholds: Thresholds | None = None) -> tuple[float, float]:
    """The C2-C7 Cobb range (deg, low inclusive) of a curvature class of the model (the rule of its labels)."""
    t = thresholds or Thresholds()
    ranges = {"normal": (t.lordosis_normal_deg, np.inf), "straightened": (t.kyphotic_class_deg, t.lordosis_normal_deg),
              "reversed": (-np.inf, t.kyphotic_class_deg)}
    if label not in ranges:
        raise ValueError(f"unknown curvature class {label!r}")
    return ranges[label]


def check_curvature_geometry(finding: Finding, measurements: Sequence[Measurement],
                             margin_deg: float = CURVATURE_MARGIN_DEG) -> Finding:
    """The curvature model's ``finding`` checked against the C2-C7 Cobb angle measured from the keypoints of the same
    view (``measurements``: that view's): ``not assessable`` with the reason when the angle lies more than
    ``margin_deg`` outside the class's Cobb range; unchanged otherwise, with a remark when no angle was measured."""
    if finding.value not in ("normal", "straightened", "reversed"):
        return finding
    cobb = next((m for m in measurements if m.key == "cobb_c2_c7" and m.value is not None), None)
    if cobb is None:
        return replace(finding, evidence=(*finding.evidence, "not checked against the keypoint geometry (C2-C7 Cobb "
                                                             "angle not measured)"))
    lo, hi = curvature_class_range(finding.value)
    off = max(lo - cobb.value, cobb.value - hi, 0.0)
    if off <= margin_deg:
        return replace(finding, evidence=(*finding.evidence, f"consistent with the keypoint geometry (C2-C7 Cobb "
                                                             f"{cobb.value:.1f} deg)"))
    span = f">= {lo:g}" if not np.isfinite(hi) else f"< {hi:g}" if not np.isfinite(lo) else f"{lo:g} to {hi:g}"
    why = (f"image classifier disagrees with the keypoint geometry: class {finding.value} needs C2-C7 Cobb {span} deg, "
           f"measured {cobb.value:.1f} deg ({off:.1f} deg beyond, margin {margin_deg:g} deg)")
    return replace(finding, value=NOT_ASSESSABLE, probability=None, evidence=(why,))


CURVATURE_CHECK = "the curvature model's input check refused the"
"""The part of an upper-cervical finding's reason that names the borrowed check (:func:`check_upper_cervical_input`)."""


def check_upper_cervical_input(findings: Sequence[Finding], check: ImageInputCheck,
                               images: Mapping[View, np.ndarray],
                               verdicts: dict[View, str] | None = None) -> list[Finding]:
    """The upper-cervical ``findings`` (keys ``UPPER_CERVICAL_LABELS``; others pass unchanged) checked with the
    curvature model's input gate (``check``) on each of the views the model read (``images``): when it refuses any,
    each of them is ``not assessable`` (no probability) with the reason "image unlike the training data: the curvature
    model's input check refused the <view> view (...)"; a finding already not assessable keeps its own reason.

    Renderer B (issue 13): the upper-cervical model's own gate (on its penultimate layer) rejects none of B's studies
    and it reports a false abnormality in ~97 % of them; the curvature model's gate refuses their views (see the
    upper-cervical card for its cost on renderer A). ``verdicts``: per view, the check's reason (filled in here, so
    a view is checked once per study)."""
    if not any(f.key in UPPER_CERVICAL_LABELS and f.value != NOT_ASSESSABLE for f in findings):
        return list(findings)
    verdicts = {} if verdicts is None else verdicts
    for v, img in images.items():
        if v not in verdicts:
            verdicts[v] = check.input_check(img)
    refused = [(v, verdicts[v]) for v in images if verdicts[v]]
    if not refused:
        return list(findings)
    which = " and ".join(v.value for v, _ in refused)
    details = "; ".join(f"{v.value}: {why.removeprefix(UNLIKE_TRAINING_DATA).lstrip(': ')}" for v, why in refused)
    reason = f"{UNLIKE_TRAINING_DATA}: {CURVATURE_CHECK} {which} view{'s' if len(refused) > 1 else ''} ({details})"
    rule = ("not run on inputs unlike the training data: the upper-cervical model's findings are withheld when the "
            "curvature model's input gate refuses any of its three views")
    return [replace(f, value=NOT_ASSESSABLE, probability=None, evidence=(reason,), threshold=rule)
            if f.key in UPPER_CERVICAL_LABELS and f.value != NOT_ASSESSABLE else f for f in findings]


@dataclass
class ClassifierOutput:
    """Findings of the classifiers, the algorithms that made them, and why any did not run."""

    findings: list[Finding] = field(default_factory=list)
    algorithms: list[AlgorithmInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    heatmaps: list[HeatMap] = field(default_factory=list)
    """Explanation maps (Grad-CAM) on the original pixels of the image they were made on."""


def check_against_geometry(out: ClassifierOutput, neutral_measurements: Sequence[Measurement]) -> None:
    """Apply :func:`check_curvature_geometry` to the curvature model's finding in ``out`` (in place), with a warning
    when it becomes not assessable. ``neutral_measurements``: those of the neutral view the model classified."""
    for i, f in enumerate(out.findings):
        if f.key == CURVATURE_MODEL_KEY:
            checked = check_curvature_geometry(f, neutral_measurements)
            if checked.value == NOT_ASSESSABLE and f.value != NOT_ASSESSABLE:
                out.warnings.extend(not_assessable_warnings("curvature class model", [checked]))
            out.findings[i] = checked


def classify_views(classifiers: Sequence[ImageClassifier], images: Mapping[View, np.ndarray],
                   spacing_mm: Mapping[View, tuple[float, float] | None],
                   input_check: ImageInputCheck | None = None) -> ClassifierOutput:
    """Run every whole-image classifier whose ``required_views`` are all in ``images``.

    ``images``: one float image (rows, cols) in [0, 1], bone bright, per view present in the study (only views
    whose keypoints passed the gate). ``spacing_mm``: (row, col) mm/px at the patient plane per view, or None.
    ``input_check``: when given (the curvature model), upper-cervical findings go through
    :func:`check_upper_cervical_input` on the views their model read.
    """
    out = ClassifierOutput()
    verdicts: dict[View, str] = {}
    for model in classifiers:
        name = model.algorithm.name
        missing = [v.value for v in model.required_views if v not in images]
        if missing:
            needs = ", ".join(v.value for v in model.required_views)
            out.warnings.append(f"{name} did not run: it needs the {needs} view(s); missing {', '.join(missing)}")
            continue
        try:
            found = model.classify({v: images[v] for v in model.required_views},
                                   {v: spacing_mm.get(v) for v in model.required_views})
            if input_check is not None:
                found = check_upper_cervical_input(found, input_check,
                                                   {v: images[v] for v in model.required_views}, verdicts)
            out.findings.extend(found)
            out.algorithms.append(model.algorithm)
            out.warnings.extend(not_assessable_warnings(name, found))
        except (ValueError, RuntimeError) as e:
            log.warning("%s did not run: %s", name, e)
            out.warnings.append(f"{name} did not run: {e}")
    return out


def classify_segments(model: SegmentClassifier | None, image: np.ndarray, keypoints: np.ndarray,
                      image_uid: str) -> ClassifierOutput:
    """Cord compression per segment C2-C3..C6-C7 on the neutral view (seed 004): one finding per segment with
    its probability and one Grad-CAM heat map per segment. ``keypoints`` (30, 2) are the neutral view's, already
    through the pipeline's gates; ``image`` is float [0, 1], bone bright, original pixels."""
    out = ClassifierOutput()
    if model is None:
        out.warnings.append("cord compression model not configured")
        return out
    try:
        findings, maps = model.classify(image, keypoints, image_uid)
        out.findings.extend(findings)
        out.heatmaps.extend(maps)
        out.algorithms.append(model.algorithm)
        out.warnings.extend(not_assessable_warnings(model.algorithm.name, findings))
    except (ValueError, RuntimeError) as e:
        log.warning("cord compression classifier did not run: %s", e)
        out.warnings.append(f"cord compression model did not run: {e}")
    return out
