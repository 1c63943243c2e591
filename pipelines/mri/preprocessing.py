"""Sagittal MR series -> normalised volume, slice choice, localiser input and per-level crops.

Shared by training (``models.mri``) and inference (``MriPipeline``) so that both see the same inputs.

Conventions: the volume is ``(slices, rows, columns)`` in *canonical* orientation - image x towards
posterior (anterior on the left), image y towards inferior - with slices ordered from the patient's
right to left. ``SeriesVolume.to_stored`` maps canonical pixel coordinates back to the stored image.
Crops are sampled in a frame that follows the spine: ``a`` (mm) along the disc plane towards posterior,
``b`` (mm) along the spine towards inferior, centred on the disc centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.study import Instance
from pipelines.vocabulary import FORAMEN_LATERAL_MM

LOCALISER_SIZE = 128
"""Side (pixels) of the square localiser input."""
LOCALISER_MM_PER_PX = 1.875
"""Localiser pixel size (mm): a fixed physical scale, so the window covers 240 mm whatever the field of view."""
CROP_A_MM = (-14.0, 34.0)
"""Crop extent across the disc (mm, anterior negative): disc, canal and posterior elements."""
CROP_B_MM = (-12.0, 12.0)
"""Crop extent along the spine (mm, superior negative)."""
CROP_PX_MM = 0.75
CROP_SHAPE = (int(round((CROP_B_MM[1] - CROP_B_MM[0]) / CROP_PX_MM)), int(round((CROP_A_MM[1] - CROP_A_MM[0]) / CROP_PX_MM)))
"""(rows along b, columns along a) = (32, 64)."""


@dataclass
class SeriesVolume:
    """One sagittal series read into memory, canonical orientation, intensities scaled to about 0..1."""

    volume: np.ndarray
    """float32 (slices, rows, columns), canonical orientation."""
    pixel_spacing_mm: tuple[float, float]
    """(row, column) spacing in mm."""
    lateral_mm: tuple[float, ...]
    """Lateral position of each slice (mm, + patient left), relative to the middle of the stack."""
    sop_uids: tuple[str, ...]
    series_uid: str
    flip_x: bool
    """True when the stored image has anterior on the right (so canonical x = columns - 1 - stored x)."""
    flip_y: bool
    """True when the stored image has superior at the bottom."""
    description: str = ""

    @property
    def rows(self) -> int:
        return int(self.volume.shape[1])

    @property
    def columns(self) -> int:
        return int(self.volume.shape[2])

    @property
    def mid_slice(self) -> int:
        """The slice nearest the middle of the stack (taken as the mid-sagittal slice)."""
        return int(np.argmin(np.abs(np.asarray(self.lateral_mm))))

    def lateral_slice(self, side: str) -> int:
        """Index of the slice nearest ``FORAMEN_LATERAL_MM`` to the patient's ``"left"`` or ``"right"``."""
        target = FORAMEN_LATERAL_MM if side == "left" else -FORAMEN_LATERAL_MM
        lat = np.asarray(self.lateral_mm) - self.lateral_mm[self.mid_slice]
        return int(np.argmin(np.abs(lat - target)))

    def to_stored(self, x: float, y: float) -> tuple[float, float]:
        """Canonical pixel (x, y) -> stored image pixel (x, y)."""
        return (self.columns - 1 - x if self.flip_x else x, self.rows - 1 - y if self.flip_y else y)

    def stored_array(self, mask: np.ndarray) -> np.ndarray:
        """A canonical (rows, columns) array in stored orientation."""
        out = mask[:, ::-1] if self.flip_x else mask
        return out[::-1] if self.flip_y else out


def series_weighting(desc: str, tr: float | None = None, te: float | None = None) -> str:
    """``"T2"``, ``"T1"``, ``"STIR"`` or ``""`` from the series description (and TR/TE when present)."""
    d = desc.upper()
    if "STIR" in d or "TIRM" in d:
        return "STIR"
    if "T2" in d:
        return "T2"
    if "T1" in d:
        return "T1"
    if tr is not None and te is not None:
        return "T2" if te >= 60 else ("T1" if tr < 1000 else "")
    return ""


