"""dicom3tools' dciodvfy on every object kind (X-ray and MRI): no Error lines; warnings are printed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.results import StudyResult
from pipelines.study import Study

Validator = Callable[[Path], tuple[list[str], list[str]]]


@pytest.mark.integration
@pytest.mark.parametrize("modality", ["SR", "SEG", "PR", "OT", "DOC"])
def test_xray_objects_valid(modality: str, xray_files: dict[str, list[Path]], dciodvfy: Validator) -> None:
    for path in xray_files[modality]:
        errors, warnings = dciodvfy(path)
        print(f"{modality} {path.name}: {len(warnings)} warnings", *sorted(set(warnings)), sep="\n  ")
        assert errors == [], errors


@pytest.mark.integration
def test_mri_objects_valid(mri_case: tuple[Study, StudyResult], tmp_path: Path, dciodvfy: Validator, now: datetime) -> None:
    study, result = mri_case
    objects: list[Dataset] = encode(study, result, now=now)
    assert [o.Modality for o in objects] == ["SR", "SEG", "PR", "OT", "DOC"]
    for i, ds in enumerate(objects):
        p = tmp_path / f"{i}_{ds.Modality}.dcm"
        ds.save_as(p, enforce_file_format=True)
        errors, warnings = dciodvfy(p)
        print(f"MRI {ds.Modality}: {len(warnings)} warnings", *sorted(set(warnings)), sep="\n  ")
        assert errors == [], (ds.Modality, errors)
