"""Coarse-to-fine keypoint cascade: a global stage finds the spine, a local stage measures each vertebra.

Stage 1 (global): the whole radiograph letterboxed to a small square (160 px); the HRNet-style network of
``network.py`` predicts 12 points with DSNT: the 6 vertebral-body centres C2..C7 (mean of the 4 corners)
and the 6 spinolaminar points, plus the view.

Stage 2 (local, per vertebra): an oriented square crop centred on the vertebra's (stage-1) centre, rotated so
that the local spine axis (from the neighbouring centres) points up (cranial = up, anterior = right, a
mirror image when the patient faces left) and scaled to ``side_factor`` times the median distance between
adjacent body centres (anatomy-normalised, so no pixel spacing is needed; about 70 mm). A shared small
network (the vertebra level as a second, constant input channel) predicts that vertebra's 4 corners and its
spinolaminar point with heatmaps + DSNT; :class:`~pipelines.xray.preprocessing.AffineTransform` maps them
back to original pixels. The crop can be repeated at the refined centres (``iterations``).

Conventions: points ``(x, y)`` in pixels, x right, y down; vertebra index 0 = C2.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipelines.xray.preprocessing import AffineTransform

N_LEVELS = 6
"""C2..C7."""
STAGE1_POINTS = 12
"""6 body centres then 6 spinolaminar points."""
STAGE2_POINTS = 5
"""antero-superior, antero-inferior, postero-superior, postero-inferior corner, spinolaminar point."""


def stage1_targets(keypoints: np.ndarray) -> np.ndarray:
    """(30, 2) keypoints (``KEYPOINT_NAMES`` order) -> (12, 2): body centres C2..C7, spinolaminar C2..C7."""
    kp = np.asarray(keypoints, dtype=np.float64)
    return np.concatenate([kp[:24].reshape(N_LEVELS, 4, 2).mean(axis=1), kp[24:30]])


def vertebra_points(keypoints: np.ndarray, level: int) -> np.ndarray:
    """(5, 2): the 4 corners of vertebra ``level`` (0 = C2) and its spinolaminar point."""
    kp = np.asarray(keypoints, dtype=np.float64)
    return np.concatenate([kp[4 * level : 4 * level + 4], kp[24 + level : 25 + level]])


def assemble(per_level: np.ndarray) -> np.ndarray:
    """(6, 5, ...) per-vertebra outputs -> (30, ...) in ``KEYPOINT_NAMES`` order (inverse of :func:`vertebra_points`)."""
    a = np.asarray(per_level)
    return np.concatenate([a[:, :4].reshape(24, *a.shape[2:]), a[:, 4]])


def spine_frames(centres: np.ndarray, spinolaminar: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Local frames from the 6 body centres and spinolaminar points (pixels).

    Returns ``up`` (6, 2) unit vectors towards the cranial neighbour (along the local spine axis),
    ``anterior`` (6, 2) unit vectors perpendicular to ``up`` pointing away from the spinolaminar line
    (one sign for the whole spine), and ``gap``: the median distance between adjacent centres (pixels; the
    median, so that one misplaced centre does not rescale every crop).
    """
    c = np.asarray(centres, dtype=np.float64)
    prev = np.concatenate([c[:1], c[:-1]])
    nxt = np.concatenate([c[1:], c[-1:]])
    up = prev - nxt
    up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
    perp = np.column_stack([-up[:, 1], up[:, 0]])
    sign = 1.0 if float(np.sum((c - np.asarray(spinolaminar, dtype=np.float64)) * perp)) >= 0 else -1.0
    gap = float(np.median(np.linalg.norm(c[1:] - c[:-1], axis=1)))
    return up, sign * perp, max(gap, 1e-3)


def crop_transform(centre: np.ndarray, up: np.ndarray, anterior: np.ndarray, side_px: float, size: int
                   ) -> AffineTransform:
    """The oriented crop: model ``x`` runs anterior, model ``y`` caudal; ``side_px`` original pixels on ``size``."""
    s = side_px / size
    down = -np.asarray(up, dtype=np.float64)
    lin = np.column_stack([np.asarray(anterior, dtype=np.float64), down]) * s
    c0 = (size - 1) / 2
    t = np.asarray(centre, dtype=np.float64) - lin @ np.array([c0, c0])
    return AffineTransform(np.column_stack([lin, t]), (size, size))


