"""Lateral radiograph (DICOM) -> model input, and model coordinates -> original pixels.

Intensity: modality LUT, VOI LUT or window (VOI LUT Sequence / WindowCenter+WindowWidth) when present,
MONOCHROME1 inverted so that bone is bright, then a robust percentile stretch to [0, 1].
Geometry: every model input is an affine resampling of the original image described by an explicit
:class:`AffineTransform` (model pixel ``(x, y)`` -> original pixel ``(x, y)``; x right, y down, 0 = centre of
the first pixel). ``letterbox`` keeps the aspect ratio and pads; ``box`` crops a square around a region.
``view_of`` reads the radiograph's position (neutral / flexion / extension) from DICOM attributes.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from pipelines.results import View


@dataclass(frozen=True)
class AffineTransform:
    """``original = matrix @ [x_model, y_model, 1]``; ``size`` is the model input (rows, cols)."""

    matrix: np.ndarray
    size: tuple[int, int]

    @classmethod
    def letterbox(cls, rows: int, cols: int, size: int | tuple[int, int]) -> AffineTransform:
        """Fit the whole ``rows x cols`` image into ``size`` keeping the aspect ratio, centred (padding around)."""
        out_r, out_c = (size, size) if isinstance(size, int) else size
        s = max(rows / out_r, cols / out_c)  # original pixels per model pixel
        # centre of the model grid maps to the centre of the original image
        tx = (cols - 1) / 2 - s * (out_c - 1) / 2
        ty = (rows - 1) / 2 - s * (out_r - 1) / 2
        return cls(np.array([[s, 0.0, tx], [0.0, s, ty]]), (out_r, out_c))

    @classmethod
    def box(cls, cx: float, cy: float, side: float, size: int, angle_deg: float = 0.0) -> AffineTransform:
        """A square of ``side`` original pixels centred on ``(cx, cy)``, rotated by ``angle_deg``, onto ``size x size``."""
        s = side / size
        a = np.deg2rad(angle_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
        c = (size - 1) / 2
        t = np.array([cx, cy]) - rot @ np.array([c, c])
        return cls(np.column_stack([rot, t]), (size, size))

    @property
    def scale(self) -> float:
        """Original pixels per model pixel (geometric mean of both axes)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Model ``(..., 2)`` ``(x, y)`` -> original pixels."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """Original ``(..., 2)`` ``(x, y)`` -> model pixels."""
        p = np.asarray(points, dtype=np.float64)
        return (p - self.matrix[:, 2]) @ np.linalg.inv(self.matrix[:, :2]).T

    def sigma_to_original(self, sigma: np.ndarray) -> np.ndarray:
        """A spread in model pixels -> original pixels (isotropic scale)."""
        return np.asarray(sigma) * self.scale


_BLOCK_MEANS: dict[tuple[int, int], tuple[weakref.ref, np.ndarray]] = {}
_BLOCK_MEANS_KEPT = 8


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """``img`` (rows, cols) float32 averaged over ``f`` x ``f`` blocks (the last partial rows/columns dropped).

    The same image is reduced by the same factor several times per study (the keypoint model's test-time
    variants, the seed classifiers' crops): the last few results are kept by the identity of the array (a weak
    reference: a new array is never taken for a dead one) and returned as they are. Images are not changed in
    place once analysed."""
    key = (id(img), f)
    kept = _BLOCK_MEANS.get(key)
    if kept is not None and kept[0]() is img:
        return kept[1]
    r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    # Two float32 sums (rows of each block, then its columns) instead of one mean over two strided axes: the same
    # values to float32 rounding, 1.6-3.6x faster on a 2800 x 2300 radiograph.
    out = img[:r, :c].reshape(r // f, f, c // f, f).sum(axis=1, dtype=np.float32).sum(axis=2, dtype=np.float32)
    out *= np.float32(1.0 / (f * f))
    out.flags.writeable = False
    _BLOCK_MEANS[key] = (weakref.ref(img), out)
    while len(_BLOCK_MEANS) > _BLOCK_MEANS_KEPT:
        _BLOCK_MEANS.pop(next(iter(_BLOCK_MEANS)), None)
    return out


def warp(image: np.ndarray, transform: AffineTransform, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Resample ``image`` (rows, cols) onto the model grid of ``transform`` (float32).

    When the transform shrinks by 2x or more, the image is first block-averaged by the integer factor so that
    the bilinear resampling does not alias.
    """
    img = np.asarray(image, dtype=np.float32)
    m = transform.matrix.astype(np.float64)
    f = int(np.floor(transform.scale))
    if f >= 2:
        img = block_mean(img, f)
        # original = f * reduced + (f - 1) / 2  =>  reduced = (original - (f - 1) / 2) / f
        m = np.vstack([m, [0, 0, 1]])
        m = (np.array([[1 / f, 0, -(f - 1) / 2 / f], [0, 1 / f, -(f - 1) / 2 / f], [0, 0, 1]]) @ m)[:2]
    # scipy works in (row, col): input_rc = M_rc @ output_rc + offset_rc
    m_rc = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])
    off_rc = np.array([m[1, 2], m[0, 2]])
    return ndimage.affine_transform(img, m_rc, offset=off_rc, output_shape=transform.size, order=order, cval=cval, mode="constant").astype(np.float32)


