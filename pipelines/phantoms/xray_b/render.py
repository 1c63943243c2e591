"""Renderer B's image formation: line integrals -> photons -> scatter -> detector -> processing -> stored values.

Independent of renderer A. Per view:

1. **Geometry.** Anatomical mm -> image pixels by one affine map (facing, a small in-plane rotation, the patient-plane
   pixel spacing ``imager spacing / magnification``, the field centred on the detector). Structures are drawn on a
   working grid of about 0.25 mm whose pixel edges coincide with the output's (``scipy.ndimage.zoom`` with
   ``grid_mode=True``), so the keypoints are exact in output pixels.
2. **Line integrals.** Soft tissue: the neck's transverse width (smooth profile from the skin line) minus the
   airway, plus the shoulders; bone: per structure its transverse path (a rounded profile from the outline) times
   its attenuation, a cortical shell term that brightens every edge (tangential path through the cortex), and an
   anisotropic trabecular texture (vertical trabeculae).
3. **Exposure.** Photon counts ``N0 exp(-integral)`` with ``N0`` from the dose (per pixel area), a collimated field
   (lead shutters pass 2 %), scatter as a wide blur of the primary times a scatter-to-primary ratio, detector blur,
   Poisson noise.
4. **Processing (for presentation).** Log, dynamic-range compression (minus a 20 mm blur), edge enhancement, a
   sigmoid VOI over the field's range, then bits and photometric (MONOCHROME1 stored inverted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as MplPath
from scipy import ndimage

from pipelines.phantoms.xray_b.anatomy import ChainB, SpineB
from pipelines.phantoms.xray_b.structures import (
    airway,
    body_outline,
    bony_parts,
    dens,
    neck_outline,
    shoulders,
)

WORK_MM = 0.25
"""Working grid pixel size at the patient plane (mm) when the output is finer."""


@dataclass(frozen=True)
class Acquisition:
    """The detector, exposure and processing of one view of renderer B."""

    imager_spacing_mm: float
    magnification: float
    rotation_deg: float
    facing: int
    """+1: anterior at image right."""
    field: str
    """``tight`` (C1-T1, no skull) or ``wide`` (skull base to the shoulders)."""
    field_mm: tuple[float, float, float, float]
    """Exposed field in anatomical mm: a_min, a_max, c_min, c_max."""
    border: tuple[float, float, float, float]
    """Unexposed detector border outside the field, mm: posterior, anterior, bottom, top."""
    dose: float
    """Photons per mm^2 reaching the detector without attenuation."""
    scatter: float
    detector_blur_mm: float
    compression: float
    edge: float
    shoulder_level: float | None
    """Shoulder top in bodies above the C7 centre (None: no shoulder shadow)."""
    photometric: str
    bits_stored: int

    @property
    def spacing_mm(self) -> float:
        return self.imager_spacing_mm / self.magnification


@dataclass(frozen=True)
class Mapping:
    """Anatomical mm -> output pixels (x, y) and -> working pixels."""

    m: np.ndarray
    t: np.ndarray
    shape: tuple[int, int]
    work_shape: tuple[int, int]

    def px(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=float) @ self.m.T + self.t

    def work(self, q: np.ndarray) -> np.ndarray:
        px = self.px(q)
        k = np.array([self.work_shape[1] / self.shape[1], self.work_shape[0] / self.shape[0]])
        return (px + 0.5) * k - 0.5

    @property
    def mm_work(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.m)))) ** -1 * self.shape[1] / self.work_shape[1]


def mapping(acq: Acquisition) -> Mapping:
    a0, a1, c0, c1 = acq.field_mm
    bp, ba, bb, bt = acq.border
    sp = acq.spacing_mm
    r = math.radians(acq.rotation_deg)
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    m = np.diag([float(acq.facing), -1.0]) @ rot / sp
    # the detector: the field plus its borders, in the rotated frame
    lo = np.array([a0 - bp, c0 - bb]) if acq.facing > 0 else np.array([a0 - ba, c0 - bb])
    hi = np.array([a1 + ba, c1 + bt]) if acq.facing > 0 else np.array([a1 + bp, c1 + bt])
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]]) @ m.T
    size = corners.max(axis=0) - corners.min(axis=0)
    cols, rows = (int(math.ceil(v)) for v in size)
    t = -corners.min(axis=0) - 0.5
    k = min(1.0, sp / WORK_MM)
    work = (max(int(round(rows * k)), 16), max(int(round(cols * k)), 16))
    return Mapping(m, t, (rows, cols), work)


def _raster(poly_w: np.ndarray, shape: tuple[int, int], pad: int = 3
            ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Coverage (2x2 supersampled) of a polygon in working pixels, on its bounding box: (slices, float array)."""
    x0, y0 = np.floor(poly_w.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(poly_w.max(axis=0)).astype(int) + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1] - 1), min(y1, shape[0] - 1)
    if x1 <= x0 or y1 <= y0:
        return None
    yy, xx = np.mgrid[y0:y1 + 1:0.5, x0:x1 + 1:0.5]
    inside = MplPath(poly_w).contains_points(np.column_stack([(xx - 0.25).ravel(), (yy - 0.25).ravel()]))
    cov = inside.reshape(yy.shape).astype(np.float32)
    cov = cov.reshape(cov.shape[0] // 2, 2, cov.shape[1] // 2, 2).mean(axis=(1, 3))
    return (slice(y0, y0 + cov.shape[0]), slice(x0, x0 + cov.shape[1])), cov


def _depth_mm(cov: np.ndarray, mm: float) -> np.ndarray:
    """Distance (mm) from the outline inwards (0 outside)."""
    return ndimage.distance_transform_edt(np.pad(cov > 0.5, 1))[1:-1, 1:-1].astype(np.float32) * np.float32(mm)


def line_integrals(s: SpineB, ch: ChainB, acq: Acquisition, mp: Mapping, rng: np.random.Generator) -> np.ndarray:
    """The attenuation line integral on the working grid (dimensionless)."""
    shape, mm = mp.work_shape, mp.mm_work
    soft = np.zeros(shape, np.float32)
    hit = _raster(mp.work(neck_outline(ch, s, rng)), shape)
    if hit is not None:
        sl, cov = hit
        soft[sl] += s.neck_width_mm * np.sqrt(np.clip(_depth_mm(cov, mm) / 18.0, 0, 1)) * cov
    hit = _raster(mp.work(airway(ch, rng)), shape)
    if hit is not None:
        sl, cov = hit
        soft[sl] -= rng.uniform(14.0, 24.0) * np.sqrt(np.clip(_depth_mm(cov, mm) / 3.0, 0, 1)) * cov
    if acq.shoulder_level is not None:
        hit = _raster(mp.work(shoulders(ch, acq.shoulder_level, rng)), shape)
        if hit is not None:
            sl, cov = hit
            soft[sl] += rng.uniform(120.0, 240.0) * np.clip(_depth_mm(cov, mm) / 25.0, 0, 1) * cov
    total = np.maximum(soft, 0) * np.float32(0.021)
    # trabecular texture: vertical trabeculae (anisotropic), multiplicative
    tex = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.8 / mm, 0.3 / mm))
    tex *= np.float32(0.22 / max(float(tex.std()), 1e-6))
    for part in bony_parts(ch, s, wide=acq.field == "wide"):
        hit = _raster(mp.work(part.outline), shape)
        if hit is None:
            continue
        sl, cov = hit
        d = _depth_mm(cov, mm)
        path = part.width * np.sqrt(np.clip(d / 2.5, 0, 1)) * cov
        shell = part.cortex * np.exp(-d / 0.7) * cov
        total[sl] += part.mu * path * (1.0 + tex[sl]) + shell
    return total


