"""Segment localisation from the X-ray keypoints (the seed's segmentation-based localisation) and the way back.

A segment (``"C4-C5"``) is the disc between two vertebrae. Its crop is oriented by the two body centres (model
``y`` runs caudally from the upper to the lower centre, model ``x`` runs anteriorly), centred half way between
the disc centre and the mid point of the two spinolaminar points, and sized in units of the mean body depth
``D`` of the two vertebrae (endplate lengths): ``HEIGHT_D x WIDTH_D`` depths onto ``CROP`` pixels. Because the
scale is the body depth, the canal depth in the crop is the Pavlov ratio and disc height is relative to the
bodies: what a reader looks at. Pure numpy (no torch).
"""

from __future__ import annotations

import numpy as np

from pipelines.results import SEGMENTS
from pipelines.xray.preprocessing import AffineTransform, warp

CROP: tuple[int, int] = (64, 80)
"""Crop (rows = cranio-caudal, columns = posterior -> anterior), pixels."""
HEIGHT_D = 1.9
WIDTH_D = 2.4


def segment_index(segment: str) -> int:
    return SEGMENTS.index(segment)


def segment_frame(keypoints: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(centre, down, anterior, depth_px)`` of segment ``j`` (0 = C2-C3) from the 30 keypoints (x, y px)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    up_c, lo_c = kp[4 * j : 4 * j + 4], kp[4 * j + 4 : 4 * j + 8]
    cu, cl = up_c.mean(axis=0), lo_c.mean(axis=0)
    down = cl - cu
    down /= max(float(np.hypot(*down)), 1e-9)
    perp = np.array([-down[1], down[0]])
    ant_pts = np.concatenate([up_c[:2], lo_c[:2]]).mean(axis=0)
    post_pts = np.concatenate([up_c[2:], lo_c[2:]]).mean(axis=0)
    anterior = perp if float((ant_pts - post_pts) @ perp) >= 0 else -perp
    depth = float(np.mean([np.hypot(*(c[0] - c[2])) for c in (up_c, lo_c)] +
                          [np.hypot(*(c[1] - c[3])) for c in (up_c, lo_c)]))
    disc = 0.5 * (cu + cl)
    sl = 0.5 * (kp[24 + j] + kp[25 + j])
    centre = 0.5 * (disc + sl)
    return centre, down, anterior, max(depth, 1e-3)


def segment_transform(keypoints: np.ndarray, j: int, *, size: tuple[int, int] = CROP,
                      rng: np.random.Generator | None = None, jitter: float = 0.0) -> AffineTransform:
    """The oriented crop of segment ``j``: ``original = matrix @ [x, y, 1]`` (model x anterior, y caudal).

    ``rng`` + ``jitter`` (training): shift the centre by ``jitter`` x D (1 sigma), rotate by ``40 * jitter``
    degrees and scale by ``1 +- jitter`` (1 sigma), mimicking keypoint errors at inference."""
    centre, down, ant, depth = segment_frame(keypoints, j)
    rows, cols = size
    if rng is not None and jitter > 0:
        centre = centre + rng.normal(0.0, jitter * depth, 2)
        a = np.deg2rad(rng.normal(0.0, 40.0 * jitter))
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        down, ant = r @ down, r @ ant
        depth = depth * float(np.clip(rng.normal(1.0, jitter), 0.8, 1.2))
    sx, sy = WIDTH_D * depth / cols, HEIGHT_D * depth / rows
    lin = np.column_stack([ant * sx, down * sy])
    t = centre - lin @ np.array([(cols - 1) / 2, (rows - 1) / 2])
    return AffineTransform(np.column_stack([lin, t]), (rows, cols))


def segment_crops(image: np.ndarray, keypoints: np.ndarray, *, rng: np.random.Generator | None = None,
                  jitter: float = 0.0) -> tuple[np.ndarray, list[AffineTransform]]:
    """The 5 segment crops (5, rows, cols) in [0, 1] of a [0, 1] image (0 outside it) and their transforms."""
    tfs = [segment_transform(keypoints, j, rng=rng, jitter=jitter) for j in range(len(SEGMENTS))]
    return np.stack([warp(image, t) for t in tfs]), tfs


def normalise(crops: np.ndarray) -> np.ndarray:
    """Per-crop contrast normalisation (zero mean, unit spread) of [0, 1] crops (..., rows, cols), float32."""
    x = np.asarray(crops, dtype=np.float32)
    m = x.mean(axis=(-2, -1), keepdims=True)
    s = x.std(axis=(-2, -1), keepdims=True)
    return (x - m) / np.maximum(s, 0.02)


def crop_to_image(values: np.ndarray, transform: AffineTransform, shape: tuple[int, int]
                  ) -> tuple[np.ndarray, tuple[int, int]]:
    """A map on the crop grid -> the original pixels it covers: ``(patch, (y0, x0))``.

    ``patch`` (float32) covers the bounding box of the crop in the image (clipped to ``shape``) with ``(y0, x0)``
    its top-left pixel; pixels outside the crop are 0 (bilinear sampling of ``values``)."""
    from scipy import ndimage

    rows, cols = shape
    h, w = transform.size
    corners = transform.to_original(np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]]))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols - 1), min(y1, rows - 1)
    if x1 < x0 or y1 < y0:
        return np.zeros((0, 0), np.float32), (0, 0)
    # crop (model) coordinates of image pixel (x, y): inv @ ((x, y) - t), affine in the patch's row and column
    inv = np.linalg.inv(transform.matrix[:, :2].astype(np.float64))
    base = inv @ (np.array([x0, y0], np.float64) - transform.matrix[:, 2])
    out_shape = (int(y1 - y0 + 1), int(x1 - x0 + 1))
    out = ndimage.affine_transform(np.asarray(values, np.float32), [[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]],
                                   offset=(base[1], base[0]), output_shape=out_shape, order=1, cval=0.0,
                                   mode="constant")
    rr = np.arange(out_shape[0], dtype=np.float64)[:, None]
    cc = np.arange(out_shape[1], dtype=np.float64)[None, :]
    mx = inv[0, 0] * cc + inv[0, 1] * rr + base[0]
    my = inv[1, 0] * cc + inv[1, 1] * rr + base[1]
    inside = (mx >= -0.5) & (mx <= w - 0.5) & (my >= -0.5) & (my <= h - 0.5)
    return np.where(inside, out, np.float32(0.0)).astype(np.float32), (int(y0), int(x0))