def rotate(v: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate 2-vectors (..., 2) by ``angle_deg`` (image coordinates)."""
    a = np.deg2rad(angle_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.asarray(v) @ r.T


def reduction_factor(transforms: list[AffineTransform]) -> int:
    """Integer block-average factor that keeps every crop at or above its own resolution (>= 1)."""
    return max(1, int(np.floor(min(t.scale for t in transforms))))


def block_reduce(image: np.ndarray, f: int) -> np.ndarray:
    """Block-average ``image`` by the integer factor ``f`` (float32)."""
    img = np.asarray(image, dtype=np.float32)
    if f <= 1:
        return img
    r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    # rows of each block, then its columns, in float32 (as pipelines.xray.preprocessing.block_mean: 1.6-3.6x faster
    # than one mean over two strided axes, the same values to float32 rounding)
    out = img[:r, :c].reshape(r // f, f, c // f, f).sum(axis=1, dtype=np.float32).sum(axis=2, dtype=np.float32)
    out *= np.float32(1.0 / (f * f))
    return out


def sample_crops(image: np.ndarray, transforms: list[AffineTransform], *, reduced: tuple[np.ndarray, int] | None = None
                 ) -> np.ndarray:
    """Bilinear crops (N, S, S) in [0, 1] (0 outside the image) of a [0, 1] image for ``transforms``.

    The image is block-averaged once by :func:`reduction_factor` (shared by all crops, so a 3000 px
    radiograph is reduced once, not per crop); ``reduced`` passes a precomputed ``(image, factor)``.
    """
    if reduced is None:
        f = reduction_factor(transforms)
        reduced = (block_reduce(image, f), f)
    img, f = reduced
    out = np.empty((len(transforms), *transforms[0].size), dtype=np.float32)
    # original = f * reduced + (f - 1) / 2
    for i, t in enumerate(transforms):
        m = t.matrix / f
        m[:, 2] -= (f - 1) / 2 / f
        m_rc = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
        off_rc = np.array([m[1, 2], m[0, 2]])
        out[i] = ndimage.affine_transform(img, m_rc, offset=off_rc, output_shape=t.size, order=1, cval=0.0,
                                          mode="constant")
    return out


class DeviceImage:
    """A [0, 1] image (rows, cols) on a torch device, resampled there the way :func:`sample_crops` and
    ``pipelines.xray.preprocessing.warp`` resample with scipy: block-averaged by an integer factor (cached per
    factor), then bilinear, 0 outside the image (scipy's ``mode="constant"``: no interpolation beyond the edges).

    The predictor uses it on a GPU so that letterboxing and the vertebra crops do not run on the CPU; on the CPU the
    results agree with the scipy path to float32 rounding (``tests/node/test_node_batching.py``).
    """

    def __init__(self, image: np.ndarray, device: object) -> None:
        import torch

        self.device = device
        self._reduced = {1: torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)}

    def reduced(self, f: int):  # noqa: ANN201 - torch.Tensor (rows // f, cols // f)
        """The image block-averaged by ``f`` (as :func:`block_reduce`)."""
        import torch.nn.functional as F  # noqa: N812

        if f not in self._reduced:
            img = self._reduced[1]
            r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
            self._reduced[f] = F.avg_pool2d(img[None, None, :r, :c], f)[0, 0]
        return self._reduced[f]

    def sample(self, transforms: list[AffineTransform], f: int | None = None):  # noqa: ANN201 - torch.Tensor (N, S, S)
        """Bilinear samples (N, S, S) for ``transforms`` (one output size) from the image reduced by ``f``
        (default :func:`reduction_factor`)."""
        import torch
        import torch.nn.functional as F  # noqa: N812

        f = reduction_factor(transforms) if f is None else max(1, int(f))
        img = self.reduced(f)
        h, w = img.shape
        rows, cols = transforms[0].size
        m = np.stack([t.matrix for t in transforms]) / f  # original = f * reduced + (f - 1) / 2
        m[:, :, 2] -= (f - 1) / 2 / f
        m = torch.as_tensor(m, dtype=torch.float32, device=img.device)
        ys = torch.arange(rows, dtype=torch.float32, device=img.device)[:, None]
        xs = torch.arange(cols, dtype=torch.float32, device=img.device)[None, :]
        x = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
        y = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
        grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
        out = F.grid_sample(img[None, None].expand(len(transforms), 1, h, w), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=True)[:, 0]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        return out * inside


def level_channel(level: int, size: int) -> np.ndarray:
    """The constant second input channel that tells the stage-2 network which vertebra (C2 -1 .. C7 +1)."""
    return np.full((size, size), (level - 2.5) / 2.5, dtype=np.float32)


__all__ = [
    "N_LEVELS", "DeviceImage", "STAGE1_POINTS", "STAGE2_POINTS", "assemble", "block_reduce", "crop_transform", "level_channel",
    "reduction_factor", "rotate", "sample_crops", "spine_frames", "stage1_targets", "vertebra_points",
]