def _smooth(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide ones on a block-averaged copy (same result for the low frequencies, much faster)."""
    if sigma_px <= 3.0:
        return ndimage.gaussian_filter(img, sigma_px, mode="nearest")
    f = int(sigma_px // 1.5)
    rows, cols = img.shape
    pr, pc = (-rows) % f, (-cols) % f
    small = np.pad(img, ((0, pr), (0, pc)), mode="edge").reshape((rows + pr) // f, f, (cols + pc) // f, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    up = ndimage.zoom(small, f, order=1, grid_mode=True, mode="nearest")
    return up[:rows, :cols]


def expose(integral: np.ndarray, acq: Acquisition, mp: Mapping, rng: np.random.Generator) -> np.ndarray:
    """Working-grid line integrals -> stored pixel values (uint16, output shape)."""
    rows, cols = mp.shape
    sp = acq.spacing_mm
    att = ndimage.zoom(integral, (rows / integral.shape[0], cols / integral.shape[1]), order=1, grid_mode=True,
                       mode="nearest") if integral.shape != (rows, cols) else integral
    att = att[:rows, :cols]
    n0 = acq.dose * (acq.imager_spacing_mm ** 2)
    primary = np.exp(-att, dtype=np.float32)
    field = _field_mask(acq, mp)
    primary *= np.float32(0.02) + np.float32(0.98) * field
    signal = primary + np.float32(acq.scatter) * _smooth(primary, 25.0 / sp)
    signal = ndimage.gaussian_filter(signal, acq.detector_blur_mm / acq.imager_spacing_mm)
    counts = rng.poisson(np.maximum(signal * n0, 0.0)).astype(np.float32)
    log = -np.log(np.maximum(counts, 0.5) / np.float32(n0))
    # processing: dynamic range compression and edge enhancement, statistics from the exposed field
    out = log - np.float32(acq.compression) * _smooth(log, 20.0 / sp) + np.float32(acq.edge) * (log - _smooth(log, 1.2 / sp))
    inside = out[field > 0.5]
    lo, hi = np.percentile(inside[:: max(1, inside.size // 200_000)], [0.5, 99.8]) if inside.size else (0.0, 1.0)
    centre, width = 0.5 * (lo + hi), max(hi - lo, 1e-3)
    img = 1.0 / (1.0 + np.exp(-(out - centre) / (0.33 * width)))
    img = np.where(field > 0.5, img, np.maximum(img, np.float32(0.93)))
    maxval = (1 << acq.bits_stored) - 1
    img = np.clip(img, 0.0, 1.0)
    if acq.photometric == "MONOCHROME1":
        img = 1.0 - img
    return np.rint(img * maxval).astype(np.uint16)


def _field_mask(acq: Acquisition, mp: Mapping) -> np.ndarray:
    """1 inside the collimated field, 0 outside, a 1 mm penumbra (output pixels)."""
    a0, a1, c0, c1 = acq.field_mm
    poly = mp.px(np.array([[a0, c0], [a1, c0], [a1, c1], [a0, c1]]))
    rows, cols = mp.shape
    k = 4
    small = (max(-(-rows // k), 2), max(-(-cols // k), 2))
    hit = _raster((poly + 0.5) / k - 0.5, small, pad=0)
    mask = np.zeros(small, np.float32)
    if hit is not None:
        sl, cov = hit
        mask[sl] = cov
    mask = ndimage.gaussian_filter(mask, 1.0 / (acq.spacing_mm * k))
    return ndimage.zoom(mask, k, order=1, grid_mode=True, mode="nearest")[:rows, :cols]


def body_polygons(ch: ChainB, s: SpineB, mp: Mapping) -> dict[str, np.ndarray]:
    """"C2".."C7" -> (K, 2) px outline of each body (C2 with the dens)."""
    out = {}
    for i, name in enumerate(("C2", "C3", "C4", "C5", "C6", "C7")):
        poly = body_outline(ch, i)
        if i == 0:  # splice the dens between PS and AS
            poly = np.concatenate([poly[:-5], dens(ch, s), poly[-1:]])  # ... PS, the dens, the endplate to AS
        out[name] = mp.px(poly)
    return out
