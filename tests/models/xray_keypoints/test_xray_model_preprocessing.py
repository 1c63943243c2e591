"""DICOM -> model input: MONOCHROME1, windowing, letterbox/box transforms mapping back to original pixels, view."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipelines.results import View
from pipelines.xray.preprocessing import AffineTransform, image_from_dataset, view_from_text, view_of, warp


def _dx(pixels: np.ndarray, photometric: str, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _bright_square(rows: int = 40, cols: int = 60) -> np.ndarray:
    img = np.full((rows, cols), 500, np.uint16)
    img[10:20, 30:45] = 3000
    return img


def test_monochrome1_is_inverted_so_bone_is_bright() -> None:
    m2 = image_from_dataset(_dx(_bright_square(), "MONOCHROME2"))
    m1 = image_from_dataset(_dx(4095 - _bright_square(), "MONOCHROME1"))
    assert m2[15, 35] > 0.9 and m2[0, 0] < 0.1
    assert np.allclose(m1, m2, atol=1e-6)


def test_window_tags_are_applied_before_normalisation() -> None:
    px = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (32, 1))
    ds = _dx(px, "MONOCHROME2", WindowCenter=2000, WindowWidth=400)
    out = image_from_dataset(ds)
    # outside the window everything is clipped flat; inside, a ramp
    assert np.ptp(out[:, :20]) == 0 and np.ptp(out[:, -20:]) == 0
    assert out[0, 32] > out[0, 0] and out[0, -1] > out[0, 32]


def test_letterbox_keeps_aspect_and_maps_back() -> None:
    t = AffineTransform.letterbox(400, 200, 100)  # tall image: 4 px per model px, padded left/right
    assert t.scale == pytest.approx(4.0)
    pts = np.array([[0.0, 0.0], [199.0, 399.0], [57.3, 211.9]])
    assert np.allclose(t.to_original(t.to_model(pts)), pts)
    corners = t.to_model(np.array([[0.0, 0.0], [199.0, 399.0]]))
    assert corners[0, 1] == pytest.approx(-0.375) and corners[1, 1] == pytest.approx(99.375)
    assert corners[0, 0] > 20 and corners[1, 0] < 80  # centred horizontally


@pytest.mark.parametrize("make", [
    lambda: AffineTransform.letterbox(300, 500, 128),
    lambda: AffineTransform.box(260.0, 140.0, 120.0, 64),
    lambda: AffineTransform.box(200.0, 150.0, 180.0, 96, angle_deg=17.0),
])
def test_a_dot_lands_where_the_transform_says(make) -> None:
    """Warp an image with one bright blob and find it at ``to_model`` of its original position."""
    t = make()
    yy, xx = np.mgrid[0:300, 0:500]
    x0, y0 = 237.4, 151.8
    img = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * (3 * t.scale) ** 2))
    out = warp(img, t)
    expected = t.to_model(np.array([x0, y0]))
    oy, ox = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    w = out / out.sum()
    found = np.array([(w * ox).sum(), (w * oy).sum()])
    assert np.allclose(found, expected, atol=0.15)
    assert np.allclose(t.to_original(found), [x0, y0], atol=0.15 * t.scale)


def test_view_from_attributes() -> None:
    assert view_of(_dx(_bright_square(), "MONOCHROME2", SeriesDescription="C-spine LAT FLEXION")) is View.FLEXION
    assert view_of(_dx(_bright_square(), "MONOCHROME2", ImageComments="lateral, extension")) is View.EXTENSION
    assert view_of(_dx(_bright_square(), "MONOCHROME2", AcquisitionDeviceProcessingDescription="NEUTRAL")) is View.NEUTRAL
    assert view_of(_dx(_bright_square(), "MONOCHROME2", SeriesDescription="C-spine lateral")) is None
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "X", "99TEST", "flexion"
    view = Dataset()
    view.CodeValue, view.CodingSchemeDesignator, view.CodeMeaning = "R-10236", "SRT", "lateral"
    view.ViewModifierCodeSequence = [code]
    assert view_of(_dx(_bright_square(), "MONOCHROME2", ViewCodeSequence=[view])) is View.FLEXION
    assert view_from_text("flexion and extension") is None
