"""Appearance randomisation for cascade training (``cascade_train stage1|stage2 --appearance P``; issue 13, item 3).

Renderer A, renderer B and a real radiograph differ in how bone, soft tissue and background map to grey values, in
sharpness and in the texture of the noise, far more than in anatomy. With probability ``p`` per example this module
redraws those: a random monotone tone curve, a smooth multiplicative and additive field (heel effect, soft-tissue
thickness, a grid), blur or unsharp-mask edge enhancement, a loss of resolution, and correlated noise. The geometry
(and therefore the keypoint targets) is untouched. Works on a batch of model inputs in [-1, 1], shape (n, S, S).
``p`` = 0 returns the batch unchanged (and draws nothing from ``rng``: training runs without it stay bit-identical).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _tone_curve(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random increasing piecewise-linear curve [0, 1] -> [0, 1] through 5 knots (strength varies)."""
    knots = np.linspace(0, 1, 6)
    vals = np.sort(rng.uniform(0, 1, 6))
    vals = (vals - vals[0]) / max(vals[-1] - vals[0], 1e-3)
    mix = rng.uniform(0.3, 1.0)
    return np.interp(u, knots, (1 - mix) * knots + mix * vals).astype(np.float32)


def _smooth_field(size: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth random field of one size x size image, in [-amplitude, amplitude]."""
    grid = rng.uniform(-1, 1, (4, 4))
    f = ndimage.zoom(grid, size / 4, order=3, mode="nearest")[:size, :size]
    return (amplitude * f / max(np.abs(f).max(), 1e-6)).astype(np.float32)


def randomize(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """``x``: (n, S, S) float32 in about [-1, 1]. Each image is redrawn with probability ``p``."""
    if p <= 0:
        return x
    out = x.copy()
    for i in np.flatnonzero(rng.random(len(x)) < p):
        u = np.clip((out[i] + 1) / 2, 0, 1)
        s = u.shape[0]
        if rng.random() < 0.7:
            u = _tone_curve(u, rng)
        if rng.random() < 0.5:
            u = u * (1 + _smooth_field(s, rng, rng.uniform(0.05, 0.35))) + _smooth_field(s, rng, rng.uniform(0, 0.2))
        r = rng.random()
        if r < 0.3:
            u = ndimage.gaussian_filter(u, rng.uniform(0.5, 2.0))
        elif r < 0.55:
            u = u + rng.uniform(0.5, 1.5) * (u - ndimage.gaussian_filter(u, rng.uniform(1.0, 4.0)))
        if rng.random() < 0.25:
            f = rng.uniform(1.5, 3.0)
            small = ndimage.zoom(u, 1 / f, order=1)
            u = ndimage.zoom(small, s / small.shape[0], order=1)[:s, :s]
            if u.shape[0] < s or u.shape[1] < s:  # rounding: pad with the edge
                u = np.pad(u, ((0, s - u.shape[0]), (0, s - u.shape[1])), mode="edge")
        if rng.random() < 0.4:
            noise = ndimage.gaussian_filter(rng.normal(0, 1, (s, s)), rng.uniform(0.7, 2.5))
            u = u + noise / max(noise.std(), 1e-6) * rng.uniform(0.01, 0.06)
        lo, hi = np.percentile(u, [0.5, 99.5])
        if rng.random() < 0.5 and hi - lo > 1e-3:  # re-window, as a display would
            u = (u - lo) / (hi - lo)
        out[i] = np.clip(u, 0, 1) * 2 - 1
    return out.astype(np.float32)
