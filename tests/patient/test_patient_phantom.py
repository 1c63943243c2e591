"""The X-ray phantom of an MRI virtual patient (opt-in ``anatomy``) and the paired phantom studies.

The default X-ray phantom output must not change: the hashes below were computed before the opt-in
parameters were added to ``pipelines/xray/phantom.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.mri.paired_phantom import paired_phantom_studies
from pipelines.mri.phantom import virtual_patient, xray_anatomy
from pipelines.xray.phantom import generate_study, write_study

BEFORE = {  # sha256 of views' pixels + keypoints, computed on the unedited phantom
    (3, ((256, 256), "realistic")): "729ee2a2e00107e3fc1ea0dd606b5164912c6ce0d42eeef632a2278991a4815a",
    (11, ((320, 288), "hard")): "1e8647fbda0b1592c8a2f6bc8e738ee170fbaee04345e7be240811591ccad5f3",
    (7, (None, "realistic")): "f628423810c49501125e69561ef395b5f222fcfad9c9fff5a4fb81150755d66d",
}
FILES_BEFORE = {  # sha256 of write_study(generate_study(3, shape=(256, 256))) files, unedited phantom
    "neutral.dcm": "6f6099f746da01cd3b6a7cd0da3f1c289fc5dedc696fb7f2ad1c473f4ebf45c1",
    "flexion.dcm": "2b03b4dae3cec947c1ade96f5486a91b57571605e73a2e3ef45837f4a74485c9",
    "extension.dcm": "24dacb5600d1e907e2ad6b13394b19df7809310145d4106b2aa87148241ec7e3",
}


def _digest(study) -> str:  # noqa: ANN001 - PhantomStudy
    d = hashlib.sha256()
    for view, pv in study.views.items():
        d.update(view.value.encode())
        d.update(np.ascontiguousarray(pv.pixels).tobytes())
        d.update(np.round(pv.keypoints, 6).tobytes())
    return d.hexdigest()


@pytest.mark.parametrize(("seed", "shape", "difficulty"), [(s, sh, d) for s, (sh, d) in BEFORE])
def test_patient_default_xray_phantom_is_unchanged(seed: int, shape, difficulty: str) -> None:  # noqa: ANN001
    assert _digest(generate_study(seed, shape=shape, difficulty=difficulty)) == BEFORE[(seed, (shape, difficulty))]


def test_patient_default_xray_files_are_unchanged(tmp_path: Path) -> None:
    files = write_study(generate_study(3, shape=(256, 256)), tmp_path)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == FILES_BEFORE


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
