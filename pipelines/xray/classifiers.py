"""Whole-image classifiers of the seed papers that run beside the keypoint model in the X-ray pipeline.

* seed 003: cervical curvature class (normal / straightened / reversed) from the neutral view, S-ResNet-34
  (``models.curvature``);
* seed 001: six upper-cervical (C0-C2) abnormalities from the extension, neutral and flexion views together,
  CerviHFENet-style (``models.upper_cervical``);
* seed 004: spinal cord compression per segment C2-C3..C6-C7 from the neutral view, a small CNN on a crop of
  each segment located by the keypoints, with Grad-CAM maps (``models.cord_compression``;
  :func:`classify_segments`, run only on keypoints that passed the pipeline's uncertainty gate).

Each needs only what the pipeline already has: the radiographs as float images in [0, 1], bone bright, in
original pixels (``pipelines.xray.preprocessing.image_from_dataset``), and the neutral view's pixel spacing.
A model that cannot run (weights missing, a view missing) adds a warning instead of a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipelines.results import AlgorithmInfo, Finding, HeatMap, View

log = logging.getLogger(__name__)


@dataclass
class ClassifierOutput:
    """Findings of the whole-image classifiers, the algorithms that made them, and why any did not run."""

    findings: list[Finding] = field(default_factory=list)
    algorithms: list[AlgorithmInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    heatmaps: list[HeatMap] = field(default_factory=list)
    """Explanation maps (Grad-CAM) on the original pixels of the image they were made on."""


def classify_views(images: Mapping[View, np.ndarray], spacing_mm: Mapping[View, tuple[float, float] | None]) -> ClassifierOutput:
    """Run the curvature classifier on the neutral view and the upper-cervical classifier on all three views.

    ``images``: one float image (rows, cols) in [0, 1], bone bright, per view present in the study.
    ``spacing_mm``: (row, col) mm/px at the patient plane per view, or None when unknown.
    """
    out = ClassifierOutput()
    if View.NEUTRAL in images:
        try:
            from models.curvature.predictor import algorithm_info, predict_curvature

            out.findings.append(predict_curvature(images[View.NEUTRAL], spacing_mm.get(View.NEUTRAL)))
            out.algorithms.append(algorithm_info())
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            log.warning("curvature classifier did not run: %s", e)
            out.warnings.append(f"curvature class model did not run: {e}")
    else:
        out.warnings.append("curvature class model: no neutral view")
    missing = [v.value for v in (View.EXTENSION, View.NEUTRAL, View.FLEXION) if v not in images]
    if missing:
        out.warnings.append(f"upper-cervical model needs extension, neutral and flexion views; missing {', '.join(missing)}")
    else:
        try:
            from models.upper_cervical.predictor import algorithm_info as uc_info
            from models.upper_cervical.predictor import predict_upper_cervical

            out.findings.extend(predict_upper_cervical(images))
            out.algorithms.append(uc_info())
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            log.warning("upper-cervical classifier did not run: %s", e)
            out.warnings.append(f"upper-cervical model did not run: {e}")
    return out


def classify_segments(image: np.ndarray, keypoints: np.ndarray, image_uid: str) -> ClassifierOutput:
    """Cord compression per segment C2-C3..C6-C7 on the neutral view (seed 004): one finding per segment with
    its probability and one Grad-CAM heat map per segment. ``keypoints`` (30, 2) are the neutral view's, already
    through the uncertainty gate; ``image`` is float [0, 1], bone bright, original pixels."""
    out = ClassifierOutput()
    try:
        from models.cord_compression.predictor import algorithm_info, predict_cord_compression

        findings, maps = predict_cord_compression(image, keypoints, image_uid)
        out.findings.extend(findings)
        out.heatmaps.extend(maps)
        out.algorithms.append(algorithm_info())
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        log.warning("cord compression classifier did not run: %s", e)
        out.warnings.append(f"cord compression model did not run: {e}")
    return out
