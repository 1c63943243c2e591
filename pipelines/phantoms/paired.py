"""An X-ray study and an MRI study of the *same* virtual patient (for the patient-level report, issue 6).

``virtual_patient(seed)`` drives both: the MRI phantom renders it directly, the X-ray phantom renders its
anatomy (``xray_anatomy``: body sizes, disc heights, segment angles, Pavlov ratios, osteophytes). Both
studies carry the same Patient ID, name, sex and birth date, with the MRI ``days_apart`` days after the
radiographs, so that the node pairs them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pydicom

from pipelines.phantoms.dicom import write_series, write_study
from pipelines.phantoms.mri import generate_series
from pipelines.phantoms.outcome import outcome_case
from pipelines.phantoms.patient import virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study
from pipelines.vocabulary import View

XRAY_SHAPE: tuple[int, int] = (768, 640)
"""Default radiograph size (rows, columns) of the pair: small enough for fast tests, large enough for the model."""


def paired_phantom_studies(
    seed: int,
    out_dir: Path,
    *,
    patient_id: str | None = None,
    xray_datetime: datetime | None = None,
    days_apart: float = 7.0,
    xray_shape: tuple[int, int] | None = XRAY_SHAPE,
    mri_shape: tuple[int, int] = (256, 256),
    outcome: bool = False,
) -> tuple[list[Path], list[Path]]:
    """Write the radiographs (neutral, flexion, extension) under ``out_dir/xray`` and a T2 sagittal MR
    series under ``out_dir/mri`` of virtual patient ``seed``; return ``(xray_files, mri_files)``.

    ``patient_id`` defaults to the virtual patient's id; ``xray_datetime`` to a date derived from the seed.
    ``outcome`` (opt-in): render what the synthetic neck-pain outcome needs (the Modic-like endplate marrow of
    ``pipelines.phantoms.outcome``) and write that outcome as ``out_dir/outcome.json``.
    """
    vp = virtual_patient(seed, patient_id=patient_id)
    pid = vp.patient_id
    when = xray_datetime or datetime(2026, 1, 5, 9, 30) + timedelta(days=seed % 300)
    xray = generate_study(seed, shape=xray_shape, anatomy=xray_anatomy(vp))
    xray_files = [Path(p) for p in write_study(xray, Path(out_dir) / "xray", patient_id=pid, study_datetime=when)]
    marrow = None
    if outcome:
        got = {m.key: m.value for m in xray.truth if m.view == View.NEUTRAL}
        case = outcome_case(seed, vp, (float(got["cobb_c2_c7"]), float(got["sva_c2_c7"])))
        marrow = case.endplate_marrow
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "outcome.json").write_text(json.dumps(case.to_dict(), indent=1))
    mri = generate_series(seed, patient=vp, shape=mri_shape, endplate_marrow=marrow)
    mri_files = [Path(p) for p in write_series(mri, Path(out_dir) / "mri", patient_id=pid,
                                               study_datetime=when + timedelta(days=days_apart))]
    ref = pydicom.dcmread(mri_files[0], stop_before_pixels=True)
    for path in xray_files:  # one patient: the X-ray phantom draws its own name/sex/birth date from the seed
        ds = pydicom.dcmread(path)
        for kw in ("PatientName", "PatientSex", "PatientBirthDate"):
            setattr(ds, kw, ref.get(kw, ""))
        ds.save_as(path, enforce_file_format=True)
    return xray_files, mri_files
