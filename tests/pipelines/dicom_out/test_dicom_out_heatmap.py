"""Explanation maps (Grad-CAM) -> a FRACTIONAL SEG on the radiograph (valid, RLE Lossless, reads back with
highdicom) and an overlay on the report page. highdicom's Parametric Map cannot be built on a DX source (see
``pipelines.dicom_out.heatmap``); the first test pins that, so the choice is revisited when highdicom changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from pipelines.dicom_out import encode
from pipelines.dicom_out._sources import load_sources
from pipelines.dicom_out.example import phantom_example
from pipelines.dicom_out.heatmap import combined_map
from pipelines.dicom_out.report import render
from pipelines.results import Finding, HeatMap, ImageResult, View


def _blob(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 5)) ** 2 + ((xx - w / 2) / (w / 5)) ** 2)).astype(np.float32)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory):
    study, result = phantom_example(7, tmp_path_factory.mktemp("hm"), shape=(512, 448))
    img = next(i for i in result.images if i.view == View.NEUTRAL)
    img.heatmaps = [
        HeatMap("C4-C5 cord compression Grad-CAM", img.image_uid, "C4-C5", _blob(40, 60), (220, 150),
                key="cord_compression", probability=0.9),
        HeatMap("C5-C6 cord compression Grad-CAM", img.image_uid, "C5-C6", _blob(40, 60), (262, 160),
                key="cord_compression", probability=0.2),
    ]
    result.findings += [Finding("cord_compression", "Spinal cord compression", "present", "C4-C5", probability=0.9),
                        Finding("cord_compression", "Spinal cord compression", "absent", "C5-C6", probability=0.2)]
    return study, result, img


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_parametric_map_refuses_a_radiograph_source(case) -> None:
    study, _, img = case
    src = next(i for i in study.instances if i.sop_instance_uid == img.image_uid).read()
    mapping = hd.pm.RealWorldValueMapping(lut_label="X", lut_explanation="x", unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
                                          value_range=(0, 10), slope=0.1, intercept=0.0)
    with pytest.raises(RuntimeError, match="dimension index"):
        hd.pm.ParametricMap([src], np.zeros((1, img.rows, img.columns), np.uint16), hd.UID(), 1, hd.UID(), 1, "m", "m", "1",
                            "1", False, [mapping], window_center=5, window_width=10, transfer_syntax_uid=RLELossless)


def test_fractional_seg_is_valid_and_reads_back(case, tmp_path: Path, dciodvfy) -> None:
    study, result, img = case
    objs = encode(study, result)
    frac = [o for o in objs if o.Modality == "SEG" and o.SegmentationType == "FRACTIONAL"]
    assert len(frac) == 1
    path = tmp_path / "gradcam.dcm"
    frac[0].save_as(path, enforce_file_format=True)
    errors, _ = dciodvfy(path)
    assert errors == []
    # RLE Lossless: zero outside the maps' crops, a fraction of the uncompressed 8-bit frames
    assert frac[0].file_meta.TransferSyntaxUID == RLELossless
    assert path.stat().st_size < 0.2 * len(img.heatmaps) * img.rows * img.columns
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(path))
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    assert [seg.get_segment_description(i).segment_label for i in (1, 2)] == [h.label for h in img.heatmaps]
    assert str(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID) == img.image_uid
    raw = pydicom.dcmread(path).pixel_array.astype(float) / 255.0  # (segments, rows, cols)
    for k, h in enumerate(img.heatmaps):
        expected = h.full(img.rows, img.columns) * h.probability
        assert np.abs(raw[k] - expected).max() <= 1 / 255 + 1e-6
        assert raw[k].max() == pytest.approx(h.probability, abs=0.01)


def test_one_map_and_an_empty_map(case, tmp_path: Path, dciodvfy) -> None:
    """One non-empty map (highdicom shares its segment identification across frames) beside a map of zeros (a
    segment without a frame): the frame holds the non-empty map's values."""
    study, result, img = case
    one = replace(img, heatmaps=[replace(img.heatmaps[0], array=np.zeros((10, 10), np.float32)), img.heatmaps[1]])
    (frac,) = [o for o in encode(study, replace(result, images=[one if i is img else i for i in result.images]))
               if o.Modality == "SEG" and o.SegmentationType == "FRACTIONAL"]
    path = tmp_path / "one.dcm"
    frac.save_as(path, enforce_file_format=True)
    assert dciodvfy(path)[0] == []
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 1
    expected = img.heatmaps[1].full(img.rows, img.columns) * img.heatmaps[1].probability
    assert np.abs(ds.pixel_array.astype(float) / 255.0 - expected).max() <= 1 / 255 + 1e-6
    seg = hd.seg.Segmentation.from_dataset(ds)
    assert seg.get_segment_description(2).segment_label == img.heatmaps[1].label


def test_no_heatmaps_no_fractional_seg(xray_objects) -> None:
    assert not [o for o in xray_objects if o.get("SegmentationType") == "FRACTIONAL"]


def test_report_draws_the_overlay(case) -> None:
    study, result, img = case
    assert combined_map(img).max() == pytest.approx(0.9, abs=1e-3)
    sources = load_sources(study, result)
    figs = []
    for images in (result.images, [replace(i, heatmaps=[]) for i in result.images]):
        figs.append(render(replace(result, images=images), sources).pixels.astype(int))
    with_map, without = figs
    changed = np.abs(with_map - without).sum(axis=2) > 30
    assert changed.sum() > 100
    ys, _ = np.nonzero(changed)
    assert ys.max() < 0.45 * with_map.shape[0]  # in the image panels at the top of the page, not the tables


def test_combined_map_is_the_maximum_of_the_weighted_full_maps() -> None:
    """``combined_map`` (patch by patch) equals the per-pixel maximum of ``weighted`` over the full-size maps,
    overlapping patches, a patch cut by the image edge and a map without probability included."""
    from pipelines.dicom_out.heatmap import weighted

    rng = np.random.default_rng(5)
    maps = [HeatMap(label=f"{s} map", image_uid="1.2.3", site=s, array=rng.random(shape).astype(np.float32),
                    origin=o, probability=p)
            for s, shape, o, p in (("C3-C4", (40, 30), (10, 12), 0.7), ("C4-C5", (40, 30), (30, 20), 0.4),
                                   ("C5-C6", (50, 60), (70, 70), None))]
    img = ImageResult(image_uid="1.2.3", series_uid="1.2.4", view=None, rows=100, columns=90, pixel_spacing_mm=None,
                      heatmaps=maps)
    want = np.max(np.stack([weighted(h, 100, 90) for h in maps]), axis=0)
    got = combined_map(img)
    assert got.dtype == np.float32 and np.array_equal(got, want)
