"""Whole-image classifiers of the seed papers that run beside the keypoint model in the X-ray pipeline.

* seed 003: cervical curvature class (normal / straightened / reversed) from the neutral view, S-ResNet-34
  (``models.curvature``);
* seed 001: six upper-cervical (C0-C2) abnormalities from the extension, neutral and flexion views together,
  CerviHFENet-style (``models.upper_cervical``).

Each needs only what the pipeline already has: the radiographs as float images in [0, 1], bone bright, in
original pixels (``pipelines.xray.preprocessing.image_from_dataset``), and the neutral view's pixel spacing.
A model that cannot run (weights missing, a view missing) adds a warning instead of a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipelines.results import AlgorithmInfo, Finding, View

log = logging.getLogger(__name__)


@dataclass
class ClassifierOutput:
    """Findings of the whole-image classifiers, the algorithms that made them, and why any did not run."""

    findings: list[Finding] = field(default_factory=list)
    algorithms: list[AlgorithmInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
