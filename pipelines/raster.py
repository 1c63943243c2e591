"""Masks on the pixel grid: polygon fill (the pixels whose centres lie inside a polygon, even-odd rule) and a mask's
bounding box.

What ``matplotlib.path.Path(polygon).contains_points`` answers for every pixel centre of the polygon's bounding box,
computed per row from the edges' crossings instead of per point: a vertebral body or the canal band of a 2800 x 2300
radiograph in ~1 ms instead of ~15 ms. Pixel (row r, column c) has its centre at x = c, y = r.
"""

from __future__ import annotations

import numpy as np


def fill_polygon(polygon: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bool (rows, cols) mask of the pixels whose centres lie inside ``polygon`` ((n, 2) x, y in pixel coordinates,
    closed implicitly; self-intersecting outlines by the even-odd rule). A centre inside counts when an odd number
    of edges cross the row at or left of it (edges crossing where ``y_a > y`` differs from ``y_b > y``)."""
    out = np.zeros((rows, cols), dtype=bool)
    p = np.asarray(polygon, dtype=np.float64)
    if p.ndim != 2 or len(p) < 3 or not np.isfinite(p).all():
        return out
    x0, y0 = np.floor(p.min(axis=0)).astype(int)
    x1, y1 = np.ceil(p.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols - 1), min(y1, rows - 1)
    if x1 < x0 or y1 < y0:
        return out
    ys = np.arange(y0, y1 + 1, dtype=np.float64)[:, None]
    xa, ya = p[:, 0][None], p[:, 1][None]
    xb, yb = np.roll(p[:, 0], -1)[None], np.roll(p[:, 1], -1)[None]
    crosses = (ya > ys) != (yb > ys)  # (rows, edges); never true for a horizontal edge
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = xa + (ys - ya) * (xb - xa) / (yb - ya)
    xi = np.sort(np.where(crosses, xi, np.inf), axis=1)  # each row: its crossings first, an even number of them
    width = x1 - x0 + 1
    run = np.zeros((len(ys), width + 1), dtype=np.int32)
    if xi.shape[1] % 2:  # an odd number of edges: pad, a crossing count per row is even anyway
        xi = np.concatenate([xi, np.full((len(xi), 1), np.inf)], axis=1)
    r, k = np.nonzero(np.isfinite(xi[:, 0::2]) & np.isfinite(xi[:, 1::2]))
    # inside: columns c with x_(2k) <= c < x_(2k+1) (an odd number of crossings at or left of c)
    start = np.clip(np.ceil(xi[r, 2 * k]) - x0, 0, width).astype(np.int64)
    stop = np.clip(np.ceil(xi[r, 2 * k + 1]) - x0, 0, width).astype(np.int64)
    np.add.at(run, (r, start), 1)
    np.add.at(run, (r, stop), -1)
    out[y0 : y1 + 1, x0 : x1 + 1] = np.cumsum(run[:, :width], axis=1) > 0
    return out


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The slices of the smallest box holding every True of ``mask`` (any dimensions); None when it has none."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not len(hit):
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


__all__ = ["bounding_box", "fill_polygon"]