def to_unit_range(pixels: np.ndarray, *, monochrome1: bool, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """Display values -> float32 in [0, 1] with bone bright: invert MONOCHROME1, robust percentile stretch.

    In float32 throughout, one output array written in place (a 2800 x 2300 radiograph: ~25 ms instead of ~95 ms
    through float64 temporaries)."""
    x = np.asarray(pixels, dtype=np.float32)
    sample = x[:: max(1, x.shape[0] // 256), :: max(1, x.shape[1] // 256)]
    lo, hi = (float(v) for v in np.percentile(-sample if monochrome1 else sample, [low_pct, high_pct]))
    if hi <= lo:
        hi = lo + 1.0
    out = np.subtract(-lo, x, dtype=np.float32) if monochrome1 else np.subtract(x, lo, dtype=np.float32)
    out /= np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _display_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """pydicom's modality LUT, then VOI LUT / window (the first), of ``arr`` (any shape, value by value)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds, index=0)
    return arr


def display_pixels(ds: Dataset) -> np.ndarray:
    """Pixel values after the modality LUT and the VOI LUT / window of ``ds`` (first frame; no inversion).

    Both are functions of the stored value alone, so on an integer image they are computed once per value in
    its range (a lookup table, the same numbers as pydicom computes per pixel) and looked up: pydicom's
    windowing of a whole 2000 x 1500 radiograph in float64 with boolean masks costs ~0.1 s."""
    if "PixelData" not in ds:
        raise ValueError("the DICOM instance has no pixel data")
    arr = ds.pixel_array
    if arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected a single-frame greyscale image, got pixel array shape {arr.shape}")
    if arr.dtype.kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < min(arr.size, 1 << 20):
            lut = np.asarray(_display_values(np.arange(lo, hi + 1, dtype=arr.dtype), ds), dtype=np.float32)
            return lut[arr - lo if arr.dtype.kind == "u" else arr.astype(np.int64) - lo]
    return np.asarray(_display_values(arr, ds), dtype=np.float32)


MIN_IMAGE_SIZE = 32
"""Smallest rows and columns (pixels) of a radiograph that is analysed. Smaller images (1x1, 1xN, icons,
thumbnails) hold nothing measurable; ``image_from_dataset`` refuses them, so the pipeline reports them as
"not analysed" and analyses the other images of the study."""


def _check_size(rows: int, cols: int) -> None:
    if rows < MIN_IMAGE_SIZE or cols < MIN_IMAGE_SIZE:
        raise ValueError(f"image too small to analyse ({rows}x{cols} pixels, need at least "
                         f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE})")


def image_from_dataset(ds: Dataset) -> np.ndarray:
    """A DICOM radiograph -> float32 (rows, cols) in [0, 1], bone bright. Raises ``ValueError`` for images the
    pipeline cannot analyse (not greyscale, no pixel data, smaller than ``MIN_IMAGE_SIZE`` either way)."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"unsupported PhotometricInterpretation {photometric!r} (need MONOCHROME1/2)")
    _check_size(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))  # before decoding anything
    pixels = display_pixels(ds)
    _check_size(*pixels.shape)  # the decoded array, whatever the header said
    return to_unit_range(pixels, monochrome1=photometric == "MONOCHROME1")


def model_input(image: np.ndarray, transform: AffineTransform) -> np.ndarray:
    """A [0, 1] image -> the network input (rows, cols) float32 in [-1, 1] (padding at -1)."""
    return warp(image, transform, cval=0.0) * 2.0 - 1.0


_VIEW_WORDS: tuple[tuple[View, re.Pattern[str]], ...] = (
    (View.FLEXION, re.compile(r"\bflex(ion|ed)?\b|\bflx\b", re.I)),
    (View.EXTENSION, re.compile(r"\bext(ension|ended)?\b|\bextn\b", re.I)),
    (View.NEUTRAL, re.compile(r"\bneutral\b|\bneut\b|\bneu\b", re.I)),
)
_VIEW_CODES: dict[str, View] = {"9964006": View.FLEXION, "24154002": View.EXTENSION}
"""SNOMED CT view modifiers (CID 4010/4011): flexion, extension."""
_VIEW_TEXT_ATTRIBUTES = (
    "ViewName",
    "AcquisitionDeviceProcessingDescription",
    "SeriesDescription",
    "ImageComments",
    "ProtocolName",
    "PerformedProcedureStepDescription",
)


def view_from_text(text: str) -> View | None:
    """The single view named in ``text`` (flexion/extension/neutral and common abbreviations), else None."""
    found = {v for v, pat in _VIEW_WORDS if pat.search(text or "")}
    return found.pop() if len(found) == 1 else None


def view_of(ds: Dataset) -> View | None:
    """The position of a lateral cervical radiograph from its DICOM attributes, or None if none names one.

    Looks at ViewCodeSequence / ViewModifierCodeSequence code meanings first, then free-text attributes
    (AcquisitionDeviceProcessingDescription, SeriesDescription, ImageComments, ProtocolName, ...).
    """
    texts: list[str] = []
    codes: list[Dataset] = []
    for item in ds.get("ViewCodeSequence", []) or []:
        codes.append(item)
        codes.extend(item.get("ViewModifierCodeSequence", []) or [])
    codes.extend(ds.get("ViewModifierCodeSequence", []) or [])
    for code in codes:
        value = str(code.get("CodeValue", ""))
        if value in _VIEW_CODES:
            return _VIEW_CODES[value]
        texts.append(str(code.get("CodeMeaning", "")))
    for t in texts:
        v = view_from_text(t)
        if v is not None:
            return v
    for name in _VIEW_TEXT_ATTRIBUTES:
        v = view_from_text(str(ds.get(name, "") or ""))
        if v is not None:
            return v
    return None
