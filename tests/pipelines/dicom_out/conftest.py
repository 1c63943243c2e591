"""Shared inputs for the dicom_out tests: a phantom study with its perfect-keypoint result, encoded once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipelines.dicom_out import encode
from pipelines.dicom_out.example import phantom_example
from pipelines.results import AlgorithmInfo, Finding, ImageResult, Keypoint, Mask, Measurement, StudyResult
from pipelines.study import Study
from tests.services import in_ci

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="session")
def now() -> datetime:
    """The fixed encoding time of the shared objects."""
    return NOW


@pytest.fixture(scope="session")
def xray_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, StudyResult]:
    """Neutral/flexion/extension phantom (seed 5, 1024x832 px) with keypoints = truth, geometry measurements."""
    return phantom_example(5, tmp_path_factory.mktemp("phantom"), shape=(1024, 832))


@pytest.fixture(scope="session")
def xray_objects(xray_case: tuple[Study, StudyResult]) -> list[Dataset]:
    study, result = xray_case
    return encode(study, result, now=NOW)


@pytest.fixture(scope="session")
def xray_files(xray_objects: list[Dataset], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The encoded objects written to disk, by Modality (SR, SEG, PR, OT, DOC)."""
    out = tmp_path_factory.mktemp("objects")
    files: dict[str, list[Path]] = {}
    for i, ds in enumerate(xray_objects):
        p = out / f"{i:02d}_{ds.Modality}.dcm"
        ds.save_as(p, enforce_file_format=True)
        files.setdefault(str(ds.Modality), []).append(p)
    return files


def _mr_slice(study_uid: str, series_uid: str, for_uid: str, k: int, rows: int = 64, cols: int = 48) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Mr^Phantom", "MR1", "19600101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20260101", "100000", "ACC9", "", "9"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "MR", 3, k + 1, "phantom"
    ds.SeriesDescription = "SAG T2"
    ds.BodyPartExamined = "CSPINE"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength, ds.SliceThickness = 3000, 100, 16, 3.0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-3.0 + 3.0 * k, -100.0, 100.0]
    ds.PixelSpacing = [0.8, 0.8]
    ds.PositionReferenceIndicator = ""
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(k).integers(0, 4000, (rows, cols), dtype=np.uint16).tobytes()
    return ds


@pytest.fixture(scope="session")
def mri_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, StudyResult]:
    """A 3-slice sagittal MR series (plane geometry) with a disc point, disc masks and a graded finding."""
    out = tmp_path_factory.mktemp("mri")
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    paths = []
    slices = [_mr_slice(study_uid, series_uid, for_uid, k) for k in range(3)]
    for k, ds in enumerate(slices):
        paths.append(out / f"mr{k}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    study = Study.from_paths(paths)[0]
    mid = slices[1]
    disc = np.zeros((64, 48), bool)
    disc[30:36, 10:30] = True
    images = [
        ImageResult(s.SOPInstanceUID, series_uid, None, 64, 48, (0.8, 0.8)) for s in slices
    ]
    images[1].keypoints = [Keypoint("C4-C5 disc", 20.0, 33.0, 1.0, mid.SOPInstanceUID)]
    images[1].masks = [Mask("C4-C5 disc", mid.SOPInstanceUID, disc)]
    images[2].masks = [Mask("C4-C5 disc", slices[2].SOPInstanceUID, np.roll(disc, 1, axis=0))]
    result = StudyResult(
        study_uid, "mri", AlgorithmInfo("cspine-mri-grading", "0.0.1"), images,
        measurements=[Measurement("disc_height", "Disc height", 4.8, "mm", "C4-C5 disc", None, (4.2, 5.3), (mid.SOPInstanceUID,), ("C4-C5 disc",))],
        findings=[Finding("disc_degeneration", "Intervertebral disc degeneration", "protrusion", "C4-C5 disc", probability=0.81)],
    )
    return study, result


def _dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (r.stdout + r.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


@pytest.fixture(scope="session")
def dciodvfy() -> Callable[[Path], tuple[list[str], list[str]]]:
    """``dciodvfy(path) -> (error lines, warning lines)`` of dicom3tools' validator (skip/fail if missing)."""
    if shutil.which("dciodvfy") is None:
        if in_ci():
            pytest.fail("dciodvfy missing (apt-get install dicom3tools) - CI=true, so this is a failure")
        pytest.skip("dciodvfy missing (apt-get install dicom3tools)")
    return _dciodvfy
