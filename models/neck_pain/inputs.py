"""What the neck-pain network sees, at training and in the node: the two crops around the disc centres and the
standardised clinical variables (pure numpy/scipy: no phantom, no torch).

Each image is cropped to ``INPUT`` x ``INPUT`` around the disc centres C2-C3..C6-C7 (from the X-ray corners /
the MRI disc keypoints), with anterior on the image left:

* radiograph: side ``XRAY_SIDE`` x the C2-C3 -> C6-C7 distance (adapts to magnification);
* MRI: a fixed ``MRI_SIDE_MM`` field (so the relative scale varies with the patient's size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.vocabulary import CLINICAL_VARIABLES

INPUT = 128
XRAY_SIDE = 2.2
MRI_SIDE_MM = 150.0
CLIN_MEAN = np.array([55.0, 0.4, 12.0, 40.0, 6.0], np.float32)
CLIN_SCALE = np.array([15.0, 0.5, 12.0, 15.0, 2.0], np.float32)


@dataclass(frozen=True)
class Crop:
    """A square crop: image pixel (x, y) = centre + half * R(angle) @ (flip * u, v) for crop coords (u, v) in [-1, 1]."""

    centre: tuple[float, float]
    half: float
    angle_rad: float = 0.0
    flip: bool = False

    def matrix(self) -> np.ndarray:
        """3 x 3: homogeneous crop coords -> image pixel coords."""
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        f = -1.0 if self.flip else 1.0
        return np.array([[self.half * c * f, -self.half * s, self.centre[0]],
                         [self.half * s * f, self.half * c, self.centre[1]], [0, 0, 1.0]])

    def to_crop(self, pts: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.matrix())
        return (inv[:2, :2] @ np.asarray(pts, float).T).T + inv[:2, 2]

    def sample(self, image: np.ndarray, size: int = INPUT) -> np.ndarray:
        """The crop as float32 (size, size), bilinear, zero outside; pixel centres at (i + 0.5) / size * 2 - 1."""
        g = (np.arange(size) + 0.5) / size * 2 - 1
        uu, vv = np.meshgrid(g, g)
        m = self.matrix()
        x = m[0, 0] * uu + m[0, 1] * vv + m[0, 2]
        y = m[1, 0] * uu + m[1, 1] * vv + m[1, 2]
        return ndimage.map_coordinates(image.astype(np.float32), [y, x], order=1, cval=0.0).astype(np.float32)


def xray_disc_centres(corners: np.ndarray) -> np.ndarray:
    """(5, 2) disc centres C2-C3..C6-C7 from the 24 corners (order of ``KEYPOINT_NAMES``: 4 per vertebra:
    antero-superior, antero-inferior, postero-superior, postero-inferior)."""
    c = np.asarray(corners, float)[:24].reshape(6, 4, 2)
    return np.stack([(c[i, 1] + c[i, 3] + c[i + 1, 0] + c[i + 1, 2]) / 4 for i in range(5)])


def xray_anterior_right(corners: np.ndarray) -> bool:
    c = np.asarray(corners, float)[:24].reshape(6, 4, 2)
    return bool(c[:, :2, 0].mean() > c[:, 2:, 0].mean())


def xray_crop(centres: np.ndarray, anterior_right: bool) -> Crop:
    span = float(np.linalg.norm(centres[-1] - centres[0]))
    return Crop(tuple(centres.mean(0)), XRAY_SIDE * span / 2, 0.0, anterior_right)


def mri_crop(centres: np.ndarray, pixel_spacing_mm: float) -> Crop:
    return Crop(tuple(centres.mean(0)), MRI_SIDE_MM / pixel_spacing_mm / 2, 0.0, False)


def mri_unit(slice_: np.ndarray) -> np.ndarray:
    """MR magnitude -> [0, 1] (99.5th percentile)."""
    hi = float(np.percentile(slice_, 99.5)) or 1.0
    return np.clip(slice_.astype(np.float32) / hi, 0, 1)


def clinical_vector(clinical: dict[str, float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(standardised values, present mask) in ``CLINICAL_VARIABLES`` order; missing values are 0 with mask 0."""
    v = np.array([clinical.get(k) if clinical.get(k) is not None else np.nan for k in CLINICAL_VARIABLES], np.float32)
    present = ~np.isnan(v)
    return np.where(present, (v - CLIN_MEAN) / CLIN_SCALE, 0).astype(np.float32), present.astype(np.float32)
