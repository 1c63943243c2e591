"""The phantom: determinism, sizes, pixel semantics, image evidence at the keypoints, DICOM, COCO, CLI."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray.cli import cli
from pipelines.phantoms.xray.coco import write_coco
from pipelines.results import KEYPOINT_NAMES, View
from pipelines.xray.annotations import AnnotatedImage, read_coco, write_coco_json
from pipelines.xray.calibration import CalibrationError, measurement_spacing
from pipelines.xray.preprocessing import view_of


def _display(pv):
    """Pixels as displayed (bright = dense), 0..1."""
    img = pv.pixels.astype(np.float64) / ((1 << pv.bits_stored) - 1)
    return 1.0 - img if pv.photometric == "MONOCHROME1" else img


def test_deterministic_and_seed_dependent():
    a = generate_study(42, shape=(160, 128))
    b = generate_study(42, shape=(160, 128))
    c = generate_study(43, shape=(160, 128))
    for v in a.views:
        assert np.array_equal(a.views[v].pixels, b.views[v].pixels)
        assert np.array_equal(a.views[v].keypoints, b.views[v].keypoints)
    assert a.study_uid == b.study_uid != c.study_uid
    assert not np.array_equal(a.views[View.NEUTRAL].keypoints, c.views[View.NEUTRAL].keypoints)


def test_realistic_size_and_pixel_format():
    study = generate_study(1)
    uids = set()
    for view, pv in study.views.items():
        rows, cols = pv.shape
        assert 1125 <= rows <= 3032 and 908 <= cols <= 2973
        assert pv.pixels.dtype == np.uint16 and pv.bits_stored in (12, 14, 16)
        assert int(pv.pixels.max()) <= (1 << pv.bits_stored) - 1
        assert pv.photometric in ("MONOCHROME1", "MONOCHROME2")
        assert pv.keypoints.shape == (30, 2) and pv.visible.shape == (30,)
        assert 1.0 < pv.magnification < 1.3
        assert pv.pixel_spacing_mm[0] == pytest.approx(pv.imager_pixel_spacing_mm[0] / pv.magnification)
        assert set(pv.vertebra_polygons) == {"C2", "C3", "C4", "C5", "C6", "C7"}
        uids.add(pv.sop_instance_uid)
        assert {m.view for m in pv.truth} == {view}
    assert len(uids) == 3
    assert sum(m.view is None for m in study.truth) == 10


def test_views_differ_plausibly():
    """Flexion is more kyphotic and extension more lordotic than neutral, for every seed."""
    for seed in range(12):
        st = generate_study(seed, shape=(64, 64))
        cobb = {m.view: m.value for m in st.truth if m.key == "cobb_c2_c7"}
        assert cobb[View.FLEXION] < cobb[View.NEUTRAL] < cobb[View.EXTENSION]


def test_variation_ranges_are_realistic():
    cobbs, svas, pav, trans = [], [], [], []
    for seed in range(60):
        st = generate_study(seed, views=(View.NEUTRAL,), shape=(48, 48))
        t = {(m.key, m.site): m.value for m in st.truth}
        cobbs.append(t[("cobb_c2_c7", "C2-C7")])
        svas.append(t[("sva_c2_c7", "C2-C7")])
        pav += [v for (k, _), v in t.items() if k == "pavlov_ratio"]
        trans += [abs(v) for (k, _), v in t.items() if k == "listhesis_distance"]
    assert -35 <= min(cobbs) < -5 and 30 < max(cobbs) <= 50
    assert min(svas) >= -5 and max(svas) > 40 and np.median(svas) == pytest.approx(18, abs=8)
    assert 0.58 <= min(pav) < 0.75 and 1.0 < max(pav) <= 1.12
    assert max(trans) <= 5.5


def _at(img, p):
    x, y = int(round(p[0])), int(round(p[1]))
    return img[y - 1:y + 2, x - 1:x + 2].mean()


def test_image_evidence_at_the_keypoints():
    """Vertebral bodies are brighter than the discs between them, the canal darker than the body."""
    for seed in (3, 8):
        st = generate_study(seed, shape=(512, 512), difficulty="easy")
        for pv in st.views.values():
            img = _display(pv)
            k = pv.keypoints.reshape(-1, 2)
            for v in range(1, 5):  # C3..C6 (away from shoulders)
                body = k[4 * v:4 * v + 4].mean(axis=0)
                below = k[4 * v + 4:4 * v + 8]
                disc = 0.5 * (k[4 * v + 1] + k[4 * v + 3]) * 0.5 + 0.5 * (below[0] + below[2]) * 0.5
                canal = 0.5 * (0.5 * (k[4 * v + 2] + k[4 * v + 3]) + k[24 + v])

                assert _at(img, body) > _at(img, disc) + 0.02
                assert _at(img, body) > _at(img, canal)


def test_monochrome1_is_inverted_storage():
    seen = set()
    for seed in range(12):
        st = generate_study(seed, views=(View.NEUTRAL,), shape=(128, 128), difficulty="easy")
        pv = st.views[View.NEUTRAL]
        seen.add(pv.photometric)
        img = _display(pv)
        body = pv.keypoints[8:12].mean(axis=0).round().astype(int)
        air_col = 2 if pv.keypoints[0, 0] > pv.keypoints[2, 0] else 125  # far anterior: air in front of the neck
        assert img[body[1], body[0]] > img[body[1], air_col]
    assert seen == {"MONOCHROME1", "MONOCHROME2"}


def test_shoulders_hide_c7_sometimes():
    hidden = 0
    for seed in range(40):
        pv = generate_study(seed, views=(View.NEUTRAL,), shape=(48, 48), difficulty="hard").views[View.NEUTRAL]
        c7 = pv.visible[20:24]
        hidden += int(not c7.all())
    assert 5 <= hidden <= 35


def test_small_view_is_fast():
    generate_study(0, views=(View.NEUTRAL,), shape=(512, 512))
    t = time.perf_counter()
    for seed in range(5):
        generate_study(seed, views=(View.NEUTRAL,), shape=(512, 512))
    assert (time.perf_counter() - t) / 5 < 0.25  # ~20-60 ms on a free core; generous for shared CI


def test_bad_arguments():
    with pytest.raises(ValueError, match="difficulty"):
        generate_study(0, difficulty="extreme")
    with pytest.raises(ValueError, match="too small"):
        generate_study(0, shape=(8, 8))


def test_dicom_files(tmp_path, require):
    study = generate_study(7, shape=(600, 500))
    paths = write_study(study, tmp_path)
    assert [p.name for p in paths] == ["neutral.dcm", "flexion.dcm", "extension.dcm"]
    series = set()
    for path, (view, pv) in zip(paths, study.views.items(), strict=True):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1" and ds.Modality == "DX"
        assert ds.PresentationIntentType == "FOR PRESENTATION" and ds.BodyPartExamined == "CSPINE"
        assert ds.StudyInstanceUID == study.study_uid and ds.SOPInstanceUID == pv.sop_instance_uid
        assert ds.PhotometricInterpretation == pv.photometric
        assert np.array_equal(ds.pixel_array, pv.pixels)
        assert view_of(ds) == view
        spacing, source = measurement_spacing(ds)
        assert spacing == pytest.approx(pv.pixel_spacing_mm, rel=1e-5) and "PixelSpacing" in source
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 3
    require("dciodvfy")
    out = subprocess.run(["dciodvfy", str(paths[1])], capture_output=True, text=True)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_compressed_transfer_syntax(tmp_path):
    study = generate_study(2, views=(View.NEUTRAL,), shape=(200, 180))
    (path,) = write_study(study, tmp_path, transfer_syntax="1.2.840.10008.1.2.5")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert np.array_equal(ds.pixel_array, study.views[View.NEUTRAL].pixels)


def _ds(**kw):
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_measurement_spacing_sources():
    sp, src = measurement_spacing(_ds(PixelSpacing=[0.1, 0.1], PixelSpacingCalibrationType="FIDUCIAL",
                                      ImagerPixelSpacing=[0.2, 0.2]))
    assert sp == (0.1, 0.1) and "FIDUCIAL" in src
    sp, src = measurement_spacing(_ds(ImagerPixelSpacing=[0.15, 0.15], EstimatedRadiographicMagnificationFactor=1.2))
    assert sp == pytest.approx((0.125, 0.125)) and "Magnification" in src
    sp, src = measurement_spacing(_ds(ImagerPixelSpacing=[0.15, 0.15]))
    assert sp == (0.15, 0.15) and "WARNING" in src
    sp, src = measurement_spacing(_ds(PixelSpacing=[0.15, 0.15], ImagerPixelSpacing=[0.15, 0.15]))
    assert "not corrected" in src
    with pytest.raises(CalibrationError, match="no PixelSpacing"):
        measurement_spacing(_ds(Rows=10))
    with pytest.raises(CalibrationError):
        measurement_spacing(_ds(ImagerPixelSpacing=[0.15, 0.15], EstimatedRadiographicMagnificationFactor=0))


def test_view_of_texts():
    assert view_of(_ds(SeriesDescription="C-SPINE LAT FLEX")) == View.FLEXION
    assert view_of(_ds(ImageComments="extension lateral")) == View.EXTENSION
    assert view_of(_ds(SeriesDescription="C-SPINE LAT NEUTRAL")) == View.NEUTRAL
    assert view_of(_ds(SeriesDescription="C-SPINE LAT")) is None


def test_coco_round_trip_dicom_and_png(tmp_path):
    studies = [generate_study(s, shape=(160, 140)) for s in (1, 2)]
    for fmt in ("dcm", "png"):
        path = write_coco(studies, tmp_path / fmt, image_format=fmt)
        doc = json.loads(path.read_text())
        assert doc["categories"][0]["keypoints"] == list(KEYPOINT_NAMES)
        images = read_coco(path)
        assert len(images) == 6
        for im, pv in zip(images, [pv for st in studies for pv in st.views.values()], strict=True):
            assert im.image_path.exists() and im.image_path.suffix == f".{fmt}"
            assert np.allclose(im.keypoints, pv.keypoints, atol=1e-3)
            assert np.array_equal(im.visible, pv.visible)
            assert im.view == pv.view and im.pixel_spacing_mm == pytest.approx(pv.pixel_spacing_mm)
            truth = {(m.key, m.site): m.value for m in pv.truth}
            assert {(m.key, m.site): m.value for m in im.measurements} == pytest.approx(truth)


def test_coco_missing_points_and_hidden_flags(tmp_path):
    kp = np.arange(60, dtype=float).reshape(30, 2)
    kp[3] = np.nan
    vis = np.ones(30, bool)
    vis[5] = False
    path = write_coco_json([AnnotatedImage(tmp_path / "x.png", kp, vis, width=10, height=10)], tmp_path / "a.json")
    doc = json.loads(path.read_text())
    flags = doc["annotations"][0]["keypoints"][2::3]
    assert flags[3] == 0 and flags[5] == 1 and flags[0] == 2
    (im,) = read_coco(path)
    assert np.isnan(im.keypoints[3]).all() and not im.labelled[3] and im.labelled[5] and not im.visible[5]
    assert im.pixel_spacing_mm is None and im.view is None and im.measurements is None


def test_cli(tmp_path, capsys):
    assert cli(["--out", str(tmp_path), "--seed", "5", "--count", "2", "--shape", "128", "96", "--coco"]) == 0
    assert len(list(tmp_path.glob("study_*/*.dcm"))) == 6
    assert len(read_coco(tmp_path / "coco" / "annotations.json")) == 6
    with pytest.raises(SystemExit):
        cli(["--seed", "1"])


def test_vertebra_polygons_and_canal_polygon_enclose_their_structures():
    from matplotlib.path import Path as MplPath

    pv = generate_study(4, views=(View.NEUTRAL,), shape=(400, 400)).views[View.NEUTRAL]
    for i, name in enumerate(("C2", "C3", "C4", "C5", "C6", "C7")):
        poly = MplPath(pv.vertebra_polygons[name])
        centre = pv.keypoints[4 * i:4 * i + 4].mean(axis=0)
        assert poly.contains_point(centre)
        for j, other in enumerate(pv.keypoints[:24].reshape(6, 4, 2).mean(axis=1)):
            if j != i:
                assert not poly.contains_point(other)
    canal = MplPath(pv.canal_polygon)
    for i in range(1, 6):
        mid = 0.5 * (0.5 * (pv.keypoints[4 * i + 2] + pv.keypoints[4 * i + 3]) + pv.keypoints[24 + i])
        assert canal.contains_point(mid)
