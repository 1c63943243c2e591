"""Renderer C (independent synthetic sagittal cervical MR): determinism, geometry, truth and DICOM output."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.phantoms.mri_b.truth import LevelTruthB
from pipelines.phantoms.mri_c import draw_case_c, make_case_c
from pipelines.vocabulary import LEVELS

SEEDS = range(40)


@pytest.fixture(scope="module")
def case7():
    return make_case_c(7)


@pytest.fixture(scope="module")
def draws():
    return {s: draw_case_c(s) for s in SEEDS}


def test_deterministic(case7):
    series, levels, info = make_case_c(7)
    assert levels == case7[1]
    assert info == case7[2]
    for a, b in zip(series, case7[0], strict=True):
        assert np.array_equal(a.volume, b.volume)
        assert np.array_equal(a.positions, b.positions)


def test_volume_and_series_attributes(case7):
    series, levels, info = case7
    assert series[0].weighting == "T2"
    assert [s.weighting for s in series[1:]] in ([], ["T1"])
    for s in series:
        v = s.volume
        assert v.dtype == np.uint16 and v.ndim == 3
        assert v.shape == (info["n_slices"], *info["matrix"])
        assert 9 <= v.shape[0] <= 19
        assert int(v.max()) <= 4095 and int(v.max()) > 500
        assert len(s.slice_positions_mm) == v.shape[0]
        assert s.positions.shape == (v.shape[0], 3)
        assert len(s.orientation) == 6
        assert s.patient.patient_id == "C0000007" and s.patient.sex in ("M", "F")
        assert 25 <= s.patient.age <= 85
        assert 2.5 <= s.slice_thickness_mm <= 4.0
        assert 0.35 <= s.pixel_spacing_mm[0] <= 0.9


def test_geometry_identity(draws):
    kinds = set()
    for seed, c in draws.items():
        a = c.acq
        pos = a.positions()
        rd, cd, nl = a.rowdir, a.coldir, a.normal_left
        assert abs(rd @ cd) < 1e-12 and abs(rd @ nl) < 1e-12 and abs(cd @ nl) < 1e-12
        kinds.add(("flip" if a.flipped else "std", "oblique" if (a.yaw_deg or a.roll_deg) else "straight"))
        for t in c.levels:
            c_, r_ = t.disc_centre_px
            p = pos[t.disc_slice] + c_ * a.pixel_mm * rd + r_ * a.pixel_mm * cd + t.disc_offplane_mm * nl
            assert np.allclose(p, t.disc_centre_mm, atol=1e-6), seed
            assert abs(t.disc_offplane_mm) <= a.spacing / 2 + 1e-9
            assert 0 <= c_ < a.cols and 0 <= r_ < a.rows, seed
    assert {("flip", "oblique"), ("std", "oblique"), ("std", "straight")} <= kinds


def test_geometry_matches_series(case7):
    series, levels, _ = case7
    s = series[0]
    rd, cd = np.array(s.orientation[:3]), np.array(s.orientation[3:])
    normal = np.cross(cd, rd)  # towards the patient's left
    for t in levels:
        p = (s.positions[t.disc_slice] + t.disc_centre_px[0] * s.pixel_spacing_mm[1] * rd
             + t.disc_centre_px[1] * s.pixel_spacing_mm[0] * cd + t.disc_offplane_mm * normal)
        assert np.allclose(p, t.disc_centre_mm, atol=1e-6)
    steps = np.diff(np.array(s.slice_positions_mm))
    assert np.allclose(np.abs(steps), s.spacing_between_slices_mm)


def test_levels_order_and_spacing(draws):
    for c in list(draws.values())[:20]:
        levels = c.levels
        assert [t.level for t in levels] == list(LEVELS)
        assert all(isinstance(t, LevelTruthB) and t.disc == t.level for t in levels)
        z = [t.disc_centre_mm[2] for t in levels]
        assert all(a > b for a, b in zip(z[:-1], z[1:], strict=True))  # cranial first
        d = np.linalg.norm(np.diff(np.array([t.disc_centre_mm for t in levels]), axis=0), axis=1)
        assert np.all((d > 11) & (d < 28)), d


def test_truth_rules_and_prevalence(draws):
    rows = [t for c in draws.values() for t in c.levels]
    cord = {s: c.info["cord_ap_mm"] for s, c in draws.items()}
    for seed, c in draws.items():
        for k, t in enumerate(c.levels):
            assert t.canal_stenosis == (t.canal_residual_mm < cord[seed][k] + 1.0)
            assert t.cord_compression == (t.canal_residual_mm < cord[seed][k])
            assert t.foraminal_stenosis_left == (t.foramen_narrowing_left >= 0.5)
            assert 0.0 <= t.foramen_narrowing_right <= 1.0 and t.canal_grade in (0, 1, 2, 3)
    for name in ("disc_herniation", "canal_stenosis", "foraminal_stenosis_left", "foraminal_stenosis_right"):
        rate = np.mean([getattr(t, name) for t in rows])
        assert 0.12 <= rate <= 0.55, (name, rate)
    borderline = [t for t in rows if 0.4 <= t.foramen_narrowing_left <= 0.6]
    assert len(borderline) >= 5


def test_write_series_dicom(case7, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pipelines.phantoms.dicom import write_series

    series, _, _ = case7
    s = series[0]
    paths = write_series(s, tmp_path, orientation=s.orientation, positions=s.positions,
                         uid_key="cspine-mri-c-7", model_name="mri-phantom C")
    assert len(paths) == s.volume.shape[0]
    ds = pydicom.dcmread(paths[3])
    assert ds.Modality == "MR" and ds.ManufacturerModelName == "mri-phantom C"
    assert np.array_equal(ds.pixel_array, s.volume[3])
    assert np.allclose([float(v) for v in ds.ImagePositionPatient], s.positions[3], atol=1e-3)
    assert np.allclose([float(v) for v in ds.ImageOrientationPatient], s.orientation, atol=1e-5)
