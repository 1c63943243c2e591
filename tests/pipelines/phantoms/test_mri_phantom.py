"""MR phantom: determinism, truth consistent with the rendered anatomy, DICOM and truth round trips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.mri.preprocessing import choose_series, load_series
from pipelines.phantoms.dicom import write_series
from pipelines.phantoms.mri import generate_series
from pipelines.phantoms.mri.cli import cli
from pipelines.phantoms.mri.truth import read_truth, write_truth
from pipelines.phantoms.patient import DISC_POSITIVE, DISC_STATES, VirtualPatient, virtual_patient
from pipelines.route import route
from pipelines.study import Study
from pipelines.vocabulary import LEVELS, TASKS


@pytest.fixture(scope="module")
def t2():
    return generate_series(11)


def test_deterministic_and_t1_t2_share_the_patient(t2):
    again = generate_series(11)
    assert np.array_equal(t2.volume, again.volume)
    t1 = generate_series(11, weighting="T1")
    assert t1.levels == t2.levels
    assert t1.slice_positions_mm == t2.slice_positions_mm
    # CSF is bright on T2 and dark on T1 relative to the cord
    mid = t2.mid_slice
    canal = t2.canal_mask
    assert t2.volume[mid][canal].max() > 1.3 * np.median(t2.volume[mid][canal])
    assert np.percentile(t1.volume[mid][canal], 90) < np.percentile(t1.volume[mid][t2.disc_mask > 0], 90) * 2
    assert not np.array_equal(t1.volume, t2.volume)


def test_truth_follows_the_rules(t2):
    for t in t2.levels:
        assert t.disc in DISC_STATES
        assert t.disc_herniation == (t.disc in DISC_POSITIVE)
        assert t.canal_stenosis == (t.canal_grade >= 2) == t.cord_compression
        assert t.foraminal_stenosis_left == (t.foramen_narrowing_left >= 0.5)
        assert t.foraminal_stenosis_right == (t.foramen_narrowing_right >= 0.5)
    # canal grade is monotone in the residual diameter
    res = [t.canal_residual_mm for t in t2.levels]
    grades = [t.canal_grade for t in t2.levels]
    order = np.argsort(res)
    assert all(np.diff(np.array(grades)[order]) <= 0)


def test_disc_centres_lie_in_their_disc_masks_and_in_order(t2):
    for j, t in enumerate(t2.levels):
        x, y = (int(round(v)) for v in t.disc_centre_px)
        assert t2.disc_mask[y, x] == j + 1
    ys = [t.disc_centre_px[1] for t in t2.levels]
    assert all(np.diff(ys) > 8)  # about one vertebra apart, cranio-caudal order
    # the canal lies posterior (image right) of the discs
    cy, cx = np.nonzero(t2.canal_mask)
    for t in t2.levels:
        row = cx[np.abs(cy - t.disc_centre_px[1]) < 1]
        assert row.min() > t.disc_centre_px[0]


def test_herniation_narrows_the_rendered_canal():
    """Among many patients, herniated levels have a smaller residual canal than normal discs."""
    res = {True: [], False: []}
    for seed in range(300, 306):
        ph = generate_series(seed, shape=(128, 128), n_slices=7)
        for t in ph.levels:
            res[t.disc_herniation].append(t.canal_residual_mm)
    assert res[True] and res[False]
    assert np.mean(res[True]) < np.mean(res[False]) - 1.0


def test_virtual_patient_population():
    pats = [virtual_patient(s) for s in range(400)]
    states = {lv.disc for p in pats for lv in p.levels}
    assert states == set(DISC_STATES)
    cobb = np.array([p.cobb_c2_c7_deg for p in pats])
    assert 10 < cobb.mean() < 30 and (cobb < 0).any()
    old = [p.degeneration for p in pats if p.age > 65]
    young = [p.degeneration for p in pats if p.age < 40]
    assert np.mean(old) > np.mean(young) + 0.3
    assert VirtualPatient.from_dict(json.loads(json.dumps(pats[3].to_dict()))) == pats[3]


def test_dicom_and_truth_round_trip(tmp_path: Path, t2):
    files = write_series(t2, tmp_path, patient_id="PID-1")
    write_truth(t2, tmp_path / "truth.json")
    assert len(files) == t2.volume.shape[0]
    dss = [pydicom.dcmread(f) for f in files]
    assert {d.SOPClassUID for d in dss} == {"1.2.840.10008.5.1.4.1.1.4"}
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    assert len({d.FrameOfReferenceUID for d in dss}) == 1
    for k, d in enumerate(dss):
        assert d.Modality == "MR" and d.BodyPartExamined == "CSPINE" and d.SeriesDescription == "T2 SAG"
        assert [float(v) for v in d.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
        assert float(d.ImagePositionPatient[0]) == pytest.approx(t2.slice_positions_mm[k], abs=1e-3)
        assert float(d.PixelSpacing[0]) == pytest.approx(t2.pixel_spacing_mm[0], abs=1e-5)
        assert float(d.SliceThickness) == pytest.approx(3.0)
        assert float(d.SpacingBetweenSlices) == pytest.approx(3.3)
        assert d.PatientID == "PID-1"
        assert np.array_equal(d.pixel_array, t2.volume[k])
    patient, levels = read_truth(tmp_path / "truth.json")
    assert levels == t2.levels and patient == t2.patient
    # routing and reading back through the pipeline's reader
    study = Study.from_paths(files)[0]
    routes = route(study)
    assert [r.pipeline for r in routes] == ["mri"]
    chosen, warnings = choose_series(routes[0].instances)
    assert warnings == []
    sv = load_series(chosen)
    assert sv.mid_slice == t2.mid_slice
    lat = np.array(t2.slice_positions_mm) - t2.slice_positions_mm[t2.mid_slice]
    assert np.allclose(np.array(sv.lateral_mm) - sv.lateral_mm[sv.mid_slice], lat, atol=1e-3)
    assert sv.lateral_slice("left") > sv.mid_slice > sv.lateral_slice("right")
    assert not sv.flip_x and not sv.flip_y


def test_truth_findings_match_levels(t2):
    fs = t2.findings()
    assert {f.site for f in fs} == set(LEVELS)
    for t in t2.levels:
        for task in TASKS:
            (f,) = [f for f in fs if f.key == task and f.site == t.level]
            assert f.value == ("present" if t.label(task) else "absent")


def test_cli_writes_studies_with_truth(tmp_path: Path):
    assert cli(["--out", str(tmp_path), "--seed", "5", "--count", "2", "--weighting", "T2", "T1",
                "--rows", "128", "--columns", "128", "--slices", "7"]) == 0
    dirs = sorted(tmp_path.iterdir())
    assert [d.name for d in dirs] == ["mri_000005", "mri_000006"]
    files = sorted(dirs[0].glob("*.dcm"))
    assert len(files) == 14
    dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len({d.StudyInstanceUID for d in dss}) == 1
    assert {d.SeriesDescription for d in dss} == {"T1 SAG", "T2 SAG"}
    assert (dirs[0] / "truth.json").exists()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_written_slices_pass_dciodvfy(tmp_path: Path):
    ph = generate_series(2, shape=(128, 128), n_slices=7)
    f = write_series(ph, tmp_path)[3]
    out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert "Error" not in text, text
