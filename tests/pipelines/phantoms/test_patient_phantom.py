"""The X-ray phantom of an MRI virtual patient (opt-in ``anatomy``) and the paired phantom studies.

The default X-ray phantom output must not change when opt-in parameters are added. The reference
(``phantom_reference.json``, made by the unedited phantom) holds, per view, the keypoints and the means of
a 24 x 24 grid of pixel blocks rather than a hash of the bytes: numpy's float32 ``exp``/``power`` differ in the last
bit between CPUs (AVX2 vs AVX-512 code paths), which moves a few pixels by one grey level and changes
every byte hash, while any real change of the rendering (a structure added, moved or re-shaded) moves
block means by far more than the tolerance (``test_patient_reference_tolerance_catches_real_changes``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.paired import paired_phantom_studies
from pipelines.phantoms.patient import virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study

REFERENCE = Path(__file__).with_name("phantom_reference.json")
CASES = [(3, (256, 256), "realistic"), (11, (320, 288), "hard"), (7, None, "realistic")]
GRID = 24
BLOCK_TOL = 0.5
"""Largest allowed change of a block mean (grey levels): CPU float jitter moves one by < 0.1."""


def _case_key(seed: int, shape, difficulty: str) -> str:  # noqa: ANN001
    return f"{seed}/{shape}/{difficulty}"


def _blocks(pixels: np.ndarray) -> list[list[float]]:
    """Means of a GRID x GRID tiling of the image (edge rows/columns that do not fill a block are left out)."""
    br, bc = pixels.shape[0] // GRID, pixels.shape[1] // GRID
    b = pixels[:br * GRID, :bc * GRID].astype(np.float64).reshape(GRID, br, GRID, bc).mean(axis=(1, 3))
    return np.round(b, 3).tolist()


def _summary(study) -> dict:  # noqa: ANN001 - PhantomStudy
    return {view.value: {"shape": list(pv.pixels.shape), "dtype": str(pv.pixels.dtype),
                         "keypoints": np.round(pv.keypoints, 6).tolist(), "blocks": _blocks(pv.pixels)}
            for view, pv in study.views.items()}


def _file_summary(path: Path) -> dict:
    """The header without pixel data (hashed: it holds no float32 arithmetic) and the pixel blocks."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    del ds.PixelData
    header = json.dumps(ds.to_json_dict(), sort_keys=True).encode()
    return {"header_sha256": hashlib.sha256(header).hexdigest(), "blocks": _blocks(pixels)}


def _assert_summary_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for view in want:
        g, w = got[view], want[view]
        assert (g["shape"], g["dtype"]) == (w["shape"], w["dtype"]), view
        np.testing.assert_allclose(g["keypoints"], w["keypoints"], atol=1e-5, err_msg=view)
        np.testing.assert_allclose(g["blocks"], w["blocks"], atol=BLOCK_TOL, rtol=0, err_msg=view)


@pytest.mark.parametrize(("seed", "shape", "difficulty"), CASES)
def test_patient_default_xray_phantom_is_unchanged(seed: int, shape, difficulty: str) -> None:  # noqa: ANN001
    want = json.loads(REFERENCE.read_text())["cases"][_case_key(seed, shape, difficulty)]
    _assert_summary_close(_summary(generate_study(seed, shape=shape, difficulty=difficulty)), want)


def test_patient_default_xray_files_are_unchanged(tmp_path: Path) -> None:
    want = json.loads(REFERENCE.read_text())["files"]
    files = write_study(generate_study(3, shape=(256, 256)), tmp_path)
    got = {p.name: _file_summary(p) for p in files}
    assert got.keys() == want.keys()
    for name in want:
        assert got[name]["header_sha256"] == want[name]["header_sha256"], name
        np.testing.assert_allclose(got[name]["blocks"], want[name]["blocks"], atol=BLOCK_TOL, rtol=0, err_msg=name)


def test_patient_reference_tolerance_catches_real_changes() -> None:
    """The opt-in canal signs (a few mm of faint bone) must fail the comparison: the tolerance is not blind."""
    vp = virtual_patient(3)
    default = _summary(generate_study(3, shape=(256, 256)))
    anatomy = xray_anatomy(vp)
    with_signs = _summary(generate_study(3, shape=(256, 256), anatomy=anatomy))
    without = _summary(generate_study(3, shape=(256, 256), anatomy=xray_anatomy(vp, signs=False)))
    with pytest.raises(AssertionError):
        _assert_summary_close(with_signs, without)
    with pytest.raises(AssertionError):
        _assert_summary_close(without, default)


def _digest(study) -> str:  # noqa: ANN001 - PhantomStudy
    d = hashlib.sha256()
    for view, pv in study.views.items():
        d.update(view.value.encode())
        d.update(np.ascontiguousarray(pv.pixels).tobytes())
        d.update(np.round(pv.keypoints, 6).tobytes())
    return d.hexdigest()


@pytest.mark.parametrize("seed", [5, 9, 21])
def test_patient_xray_phantom_renders_the_mri_patient(seed: int) -> None:
    vp = virtual_patient(seed)
    anatomy = xray_anatomy(vp)
    study = generate_study(seed, shape=(256, 256), anatomy=anatomy)
    truth = {(m.key, m.site): m.value for m in study.views[next(iter(study.views))].truth}
    assert truth[("cobb_c2_c7", "C2-C7")] == pytest.approx(vp.cobb_c2_c7_deg, abs=0.05)
    for i, v in enumerate(("C2", "C3", "C4", "C5", "C6", "C7")):
        if ("pavlov_ratio", v) in truth:
            assert truth[("pavlov_ratio", v)] == pytest.approx(anatomy["pavlov"][i], abs=1e-6)
    assert study.params.osteophytes == tuple(bool(o) for o in anatomy["osteophytes"])
    assert _digest(study) != _digest(generate_study(seed, shape=(256, 256)))  # not the sampled patient


def test_patient_anatomy_is_validated() -> None:
    anatomy = dict(xray_anatomy(virtual_patient(1)))
    anatomy["pavlov"] = (0.8, 0.8)
    with pytest.raises(ValueError, match="pavlov"):
        generate_study(1, shape=(128, 128), anatomy=anatomy)


def test_patient_paired_phantom_studies_share_the_patient(tmp_path: Path) -> None:
    when = datetime(2026, 3, 2, 10, 15)
    xray, mri = paired_phantom_studies(9, tmp_path, xray_datetime=when, days_apart=7)
    assert len(xray) == 3 and len(mri) >= 7
    x = [pydicom.dcmread(p, stop_before_pixels=True) for p in xray]
    m = pydicom.dcmread(mri[0], stop_before_pixels=True)
    for ds in x:
        for kw in ("PatientID", "PatientName", "PatientSex", "PatientBirthDate"):
            assert ds.get(kw) == m.get(kw), kw
        assert (ds.StudyDate, ds.StudyTime) == ("20260302", "101500")
        assert ds.StudyInstanceUID == x[0].StudyInstanceUID != m.StudyInstanceUID
    assert m.PatientID == virtual_patient(9).patient_id
    assert (m.StudyDate, m.Modality, x[0].Modality) == ("20260309", "MR", "DX")