def choose_series(instances: Sequence[Instance]) -> tuple[tuple[Instance, ...], list[str]]:
    """Pick the sagittal series to analyse: a T2 series if there is one, else the largest one.

    Returns the instances of that series and warnings for the reader.
    """
    by_series: dict[str, list[Instance]] = {}
    for inst in instances:
        by_series.setdefault(inst.series_uid, []).append(inst)
    if not by_series:
        raise ValueError("no MR instances")
    ranked = sorted(by_series.values(),
                    key=lambda s: (series_weighting(s[0].series_description) == "T2", len(s)), reverse=True)
    chosen = ranked[0]
    warnings = []
    if series_weighting(chosen[0].series_description) != "T2":
        warnings.append(f"no series described as T2; analysed {chosen[0].series_description or 'an unnamed series'} "
                        "(models were trained on T2-weighted phantoms)")
    if len(chosen) < 7:
        warnings.append(f"only {len(chosen)} sagittal slices: foraminal assessment may miss the foramina")
    return tuple(chosen), warnings


def load_series(instances: Sequence[Instance]) -> SeriesVolume:
    """Read the slices of one sagittal series (single-frame images) into a canonical ``SeriesVolume``."""
    dss = [inst.read() for inst in instances]
    dss = [d for d in dss if "PixelData" in d]
    if not dss:
        raise ValueError("series has no pixel data")
    shapes = {(int(d.Rows), int(d.Columns)) for d in dss}
    if len(shapes) != 1:
        raise ValueError(f"slices of different sizes {sorted(shapes)}")
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    # lateral coordinate towards the patient's left (+x in LPS)
    lat = pos @ normal * np.sign(normal[0] if abs(normal[0]) > 1e-6 else 1.0)
    order = np.argsort(lat)
    dss = [dss[i] for i in order]
    lat = lat[order]
    lat = lat - 0.5 * (lat[0] + lat[-1])
    vol = np.stack([_pixels(d) for d in dss]).astype(np.float32)
    flip_x = bool(row_dir[1] < 0)  # row direction pointing anterior -> anterior on the right
    flip_y = bool(col_dir[2] > 0)  # column direction pointing superior -> head at the bottom
    if flip_x:
        vol = vol[:, :, ::-1]
    if flip_y:
        vol = vol[:, ::-1, :]
    ps = tuple(float(v) for v in dss[0].PixelSpacing)
    vol = normalise(np.ascontiguousarray(vol))
    return SeriesVolume(vol, (ps[0], ps[1]), tuple(float(v) for v in lat), tuple(str(d.SOPInstanceUID) for d in dss),
                        str(dss[0].SeriesInstanceUID), flip_x, flip_y, str(dss[0].get("SeriesDescription", "")))


def _pixels(ds) -> np.ndarray:
    arr = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return arr * slope + intercept


