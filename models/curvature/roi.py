"""Cheap cervical-spine localisation and the two regions of interest derived from it.

A tiny heatmap network (:class:`SpineLocator`, ~60 k parameters) sees the whole radiograph letterboxed to
96 x 96 and finds three landmarks by a soft-argmax over 24 x 24 heatmaps:

* ``c2_top``: midpoint of the C2 antero-superior and postero-superior corners (base of the dens),
* ``c4_centre``: mean of the four C4 corners,
* ``c7_bottom``: midpoint of the C7 antero-inferior and postero-inferior corners.

It replaces the paper's YOLO-v3 detector (seed 003) and CerviHFENet's adaptive ROI module (seed 001) with
something that trains in minutes on a CPU; it does not use the 30-keypoint model. From the three points:

* :func:`curvature_box`: a square around C2-C7, rotated so that the C2-top -> C7-bottom chord is vertical,
  side ``1.3 x`` chord length (adapts to scale and in-plane rotation);
* :func:`upper_cervical_box`: a square around C0-C2 centred ``0.2 x`` chord above ``c2_top`` along the
  cervical axis (C4 -> C2 direction), side ``0.6 x`` chord (about 60 mm), rotated the same way.

Boxes are :class:`pipelines.xray.preprocessing.AffineTransform` (model pixel -> original pixel).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.predictor import resolve_device
from pipelines.xray.preprocessing import AffineTransform, warp

LANDMARKS: tuple[str, ...] = ("c2_top", "c4_centre", "c7_bottom")
LOCATOR_SIZE = 96
"""Letterbox input size of the locator (pixels)."""
DEFAULT_LOCATOR = Path(__file__).with_name("spine_locator_v1.pt")

CURVATURE_SIDE = 1.3
UPPER_SIDE = 0.6
UPPER_SHIFT = 0.2


def landmarks_from_keypoints(kps: np.ndarray) -> np.ndarray:
    """(30, 2) keypoints in ``KEYPOINT_NAMES`` order -> (3, 2) :data:`LANDMARKS` (same pixels)."""
    k = np.asarray(kps, dtype=np.float64)
    c2_top = 0.5 * (k[0] + k[2])
    c4 = k[8:12].mean(axis=0)
    c7_bottom = 0.5 * (k[21] + k[23])
    return np.stack([c2_top, c4, c7_bottom])


def _axis(points: np.ndarray) -> tuple[float, float]:
    """Chord length (px) and the angle (deg) that turns the C7->C2 direction to image-up."""
    p = np.asarray(points, dtype=np.float64)
    chord = float(np.hypot(*(p[0] - p[2])))
    d = p[0] - p[1]
    d = d / max(float(np.hypot(*d)), 1e-6)
    # AffineTransform.box rotates the model grid by angle: model up (0, -1) maps to rot @ (0, -1)
    angle = math.degrees(math.atan2(d[0], -d[1]))
    return max(chord, 8.0), angle


def curvature_box(points: np.ndarray, size: int, context: float = 1.0) -> AffineTransform:
    """Square ROI over C2-C7 from the 3 landmarks (original px); ``context`` > 1 widens it (training crops)."""
    p = np.asarray(points, dtype=np.float64)
    chord, angle = _axis(p)
    c = 0.5 * (p[0] + p[2]) * 0.5 + 0.5 * p[1]
    return AffineTransform.box(float(c[0]), float(c[1]), CURVATURE_SIDE * chord * context, size, angle)


def upper_cervical_box(points: np.ndarray, size: int, context: float = 1.0) -> AffineTransform:
    """Square ROI over C0-C2 from the 3 landmarks (original px), rotated so the cervical axis is vertical."""
    p = np.asarray(points, dtype=np.float64)
    chord, angle = _axis(p)
    d = p[0] - p[1]
    d = d / max(float(np.hypot(*d)), 1e-6)
    c = p[0] + UPPER_SHIFT * chord * d
    return AffineTransform.box(float(c[0]), float(c[1]), UPPER_SIDE * chord * context, size, angle)


def crop(image: np.ndarray, box: AffineTransform) -> np.ndarray:
    """[0, 1] image -> float32 crop in [-1, 1] (outside the image: -1)."""
    return warp(image, box, cval=0.0) * 2.0 - 1.0


# --------------------------------------------------------------------------------------------- network
class SpineLocator(nn.Module):
    """96 x 96 input -> 3 heatmaps at 24 x 24 -> soft-argmax coordinates in input pixels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(i: int, o: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.body = nn.Sequential(block(1, w, 2), block(w, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1),
                                  block(2 * w, 4 * w, 2), block(4 * w, 4 * w, 1, ), nn.Upsample(scale_factor=2),
                                  block(4 * w, 2 * w, 1), nn.Conv2d(2 * w, len(LANDMARKS), 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (coords (B, 3, 2) in input px (x, y), logits (B, 3, H, W))."""
        logits = self.body(x)
        b, k, h, w = logits.shape
        prob = torch.softmax(logits.flatten(2), dim=-1).view(b, k, h, w)
        sx = x.shape[-1] / w
        xs = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) * sx - 0.5
        ys = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) * (x.shape[-2] / h) - 0.5
        cx = (prob.sum(2) * xs).sum(-1)
        cy = (prob.sum(3) * ys).sum(-1)
        return torch.stack([cx, cy], dim=-1), logits


def locator_input(image: np.ndarray) -> tuple[np.ndarray, AffineTransform]:
    """[0, 1] image -> the (96, 96) locator input in [-1, 1] and its letterbox transform."""
    tf = AffineTransform.letterbox(image.shape[0], image.shape[1], LOCATOR_SIZE)
    return crop(image, tf), tf


class Locator:
    """Loaded :class:`SpineLocator` weights (a ``spine_locator`` checkpoint, part ``network``) on a device;
    :meth:`locate` gives the 3 landmarks in original pixels."""

    def __init__(self, net: SpineLocator, version: str, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.version = version

    @classmethod
    def load(cls, path: Path | str | None = None, device: torch.device | str = "cpu") -> Locator:
        """The locator from ``path`` (None: the shipped ``spine_locator_v1.pt``) on ``device``."""
        ck = load_checkpoint(Path(path or DEFAULT_LOCATOR), "spine_locator")
        net = SpineLocator(int(ck.meta["width"]))
        net.load_state_dict(ck.part("network"))
        return cls(net, ck.version, device)

    @torch.no_grad()
    def locate(self, image: np.ndarray) -> np.ndarray:
        """(rows, cols) [0, 1] image -> (3, 2) landmarks (x, y) in its pixels."""
        x, tf = locator_input(np.asarray(image, dtype=np.float32))
        coords, _ = self.net(torch.from_numpy(x)[None, None].to(self.device))
        return tf.to_original(coords[0].cpu().numpy())


def save_locator(net: SpineLocator, path: Path, width: int, meta: dict) -> None:
    """Write a ``spine_locator`` checkpoint (fp16); ``meta["version"]`` is its version."""
    rest = {k: v for k, v in meta.items() if k != "version"}
    save_checkpoint(path, "spine_locator", str(meta.get("version", "1")), {"network": net}, {"width": width, **rest})
