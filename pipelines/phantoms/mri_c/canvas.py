"""A label canvas over one slice's render grid: per-pixel spine coordinates (s, t) and lateral x, with windows.

(s, t) are computed on a coarse sub-grid (every ``step`` pixels) by foot-point projection and interpolated
bilinearly to the render grid (the map is smooth within the field of view). ``window`` finds, from the coarse
grid, the pixel rectangle an object with given (s, t) bounds can touch, so each structure is evaluated only
there.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_c.frame import SpineFrame


def _interp_matrix(n_fine: int, idx: np.ndarray) -> np.ndarray:
    """(n_fine, len(idx)) linear interpolation weights from samples at fine indices ``idx``."""
    w = np.zeros((n_fine, len(idx)), dtype=np.float32)
    f = np.arange(n_fine)
    j = np.clip(np.searchsorted(idx, f, side="right") - 1, 0, len(idx) - 2)
    a = (f - idx[j]) / (idx[j + 1] - idx[j])
    w[f, j] = 1 - a
    w[f, j + 1] = a
    return w


class Canvas:
    """Render grid of one slice (rows, cols), with s, t (mm) per pixel and the slice's x map."""

    def __init__(self, frame: SpineFrame, origin: np.ndarray, d_col: np.ndarray, d_row: np.ndarray,
                 shape: tuple[int, int], step: int = 8) -> None:
        rows, cols = shape
        self.shape = shape
        ri = np.unique(np.r_[np.arange(0, rows, step), rows - 1])
        ci = np.unique(np.r_[np.arange(0, cols, step), cols - 1])
        pts = origin[None, None, :] + ri[:, None, None] * d_row + ci[None, :, None] * d_col
        cs, ct = frame.project(pts[..., 1], pts[..., 2])
        wr, wc = _interp_matrix(rows, ri), _interp_matrix(cols, ci)
        self.s = (wr @ cs.astype(np.float32) @ wc.T).astype(np.float32)
        self.t = (wr @ ct.astype(np.float32) @ wc.T).astype(np.float32)
        self.cs, self.ct, self.ri, self.ci, self.wr, self.wc = cs, ct, ri, ci, wr, wc
        x_r = (origin[0] - frame.x0) + np.arange(rows, dtype=np.float32) * d_row[0]
        x_c = np.arange(cols, dtype=np.float32) * d_col[0]
        self.x_base = (x_r[:, None] + x_c[None, :]).astype(np.float32)
        self.set_offset(0.0)
        self.pad = float(step * max(np.linalg.norm(d_col), np.linalg.norm(d_row)) * 1.5)
        self.lab = np.zeros(shape, dtype=np.uint8)
        self.cache: dict[str, np.ndarray] = {}

    def prof(self, key: str, fn, w: tuple[slice, slice]) -> np.ndarray:
        """A function of s only, evaluated once per slice on the whole grid, viewed through window ``w``."""
        if key not in self.cache:
            self.cache[key] = fn(self.s)
        return self.cache[key][w]

    def set_offset(self, dx: float) -> None:
        """Lateral offset of the current sub-plane (mm, along x)."""
        self.x = self.x_base + np.float32(dx)
        self.x_min = float(self.x.min())
        self.x_max = float(self.x.max())

    def lateral_hit(self, lo: float, hi: float) -> bool:
        """Whether |x| in [lo, hi] can occur on the current sub-plane."""
        if self.x_min > 0:
            return self.x_min <= hi and self.x_max >= lo
        if self.x_max < 0:
            return -self.x_max <= hi and -self.x_min >= lo
        return max(-self.x_min, self.x_max) >= lo

    def window(self, s0: float, s1: float, t0: float, t1: float) -> tuple[slice, slice] | None:
        p = self.pad
        m = (self.cs >= s0 - p) & (self.cs <= s1 + p) & (self.ct >= t0 - p) & (self.ct <= t1 + p)
        if not m.any():
            return None
        r = np.nonzero(m.any(axis=1))[0]
        c = np.nonzero(m.any(axis=0))[0]
        r0 = self.ri[max(r[0] - 1, 0)]
        r1 = self.ri[min(r[-1] + 1, len(self.ri) - 1)] + 1
        c0 = self.ci[max(c[0] - 1, 0)]
        c1 = self.ci[min(c[-1] + 1, len(self.ci) - 1)] + 1
        return slice(int(r0), int(r1)), slice(int(c0), int(c1))

    def get(self, w: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(s, t, x, labels) views of a window (labels writable in place)."""
        return self.s[w], self.t[w], self.x[w], self.lab[w]
