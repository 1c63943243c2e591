"""Hand-made DICOM test data for the node tests (small DX/CR/MR/CT datasets; no patient data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_image(
    study_uid: str | None = None, *, series_uid: str | None = None, sop_uid: str | None = None,
    sop_class: str = DX_PRESENTATION, modality: str = "DX", rows: int = 64, cols: int = 64,
    body_part: str = "CSPINE", view: str = "LL", seed: int = 0, orientation: tuple[float, ...] | None = None,
) -> Dataset:
    """A small valid 16-bit monochrome image dataset with file meta (Explicit VR Little Endian)."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientName = "Test^Secret"
    ds.PatientID = "SECRET-ID-123"
    ds.StudyDate = "20260101"
    ds.BodyPartExamined = body_part
    if view:
        ds.ViewPosition = view
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.15, 0.15]
    ds.PixelData = rng.integers(0, 4095, size=(rows, cols), dtype=np.uint16).tobytes()
    return ds


def write_image(path: Path, ds: Dataset) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_study_files(out_dir: Path, n: int, *, study_uid: str | None = None, **kw) -> tuple[str, list[Path]]:
    """``n`` DX files of one study (one series) written under ``out_dir``."""
    study_uid = study_uid or generate_uid()
    series = generate_uid()
    paths = [write_image(Path(out_dir) / f"img{i:04d}.dcm", make_image(study_uid, series_uid=series, seed=i, **kw))
             for i in range(n)]
    return study_uid, paths


def phantom_study_files(out_dir: Path, seed: int = 0, *, shape: tuple[int, int] | None = (768, 640)) -> tuple[str, list[Path]]:
    """A real phantom lateral cervical study (neutral, flexion, extension DX) from ``pipelines.phantoms.xray``."""
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.xray import generate_study

    study = generate_study(seed, shape=shape)
    return study.study_uid, [Path(p) for p in write_study(study, Path(out_dir))]
