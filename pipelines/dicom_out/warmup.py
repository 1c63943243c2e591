"""Encode one small synthetic result at worker start, so the first study does not pay for first use.

The first ``encode`` of a process costs about a second more than the next ones (highdicom's and pydicom's lazily
loaded tables, Pillow's fonts, matplotlib's colormaps). ``warm_up`` pays it with a synthetic
64 x 64 radiograph written to a temporary folder (no phantom, no patient data) and a result holding one of each
thing the encoder writes: keypoints, a measurement, a finding, a mask and an explanation map.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipelines.results import (
    AlgorithmInfo,
    Finding,
    HeatMap,
    ImageResult,
    Keypoint,
    Mask,
    Measurement,
    StudyResult,
)
from pipelines.study import Study
from pipelines.vocabulary import KEYPOINT_NAMES, VERTEBRAE, View

_DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_SIZE = 64


def _radiograph(path: Path) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = _DX
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Warm^Up", "WARMUP", "", ""
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20260101", "", "", "", ""
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.PatientOrientation = "DX", "CSPINE", "LL", ["A", "F"]
    ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, 1, "warm-up"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType, ds.ImageLaterality = "FOR PRESENTATION", "U"
    ds.Rows = ds.Columns = _SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = (np.arange(_SIZE * _SIZE, dtype=np.uint16) % 4096).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def _result(ds: Dataset) -> StudyResult:
    uid = str(ds.SOPInstanceUID)
    keypoints = []
    for name in KEYPOINT_NAMES:
        level, role = name.split(" ", 1)
        top = 6 + 8 * VERTEBRAE.index(level)
        x = 20.0 if role == "spinolaminar" else (40.0 if role.startswith("antero") else 30.0)
        keypoints.append(Keypoint(name, x, top + (6.0 if role.endswith("inferior") else 0.0), 0.5, uid))
    mask = np.zeros((_SIZE, _SIZE), dtype=bool)
    mask[6:12, 30:40] = True
    heat = HeatMap("C3-C4 warm-up map", uid, "C3-C4", np.full((8, 8), 0.5, np.float32), (14, 28),
                   key="cord_compression", probability=0.5)
    image = ImageResult(uid, str(ds.SeriesInstanceUID), View.NEUTRAL, _SIZE, _SIZE, (0.5, 0.5), keypoints,
                        [Mask("C2 vertebral body", uid, mask)], [heat])
    cobb = Measurement("cobb_c2_c7", "C2-C7 Cobb angle", 10.0, "deg", "C2-C7", View.NEUTRAL, (8.0, 12.0), (uid,))
    finding = Finding("kyphosis", "Cervical kyphosis", "absent", "C2-C7", ("warm-up",), (("cobb_c2_c7", "C2-C7"),),
                      probability=0.1)
    return StudyResult(str(ds.StudyInstanceUID), "xray", AlgorithmInfo("warm-up", "0"), [image], [cobb], [finding])


def warm_up() -> float:
    """Encode the synthetic result (every object, written to bytes once); returns the seconds it took."""
    from io import BytesIO

    from pipelines.dicom_out import encode

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cspine-warmup-") as tmp:
        path = Path(tmp) / "warmup.dcm"
        ds = _radiograph(path)
        (study,) = Study.from_paths([path])
        for obj in encode(study, _result(ds), now=datetime.now(UTC)):
            obj.save_as(BytesIO(), enforce_file_format=True)
    return time.perf_counter() - t