def normalise(volume: np.ndarray) -> np.ndarray:
    """Scale intensities so that the 99.5th percentile of the middle slice is 1 (clipped to 0..1.5)."""
    mid = volume[volume.shape[0] // 2]
    hi = float(np.percentile(mid, 99.5)) or 1.0
    return np.clip(volume / hi, 0, 1.5).astype(np.float32)


@dataclass(frozen=True)
class LocaliserGrid:
    """The localiser's fixed-scale window on one slice: ``LOCALISER_SIZE`` pixels of ``LOCALISER_MM_PER_PX``
    mm, centred on the image centre (smaller fields of view are padded with 0, larger ones cropped).

    Localiser pixel (j, i) centre <-> original pixel ``(cx + (j - c0) * fx, cy + (i - c0) * fy)`` with
    ``c0 = (LOCALISER_SIZE - 1) / 2``; for a 240 mm, 256-pixel image this is ``(2 j + 0.5, 2 i + 0.5)``.
    """

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def for_image(cls, rows: int, columns: int, pixel_spacing_mm: tuple[float, float]) -> LocaliserGrid:
        return cls(LOCALISER_MM_PER_PX / pixel_spacing_mm[1], LOCALISER_MM_PER_PX / pixel_spacing_mm[0],
                   (columns - 1) / 2, (rows - 1) / 2)

    def to_localiser(self, x: float, y: float) -> tuple[float, float]:
        c0 = (LOCALISER_SIZE - 1) / 2
        return (c0 + (x - self.cx) / self.fx, c0 + (y - self.cy) / self.fy)

    def from_localiser(self, x: float, y: float) -> tuple[float, float]:
        c0 = (LOCALISER_SIZE - 1) / 2
        return (self.cx + (x - c0) * self.fx, self.cy + (y - c0) * self.fy)

    def sample_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) original-pixel coordinate arrays (y, x) of every localiser pixel."""
        c0 = (LOCALISER_SIZE - 1) / 2
        g = np.arange(LOCALISER_SIZE) - c0
        return np.meshgrid(self.cy + g * self.fy, self.cx + g * self.fx, indexing="ij")


def localiser_input(image: np.ndarray, pixel_spacing_mm: tuple[float, float],
                    grid: LocaliserGrid | None = None) -> np.ndarray:
    """(rows, columns) canonical slice -> (LOCALISER_SIZE, LOCALISER_SIZE) float32 on ``grid`` (default
    ``LocaliserGrid.for_image``, the window centred on the image)."""
    grid = grid or LocaliserGrid.for_image(*image.shape, pixel_spacing_mm)
    f = min(grid.fx, grid.fy)
    sm = ndimage.gaussian_filter(image, (0.5 * grid.fy, 0.5 * grid.fx)) if f > 1.2 else image
    yy, xx = grid.sample_points()
    return ndimage.map_coordinates(sm, [yy, xx], order=1, mode="constant", cval=0.0).astype(np.float32)


def disc_tangents(centres: np.ndarray) -> np.ndarray:
    """Unit vectors along the spine (pointing inferior) at each disc centre, from its neighbours; (n, 2)."""
    c = np.asarray(centres, float)
    t = np.zeros_like(c)
    for j in range(len(c)):
        lo, hi = max(j - 1, 0), min(j + 1, len(c) - 1)
        d = c[hi] - c[lo]
        n = np.hypot(*d)
        t[j] = d / n if n > 1e-6 else (0.0, 1.0)
    t[t[:, 1] < 0] *= -1
    return t


def level_crop(volume: np.ndarray, slices: Sequence[int], centre_px: tuple[float, float],
               tangent: tuple[float, float], pixel_spacing_mm: tuple[float, float]) -> np.ndarray:
    """Sample a spine-aligned crop around a disc centre from the given slices -> (len(slices), *CROP_SHAPE).

    ``centre_px`` is (x, y) canonical pixels; ``tangent`` the unit vector along the spine (inferior).
    Slice indices outside the stack are clamped.
    """
    tx, ty = tangent
    nx, ny = ty, -tx  # posterior direction
    b = CROP_B_MM[0] + (np.arange(CROP_SHAPE[0]) + 0.5) * CROP_PX_MM
    a = CROP_A_MM[0] + (np.arange(CROP_SHAPE[1]) + 0.5) * CROP_PX_MM
    bb, aa = np.meshgrid(b, a, indexing="ij")
    x = centre_px[0] + (aa * nx + bb * tx) / pixel_spacing_mm[1]
    y = centre_px[1] + (aa * ny + bb * ty) / pixel_spacing_mm[0]
    n = volume.shape[0]
    out = np.empty((len(slices), *CROP_SHAPE), np.float32)
    for i, k in enumerate(slices):
        out[i] = ndimage.map_coordinates(volume[int(np.clip(k, 0, n - 1))], [y, x], order=1, mode="constant", cval=0.0)
    return out


def level_crops(sv_volume: np.ndarray, mid: int, left: int, right: int, centres_px: np.ndarray,
                pixel_spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops for every level: mid-sagittal (mid-1, mid, mid+1), left and right foraminal triples.

    Foraminal triples are ordered medial, centre, lateral on both sides so one head serves both.

    Returns three arrays of shape (levels, 3, *CROP_SHAPE).
    """
    tang = disc_tangents(centres_px)
    mids, lefts, rights = [], [], []
    for c, t in zip(centres_px, tang, strict=True):
        mids.append(level_crop(sv_volume, (mid - 1, mid, mid + 1), c, t, pixel_spacing_mm))
        lefts.append(level_crop(sv_volume, (left - 1, left, left + 1), c, t, pixel_spacing_mm))
        rights.append(level_crop(sv_volume, (right + 1, right, right - 1), c, t, pixel_spacing_mm))
    return np.stack(mids), np.stack(lefts), np.stack(rights)
