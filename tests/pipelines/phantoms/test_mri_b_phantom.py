"""Renderer B and the MRI shift suite: determinism, truth in the rendered tissue, written geometry, dciodvfy,
routing, the shifts on renderer A, the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.mri.preprocessing import choose_series, load_series
from pipelines.phantoms.mri_b import render_series, sample_acquisition
from pipelines.phantoms.mri_b.patient import HERNIATED, sample_patient
from pipelines.phantoms.mri_b.skeleton import build_skeleton
from pipelines.phantoms.mri_b.tissues import DISC_TISSUE, Anatomy
from pipelines.phantoms.mri_b.truth import read_truth_b
from pipelines.phantoms.mri_shift import make_case, parse_shifts, write_case
from pipelines.route import route
from pipelines.study import Study
from pipelines.vocabulary import LEVELS, TASKS

SMALL = {"rows": 176, "columns": 144, "pixel_mm": 0.78, "n_slices": 9}
"""A small acquisition (fast) that still holds C1 to T2."""


@pytest.fixture(scope="module")
def oblique():
    acq = sample_acquisition(21, **SMALL, slab_yaw_deg=5.0, slab_roll_deg=-4.0, pitch_deg=12.0, lateral_offset_mm=4.0)
    return render_series(21, acquisition=acq)


def test_deterministic_and_weightings_share_the_truth(oblique):
    again = render_series(21, acquisition=oblique.acquisition)
    assert np.array_equal(oblique.volume, again.volume)
    t1 = render_series(21, weighting="T1", acquisition=oblique.acquisition)
    assert t1.levels == oblique.levels and not np.array_equal(t1.volume, oblique.volume)
    other = render_series(22, acquisition=oblique.acquisition)
    assert not np.array_equal(other.volume, oblique.volume)
    assert oblique.volume.dtype == np.uint16 and oblique.volume.max() <= 4095
    # CSF is bright on T2 and dark on T1 next to the cord
    csf = oblique.labels == 9
    assert np.median(oblique.volume[csf]) > 1.5 * np.median(t1.volume[csf])


def test_truth_disc_centres_lie_in_disc_tissue_and_in_order(oblique):
    for t in oblique.levels:
        k, (x, y) = t.disc_slice, t.disc_centre_px
        assert abs(t.disc_offplane_mm) <= oblique.acquisition.spacing_mm / 2 + 1e-6
        assert oblique.labels[k][int(round(y)), int(round(x))] in DISC_TISSUE, t
    z = [t.disc_centre_mm[2] for t in oblique.levels]
    assert all(np.diff(z) < -10)  # cranio-caudal, about a vertebra apart
    # the 3-D anatomy has disc tissue exactly at every truth centre, for many patients
    for seed in range(5):
        p = sample_patient(seed)
        sk = build_skeleton(p)
        an = Anatomy(p, sk)
        pts = np.array([[0.0, *c] for c in sk.disc_centres[: len(LEVELS)]])
        s, a = sk.to_line(pts[:, 1:])
        lab = an.labels(pts[:, 0], pts[:, 1], pts[:, 2], s, a)
        assert set(lab.tolist()) <= set(DISC_TISSUE), lab


def test_truth_follows_the_rules_and_the_population_is_mixed():
    n, pos = 0, dict.fromkeys(TASKS, 0)
    for seed in range(40):
        p = sample_patient(seed)
        an = Anatomy(p, build_skeleton(p))
        for j, lv in enumerate(p.levels):
            resid = an.residual_canal(j)
            n += 1
            pos["disc_degeneration"] += lv.kind in HERNIATED
            pos["canal_stenosis"] += resid < p.cord_ap_mm + 1.0
            pos["foraminal_stenosis_left"] += lv.narrowing("left") >= 0.5
            pos["foraminal_stenosis_right"] += lv.narrowing("right") >= 0.5
    assert all(0.15 < v / n < 0.6 for v in pos.values()), pos
    s = render_series(3, acquisition=sample_acquisition(3, **SMALL))
    for t in s.levels:
        assert t.disc_herniation == (t.disc in HERNIATED)
        assert t.canal_stenosis == (t.canal_residual_mm < s.patient.cord_ap_mm + 1.0) == (t.canal_grade >= 2)
        assert t.foraminal_stenosis_left == (t.foramen_narrowing_left >= 0.5)


def test_written_oblique_geometry_reads_back(tmp_path: Path, oblique, require):
    case = make_case("b", 21, parse_shifts(["stir", "flip", "reverse", *_small()]))
    files = write_case(case, tmp_path)
    dss = [pydicom.dcmread(f) for f in files if f.name.startswith("T2")]
    assert len({d.SeriesInstanceUID for d in dss}) == 1 and len(dss) == SMALL["n_slices"]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    assert abs(row @ col) < 1e-5 and abs(np.linalg.norm(row) - 1) < 1e-5 and row[1] < 0  # anterior on the right
    normal = np.cross(row, col)
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(ipp @ normal)
    assert np.allclose(np.abs(steps), case.series[0].spacing_between_slices_mm, atol=1e-3)
    # the truth centre projects onto the pixel grid the truth names
    for t in case.levels:
        d = np.array(t.disc_centre_mm) - ipp[t.disc_slice]
        ps = float(dss[0].PixelSpacing[0])
        assert d @ row / ps == pytest.approx(t.disc_centre_px[0], abs=1e-3)
        assert d @ col / ps == pytest.approx(t.disc_centre_px[1], abs=1e-3)
    study = Study.from_paths(files)[0]
    routes = route(study)
    assert [r.pipeline for r in routes] == ["mri"]
    chosen, _ = choose_series(routes[0].instances)
    sv = load_series(chosen)
    assert sv.series_uid == dss[0].SeriesInstanceUID and sv.flip_x and not sv.flip_y
    assert np.allclose(np.diff(sv.lateral_mm), case.series[0].spacing_between_slices_mm, atol=1e-3)
    assert {pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription for f in files} == {"T2 SAG", "STIR SAG"}
    assert {pydicom.dcmread(f, stop_before_pixels=True).ManufacturerModelName for f in files} == {"mri-phantom B"}
    levels, info = read_truth_b(tmp_path / "truth.json")
    assert levels == case.levels and info["style"] == "b"
    require("dciodvfy")
    for f in (files[0], next(f for f in files if f.name.startswith("STIR"))):
        out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], errors


def _small() -> list[str]:
    return [f"matrix:{SMALL['rows']}x{SMALL['columns']}", f"slices:{SMALL['n_slices']}", "pixel:0.78"]


@pytest.mark.parametrize("shift", [["flip"], ["upside"], ["reverse"], ["tilt:12"], ["offcentre:6"], ["t1", "bias:0.8"]])
def test_shifts_on_renderer_a_move_the_truth_with_the_pixels(shift: list[str], tmp_path: Path):
    base = make_case("a", 5, parse_shifts(["slices:7"]))
    case = make_case("a", 5, parse_shifts(["slices:7", *shift]))
    files = sorted(f for f in write_case(case, tmp_path) if f.name.startswith("T2"))
    s, s0 = case.series[0], base.series[0]
    assert pydicom.dcmread(files[0], stop_before_pixels=True).ManufacturerModelName == "mri-phantom"  # renderer A
    for t, t0 in zip(case.levels, base.levels, strict=True):
        ds = pydicom.dcmread(files[t.disc_slice])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        d = np.array(t.disc_centre_mm) - ipp
        assert d @ iop[:3] / s.pixel_spacing_mm[0] == pytest.approx(t.disc_centre_px[0], abs=1e-3)
        assert d @ iop[3:] / s.pixel_spacing_mm[0] == pytest.approx(t.disc_centre_px[1], abs=1e-3)
        if "bias:0.8" not in shift:  # the pixels moved with the truth: the same tissue under it
            x, y = (int(round(v)) for v in t.disc_centre_px)
            x0, y0 = (int(round(v)) for v in t0.disc_centre_px)
            here = s.volume[t.disc_slice, y - 1:y + 2, x - 1:x + 2].mean()
            there = s0.volume[t0.disc_slice, y0 - 1:y0 + 2, x0 - 1:x0 + 2].mean()
            assert here == pytest.approx(there, rel=0.25)
    if shift == ["flip"]:
        for a, b in zip(base.levels, case.levels, strict=True):
            assert b.disc_centre_px[0] == pytest.approx(255 - a.disc_centre_px[0])
            assert np.allclose(a.disc_centre_mm, b.disc_centre_mm, atol=1e-3)  # the patient did not move
        assert np.array_equal(s.volume, s0.volume[:, :, ::-1])
    if shift == ["reverse"]:
        assert np.array_equal(s.volume, s0.volume[::-1])
        assert case.levels[0].disc_slice == len(s.slice_positions_mm) - 1 - base.levels[0].disc_slice
    if shift == ["tilt:12"]:
        moved = [np.hypot(*np.subtract(a.disc_centre_px, b.disc_centre_px)) for a, b in zip(base.levels, case.levels, strict=True)]
        assert max(moved) > 3
    if "t1" in shift:
        assert [x.weighting for x in case.series] == ["T2", "T1"]


def test_shift_names_are_checked():
    with pytest.raises(ValueError, match="unknown MRI shift"):
        parse_shifts(["wobble"])
    with pytest.raises(ValueError, match="renderer B"):
        make_case("a", 1, parse_shifts(["oblique"]))
    assert parse_shifts(["tilt", "noise:0.1"]) == {"tilt": "15", "noise": "0.1"}


def test_cli_writes_style_b_studies(tmp_path: Path):
    from pipelines.phantoms.mri.cli import cli

    assert cli(["--out", str(tmp_path), "--style", "b", "--seed", "7", "--count", "1", "--weighting", "T2", "T1",
                "--shift", *_small(), "oblique:3"]) == 0
    (d,) = sorted(tmp_path.iterdir())
    assert d.name == "mri_b_000007"
    assert len(list(d.glob("T2_*.dcm"))) == len(list(d.glob("T1_*.dcm"))) == SMALL["n_slices"]
    truth = json.loads((d / "truth.json").read_text())
    assert truth["shifts"]["oblique"] == "3" and len(truth["levels"]) == len(LEVELS)
