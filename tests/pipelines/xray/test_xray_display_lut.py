"""``display_pixels`` looks the modality LUT and VOI LUT / window up per stored value: the same float32 numbers as
pydicom's per-pixel ``apply_modality_lut`` + ``apply_voi_lut``, for unsigned and signed images, rescale, every
VOI LUT function, several windows, a VOI LUT sequence, no window at all and a value range wider than the image."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from pipelines.xray.preprocessing import display_pixels


def _image(signed: bool, rows: int = 120, cols: int = 90, seed: int = 0, bits: int = 12, **attrs) -> Dataset:
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, int(signed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    ds.PixelData = rng.integers(lo, hi + 1, (rows, cols), dtype=np.int16 if signed else np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    return ds


def _pydicom(ds: Dataset) -> np.ndarray:
    arr = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds, index=0)
    return np.asarray(arr, dtype=np.float32)


def _voi_lut() -> Sequence:
    item = Dataset()
    item.LUTDescriptor = [256, 1000, 16]
    item.LUTData = list(range(0, 65536, 256))
    return Sequence([item])


CASES = {
    "unsigned window": (False, {"WindowCenter": 2000, "WindowWidth": 1500}),
    "unsigned rescale window": (False, {"RescaleSlope": 0.5, "RescaleIntercept": -100, "WindowCenter": 800,
                                        "WindowWidth": 600}),
    "signed rescale window": (True, {"RescaleSlope": 2, "RescaleIntercept": 1024, "WindowCenter": 40,
                                     "WindowWidth": 3000}),
    "several windows": (False, {"WindowCenter": [1500, 3000], "WindowWidth": [400, 900]}),
    "linear exact": (False, {"WindowCenter": 2047.5, "WindowWidth": 1001, "VOILUTFunction": "LINEAR_EXACT"}),
    "sigmoid": (True, {"WindowCenter": 0, "WindowWidth": 2500, "VOILUTFunction": "SIGMOID"}),
    "voi lut sequence": (False, {"VOILUTSequence": _voi_lut()}),
    "no window": (True, {"RescaleSlope": 1.5, "RescaleIntercept": -3}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_numbers_as_pydicom_per_pixel(name: str) -> None:
    signed, attrs = CASES[name]
    ds = _image(signed, **attrs)
    out = display_pixels(ds)
    assert out.dtype == np.float32
    assert np.array_equal(out, _pydicom(ds))


def test_range_wider_than_the_image_uses_pydicom_directly() -> None:
    ds = _image(False, rows=4, cols=40, bits=16, WindowCenter=30000, WindowWidth=20000)
    assert np.array_equal(display_pixels(ds), _pydicom(ds))


def test_unit_range_in_float32_matches_the_float64_stretch() -> None:
    """``to_unit_range`` computes in float32 in place: the same values as the plain float64 stretch (within float32
    rounding), bone bright for MONOCHROME1, a flat image all 0, the input untouched."""
    from pipelines.xray.preprocessing import to_unit_range

    x = (np.random.default_rng(3).random((700, 500)) * 4000).astype(np.float32)
    before = x.copy()
    for mono1 in (False, True):
        y = -x.astype(np.float64) if mono1 else x.astype(np.float64)
        sample = y[:: 700 // 256, :: 500 // 256]
        lo, hi = np.percentile(sample, [1.0, 99.5])
        want = np.clip((y - lo) / (hi - lo), 0, 1)
        got = to_unit_range(x, monochrome1=mono1)
        assert got.dtype == np.float32 and got.shape == x.shape
        assert np.abs(got - want).max() < 1e-6
    assert np.array_equal(x, before)
    assert to_unit_range(np.full((40, 40), 7.0, np.float32), monochrome1=False).max() == 0.0
