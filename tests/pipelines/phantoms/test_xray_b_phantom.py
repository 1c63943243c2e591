"""Renderer B: determinism, the truth keypoints on the rendered bodies, the plausibility gate on its truth, DICOM
files that pass dciodvfy, and the ``cspine-node phantom xray --style b --shift ...`` command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as MplPath

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray.cli import cli
from pipelines.phantoms.xray_b import generate_study_b
from pipelines.phantoms.xray_b.anatomy import build_chain, sample_spine
from pipelines.vocabulary import KEYPOINT_NAMES, View
from pipelines.xray.plausibility import check_view
from pipelines.xray.preprocessing import view_of

VIEWS = (View.NEUTRAL, View.FLEXION, View.EXTENSION)


def display(pv) -> np.ndarray:  # noqa: ANN001
    """Stored values as displayed (bone bright), 0..1."""
    img = pv.pixels.astype(np.float64) / ((1 << pv.bits_stored) - 1)
    return 1.0 - img if pv.photometric == "MONOCHROME1" else img


def values(ds: pydicom.Dataset, keyword: str) -> list:
    """A (possibly multi-valued) attribute as a list."""
    v = ds[keyword].value
    return [v] if isinstance(v, str | float | int) else list(v)


def mean_in(img: np.ndarray, quad: np.ndarray) -> float:
    rows, cols = img.shape
    x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(quad.max(axis=0)).astype(int), [cols - 1, rows - 1])
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    inside = MplPath(quad).contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(yy.shape)
    return float(img[y0:y1 + 1, x0:x1 + 1][inside].mean())


def test_deterministic_and_seed_dependent() -> None:
    a = generate_study_b(4, max_size=200)
    b = generate_study_b(4, max_size=200)
    c = generate_study_b(5, max_size=200)
    for v in VIEWS:
        assert np.array_equal(a.views[v].pixels, b.views[v].pixels)
        assert np.array_equal(a.views[v].keypoints, b.views[v].keypoints)
    assert a.study_uid == b.study_uid != c.study_uid
    assert not np.array_equal(a.views[View.NEUTRAL].keypoints, c.views[View.NEUTRAL].keypoints)
    assert sum(m.view is None for m in a.truth) == 10  # flexion-extension differences


@pytest.mark.parametrize("seed", [0, 6])
def test_truth_keypoints_land_on_the_bodies(seed: int) -> None:
    """Inside each visible body's corner quadrilateral (shrunk to its central 70 %) the image is brighter than in the
    same quadrilateral moved one body depth anteriorly (prevertebral soft tissue) and than in the disc below."""
    st = generate_study_b(seed, max_size=640)
    checked = 0
    for pv in st.views.values():
        img = display(pv)
        for v in range(5):  # C2..C6 (C7 may lie under the shoulders)
            c = pv.keypoints[4 * v:4 * v + 4]
            if not pv.visible[4 * v:4 * v + 4].all():
                continue
            quad = c[[0, 1, 3, 2]]
            centre = quad.mean(axis=0)
            core = centre + 0.7 * (quad - centre)
            ant = 0.5 * (c[0] + c[1]) - 0.5 * (c[2] + c[3])
            lower = pv.keypoints[4 * v + 4:4 * v + 8]
            disc = np.array([c[1], lower[0], lower[2], c[3]])  # AI, next AS, next PS, PI
            body = mean_in(img, core)
            assert body > mean_in(img, core + 1.2 * ant) + 0.05, (st.seed, pv.view, v)
            assert body > mean_in(img, centre + 0.6 * (disc - disc.mean(axis=0)) + (disc.mean(axis=0) - centre)), (
                st.seed, pv.view, v)
            checked += 1
    assert checked >= 10


def test_gate_passes_on_every_truth_view() -> None:
    """The plausibility gate passes renderer B's truth keypoints on every view of 300 patients (anatomy only, in mm),
    in both facings, and on every rendered view of a few studies (pixels, spacing and image bounds)."""
    for seed in range(300):
        s = sample_spine(np.random.default_rng([seed, 0xB]), seed, VIEWS)
        for v in VIEWS:
            kp = build_chain(s, s.poses[v]).keypoints() * np.array([1.0, -1.0])  # image y down
            for pts in (kp, kp * np.array([-1.0, 1.0])):
                r = check_view(pts, (1.0, 1.0))
                assert r.passed and r.canal_passed, (seed, v, r.failures, r.canal_failures)
    for seed in range(3):
        for pv in generate_study_b(seed, max_size=256).views.values():
            r = check_view(pv.keypoints, pv.pixel_spacing_mm, shape=pv.shape)
            assert r.passed, (seed, pv.view, r.failures)


def test_shift_by_one_on_b_fails_the_gate() -> None:
    """B's C2 is realistically taller than the bodies below: a chain moved down one vertebra ("C7" on T1) fails on
    the C2 height check in all but the rare patient whose C3 is itself much taller than C4-C7 (1 in 300 here)."""
    failed = 0
    for seed in range(300):
        s = sample_spine(np.random.default_rng([seed, 0xB]), seed, VIEWS)
        ch = build_chain(s, s.poses[View.NEUTRAL])
        kp = ch.keypoints() * np.array([1.0, -1.0])
        kp[:24] = ch.corners[1:7].reshape(24, 2) * np.array([1.0, -1.0])
        failed += not check_view(kp, (1.0, 1.0)).passed
    assert failed >= 0.98 * 300, failed


def test_dicom_files_pass_dciodvfy(tmp_path: Path, require) -> None:  # noqa: ANN001
    require("dciodvfy")
    st = generate_study_b(8, max_size=384)
    paths = write_study(st, tmp_path)
    assert len(paths) == 3
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.Modality == "DX" and ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert view_of(ds) in VIEWS
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], errors


def test_dicom_names_the_renderer_and_lossy_history(tmp_path: Path) -> None:
    """Renderer A and B write their own ManufacturerModelName; only a lossy shift makes the file lossy ("01"),
    and two JPEG round trips are two ratios and methods; a geometric shift after it keeps the history."""
    from pipelines.phantoms.shifts import shift_study
    from pipelines.phantoms.xray.study import generate_study

    b = generate_study_b(9, views=(View.NEUTRAL,), max_size=256)
    a = generate_study(9, views=(View.NEUTRAL,), shape=(256, 256))
    cases = {"b": (b, "none"), "b_noise": (b, "noise,rotate:10"), "b_jpeg": (b, "jpeg:30,rotate:10,jpeg:80"),
             "a": (a, "none"), "a_jpeg": (a, "jpeg")}
    got = {}
    for name, (st, spec) in cases.items():
        (path,) = write_study(shift_study(st, spec), tmp_path / name)
        got[name] = pydicom.dcmread(path, stop_before_pixels=True)
    assert got["b"].ManufacturerModelName == got["b_jpeg"].ManufacturerModelName == "cspine-node xray phantom B"
    assert got["a"].ManufacturerModelName == got["a_jpeg"].ManufacturerModelName == "cspine-node xray phantom"
    for name in ("a", "b", "b_noise"):
        assert got[name].LossyImageCompression == "00"
        assert "LossyImageCompressionRatio" not in got[name] and "LossyImageCompressionMethod" not in got[name]
    assert got["a_jpeg"].LossyImageCompression == "01"
    assert values(got["a_jpeg"], "LossyImageCompressionMethod") == ["ISO_10918_1"]
    ds = got["b_jpeg"]
    assert ds.LossyImageCompression == "01" and values(ds, "LossyImageCompressionMethod") == ["ISO_10918_1"] * 2
    r30, r80 = (float(v) for v in values(ds, "LossyImageCompressionRatio"))
    assert r30 > r80 > 1.0  # quality 30 compresses more than quality 80


def test_cli_style_b_with_shifts(tmp_path: Path, require) -> None:  # noqa: ANN001
    require("dciodvfy")
    assert cli(["--style", "b", "--shift", "rotate:25,mono1,jpeg", "--out", str(tmp_path), "--seed", "3",
                "--count", "1", "--shape", "320", "320", "--coco"]) == 0
    files = sorted((tmp_path / "study_000003").glob("*.dcm"))
    assert [f.name for f in files] == ["extension.dcm", "flexion.dcm", "neutral.dcm"]
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        assert ds.ManufacturerModelName == "cspine-node xray phantom B"  # renderer B's own name, not A's
        # the JPEG shift is recorded: lossy once, its ratio (16-bit pixels / JPEG stream) and method
        assert ds.LossyImageCompression == "01" and values(ds, "LossyImageCompressionMethod") == ["ISO_10918_1"]
        ratio = [float(v) for v in values(ds, "LossyImageCompressionRatio")]
        assert len(ratio) == 1 and 2.0 < ratio[0] < 200.0
        out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        assert [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Error")] == []
    import json

    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len(coco["annotations"]) == 3 and len(coco["annotations"][0]["keypoints"]) == 3 * len(KEYPOINT_NAMES)
    with pytest.raises(SystemExit):
        cli(["--style", "b", "--shift", "nonsense", "--out", str(tmp_path)])
