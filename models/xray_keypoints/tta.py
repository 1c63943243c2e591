"""Test-time augmentation (TTA) of the keypoint cascade: a few cheap geometric variants of every radiograph whose
disagreement widens the keypoint spread where the model is unsure.

A variant changes only the sampling transforms, never the pixels, so nothing is copied and every prediction
maps back to the original pixels through its own :class:`~pipelines.xray.preprocessing.AffineTransform`:

- stage 1: the letterbox mirrored left-right (the patient facing the other way), zoomed (``zoom`` > 1: the
  image fills more of the input) and shifted (fractions of the input side);
- stage 2: each vertebra crop rotated by ``crop_rotation_deg`` and its side scaled by ``crop_scale``.

The between-variant spread of a keypoint (sample standard deviation over the variants, per coordinate, both
coordinates pooled) is added in quadrature to its calibrated heatmap spread; the point itself is the
prediction of the first variant (the plain one) unless ``point`` is ``"mean"``. A variant that lands a vertebra on
another level (:func:`level_jumps`) makes that spread large (several mm): the view's keypoint-spread gate or the
interval-width gate then reports it "not measurable", which is what should happen to a level the model cannot hold
under a 4 % zoom.

Conventions: points ``(x, y)`` in original pixels, x right, y down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipelines.xray.preprocessing import AffineTransform


@dataclass(frozen=True)
class Variant:
    """One test-time variant of the cascade's sampling (all zeros / ones: the plain prediction)."""

    mirror: bool = False
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    """Stage-1 input shift (x, y) in fractions of the input side."""
    crop_rotation_deg: float = 0.0
    crop_scale: float = 1.0

    def letterbox(self, rows: int, cols: int, size: int) -> AffineTransform:
        """The stage-1 input transform of a ``rows x cols`` image under this variant."""
        t = AffineTransform.letterbox(rows, cols, size)
        if not self.mirror and self.zoom == 1.0 and self.shift == (0.0, 0.0):
            return t
        s = t.matrix[0, 0] / self.zoom  # original pixels per model pixel
        c0 = (size - 1) / 2
        sx = -s if self.mirror else s
        centre = np.array([(cols - 1) / 2, (rows - 1) / 2]) - np.array(self.shift) * size * s
        lin = np.array([[sx, 0.0], [0.0, s]])
        return AffineTransform(np.column_stack([lin, centre - lin @ np.array([c0, c0])]), t.size)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shift": list(self.shift)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Variant:
        return cls(bool(d.get("mirror", False)), float(d.get("zoom", 1.0)),
                   tuple(float(v) for v in d.get("shift", (0.0, 0.0))),  # type: ignore[arg-type]
                   float(d.get("crop_rotation_deg", 0.0)), float(d.get("crop_scale", 1.0)))


FLIP_FRACTION = 0.5
"""A variant whose body centre moved by more than this x the centre gap landed on another vertebra."""

DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant(),
    Variant(zoom=1.04, shift=(-0.015, 0.0), crop_rotation_deg=3.0, crop_scale=1.03),
    Variant(zoom=0.96, shift=(0.015, 0.015), crop_rotation_deg=-3.0, crop_scale=0.97),
)
"""The shipped variants: three passes of the cascade (about 3 x 85 ms on the 2-core CPU). Chosen on the calibration
set (MODEL_CARD.md): a mirrored stage 1 put a vertebra on another level in about half of renderer B's correctly
assigned views, these milder ones in about a third; every wrong-level view that passed the other gates jumped."""


def level_jumps(points: Sequence[np.ndarray], fraction: float = FLIP_FRACTION) -> np.ndarray:
    """(K,) bool: variants with a vertebral-body centre more than ``fraction`` x the median centre gap away from
    the first (plain) variant's: they landed on another vertebra (a level jump), not near the same one."""
    c = np.stack([np.asarray(q, dtype=np.float64)[:24].reshape(6, 4, 2).mean(axis=1) for q in points])
    gap = float(np.median(np.linalg.norm(np.diff(c[0], axis=0), axis=1)))
    return np.linalg.norm(c - c[0], axis=-1).max(axis=1) > fraction * max(gap, 1e-9)


def combine(points: Sequence[np.ndarray], sigma_px: Sequence[np.ndarray], *, point: str = "first",
            weight: float = 1.0, drop_jumps: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variants' (30, 2) points and (30,) calibrated heatmap spreads -> point (30, 2), total spread (30,) and the
    between-variant spread (30,), pixels.

    Total spread = sqrt(mean heatmap spread^2 + (``weight`` x between-variant spread)^2). With ``drop_jumps``, the
    variants that jumped to another vertebra (:func:`level_jumps`) are left out of both."""
    p = np.stack([np.asarray(q, dtype=np.float64) for q in points])
    s = np.stack([np.asarray(q, dtype=np.float64) for q in sigma_px])
    if drop_jumps and len(p) > 1:
        keep = ~level_jumps(p)
        p, s = p[keep], s[keep]
    if len(p) > 1:
        between = np.sqrt(np.sum(p.var(axis=0, ddof=1), axis=-1) / 2)
    else:
        between = np.zeros(p.shape[1])
    heat = np.sqrt(np.mean(s**2, axis=0))
    total = np.sqrt(heat**2 + (weight * between) ** 2)
    centre = p.mean(axis=0) if point == "mean" else p[0]
    return centre, total, between


__all__ = ["DEFAULT_VARIANTS", "FLIP_FRACTION", "Variant", "combine", "level_jumps"]
