"""What the keypoint network sees, at training and at inference (no phantom, no torch): the input size and the
refining box (:class:`AugmentConfig`, stored with the weights), the order of its view logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.vocabulary import View

VIEW_ORDER: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION)
"""Order of the network's view logits."""


@dataclass(frozen=True)
class AugmentConfig:
    """How training examples are cut from raw samples."""

    size: int = 256
    p_full: float = 0.35
    """Probability of a whole-image (first-pass) example; otherwise a box around the spine (second pass)."""
    box_margin: tuple[float, float] = (1.15, 1.5)
    """Box side = longest side of the keypoint bounding box times this factor (uniform)."""
    box_shift: float = 0.06
    """Box centre jitter as a fraction of its side."""
    rotation_deg: float = 10.0
    full_scale: tuple[float, float] = (0.9, 1.15)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: float = 0.03
    refine_margin: float = 1.3
    """Box factor used at inference for the second pass (middle of ``box_margin``)."""


def spine_box(keypoints: np.ndarray, visible: np.ndarray, margin: float) -> tuple[float, float, float]:
    """Centre x, y and side (pixels) of a square around the visible keypoints."""
    p = keypoints[visible] if visible.any() else keypoints
    lo, hi = p.min(axis=0), p.max(axis=0)
    c = (lo + hi) / 2
    return float(c[0]), float(c[1]), float(max(hi - lo) * margin)
