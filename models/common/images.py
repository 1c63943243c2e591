"""Compact storage of model inputs: float images in [0, 1] <-> uint8 (training ``.npz`` files).

One convention for every model: 0 -> 0, 1 -> 255 (rounded, clipped). Inputs kept in [-1, 1] (the curvature
and upper-cervical crops) go through ``x * 0.5 + 0.5`` on the way in and ``* 2 - 1`` on the way out, which
gives the same bytes and floats as a direct [-1, 1] scale would.
"""

from __future__ import annotations

import numpy as np


def to_u8(x: np.ndarray) -> np.ndarray:
    """Float image(s) in [0, 1] -> uint8 (``rint(x * 255)``, clipped to 0..255)."""
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


def from_u8(x: np.ndarray) -> np.ndarray:
    """uint8 image(s) -> float32 in [0, 1] (``x / 255``)."""
    return np.asarray(x).astype(np.float32) / np.float32(255.0)


__all__ = ["from_u8", "to_u8"]
