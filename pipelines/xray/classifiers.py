"""The classifiers of the seed papers that run beside the keypoint model in the X-ray pipeline.

* whole-image classifiers (``interfaces.ImageClassifier``): seed 003 curvature class (normal / straightened /
  reversed) from the neutral view, seed 001 six upper-cervical (C0-C2) abnormalities from the extension,
  neutral and flexion views together;
* the per-segment classifier (``interfaces.SegmentClassifier``): seed 004 spinal cord compression per segment
  C2-C3..C6-C7 on crops of the neutral view located by its keypoints, with Grad-CAM maps.

The models are handed in (``models.registry`` builds them); this module only decides whether each can run on
the views at hand and turns a model that cannot run (not configured, a view missing, a failure) into a warning
instead of a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.interfaces import ImageClassifier, SegmentClassifier
from pipelines.results import AlgorithmInfo, Finding, HeatMap
from pipelines.vocabulary import View

log = logging.getLogger(__name__)


@dataclass
class ClassifierOutput:
    """Findings of the classifiers, the algorithms that made them, and why any did not run."""

    findings: list[Finding] = field(default_factory=list)
    algorithms: list[AlgorithmInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    heatmaps: list[HeatMap] = field(default_factory=list)
    """Explanation maps (Grad-CAM) on the original pixels of the image they were made on."""


def classify_views(classifiers: Sequence[ImageClassifier], images: Mapping[View, np.ndarray],
                   spacing_mm: Mapping[View, tuple[float, float] | None]) -> ClassifierOutput:
    """Run every whole-image classifier whose ``required_views`` are all in ``images``.

    ``images``: one float image (rows, cols) in [0, 1], bone bright, per view present in the study (only views
    whose keypoints passed the gate). ``spacing_mm``: (row, col) mm/px at the patient plane per view, or None.
    """
    out = ClassifierOutput()
    for model in classifiers:
        name = model.algorithm.name
        missing = [v.value for v in model.required_views if v not in images]
        if missing:
            needs = ", ".join(v.value for v in model.required_views)
            out.warnings.append(f"{name} did not run: it needs the {needs} view(s); missing {', '.join(missing)}")
            continue
        try:
            out.findings.extend(model.classify({v: images[v] for v in model.required_views},
                                               {v: spacing_mm.get(v) for v in model.required_views}))
            out.algorithms.append(model.algorithm)
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
    except (ValueError, RuntimeError) as e:
        log.warning("cord compression classifier did not run: %s", e)
        out.warnings.append(f"cord compression model did not run: {e}")
    return out
