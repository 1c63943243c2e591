"""The DICOM files the phantoms write: DX For Presentation radiographs and MR Image Storage series.

Both are what a modality would send (Explicit VR Little Endian unless asked otherwise), with stable UIDs derived
from the seed, the equipment ``cspine-node phantom`` at institution ``Synthetic`` and body part ``CSPINE``.
pydicom is imported only when a file is written.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.vocabulary import View

if TYPE_CHECKING:
    from pydicom.dataset import Dataset, FileMetaDataset

    from pipelines.phantoms.mri.series import MriPhantom
    from pipelines.phantoms.xray.render import PhantomView
    from pipelines.phantoms.xray.study import PhantomStudy

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
XRAY_MODEL_NAME = "cspine-node xray phantom"
"""ManufacturerModelName of renderer A's radiographs (a study class may name its own: ``model_name``)."""
MRI_MODEL_NAME = "mri-phantom"
"""ManufacturerModelName of renderer A's MR series (``write_series(model_name=...)`` for another renderer)."""
VIEW_LABELS: dict[View, str] = {View.NEUTRAL: "NEUTRAL", View.FLEXION: "FLEXION", View.EXTENSION: "EXTENSION"}
"""Text written for each view (SeriesDescription, ImageComments, AcquisitionDeviceProcessingDescription)."""


def seeded_uid(rng: np.random.Generator) -> str:
    """A deterministic UID under the UUID-derived root 2.25 (seeded)."""
    return "2.25." + str(int.from_bytes(rng.bytes(15), "big"))


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _phantom_equipment(ds: Dataset) -> None:
    """The attributes every phantom file shares (character set, equipment, institution, body part)."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Manufacturer = "cspine-node phantom"
    ds.InstitutionName = "Synthetic"
    ds.ReferringPhysicianName = ""
    ds.StationName = "PHANTOM"
    ds.BodyPartExamined = "CSPINE"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


# ------------------------------------------------------------------------------------------------ X-ray
def view_dataset(study: PhantomStudy, pv: PhantomView, *, patient_id: str | None = None,
                 series_number: int = 1, transfer_syntax: str | None = None,
                 study_datetime: _dt.datetime | None = None) -> Dataset:
    """The DX For Presentation dataset of one phantom view.

    The view label goes into (a) ``ViewCodeSequence`` = SCT 399173006/399198007 left/right lateral with a
    ``ViewModifierCodeSequence`` of SCT 9964006 "Flexion" or 24154002 "Extension" (none for neutral), and
    (b) the texts ``SeriesDescription`` ("C-SPINE LAT FLEXION"), ``ImageComments`` and
    ``AcquisitionDeviceProcessingDescription``. Each view is its own series (as most DX/CR modalities send
    separate exposures), all in one study. ManufacturerModelName names the renderer (``study.model_name``, else
    renderer A's); a view that went through a lossy shift (``pv.lossy``) says LossyImageCompression "01" with
    its ratios and methods.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    ts = UID(transfer_syntax or ExplicitVRLittleEndian)
    rng = np.random.default_rng([study.seed, 99, list(View).index(pv.view)])
    p = study.params
    date = _dt.date(2024, 1, 1) + _dt.timedelta(days=int(study.seed % 700))
    time_s = f"{9 + study.seed % 8:02d}{(study.seed * 7) % 60:02d}{(series_number * 13) % 60:02d}"
    study_time = f"{9 + study.seed % 8:02d}0000"
    if study_datetime is not None:  # opt-in: a given study date/time (series a few seconds apart)
        date = study_datetime.date()
        study_time = study_datetime.strftime("%H%M%S")
        time_s = (study_datetime + _dt.timedelta(seconds=13 * series_number)).strftime("%H%M%S")
    pid = patient_id or f"PHANTOM-{study.seed:06d}"

    ds = Dataset()
    ds.file_meta = _file_meta(DX_FOR_PRESENTATION, pv.sop_instance_uid)
    _phantom_equipment(ds)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = pv.sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date.strftime("%Y%m%d")
    ds.StudyTime = study_time
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time_s
    ds.AccessionNumber = f"ACC{study.seed:07d}"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.StudyDescription = "XR CERVICAL SPINE FLEX/EXT"
    label = VIEW_LABELS[pv.view]
    ds.SeriesDescription = f"C-SPINE LAT {label}"
    ds.ManufacturerModelName = getattr(study, "model_name", XRAY_MODEL_NAME)
    ds.PatientName = f"Phantom^{study.seed:06d}"
    ds.PatientID = pid
    ds.PatientBirthDate = f"{1950 + study.seed % 40}0101"
    ds.PatientSex = "M" if study.seed % 5 < 3 else "F"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "cspine-node-phantom-1"
    ds.AcquisitionDeviceProcessingDescription = f"C-SPINE LATERAL {label}"
    ds.ImagerPixelSpacing = [f"{v:.6g}" for v in pv.imager_pixel_spacing_mm]
    ds.PixelSpacing = [f"{v / pv.magnification:.6g}" for v in pv.imager_pixel_spacing_mm]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Imager pixel spacing / estimated radiographic magnification"
    ds.EstimatedRadiographicMagnificationFactor = f"{pv.magnification:.6g}"
    ds.DistanceSourceToDetector = "1800"
    ds.DistanceSourceToPatient = f"{1800 / pv.magnification:.1f}"
    ds.KVP = str(int(rng.integers(65, 85)))
    ds.ExposureTime = str(int(rng.integers(10, 40)))
    ds.XRayTubeCurrent = str(int(rng.integers(200, 400)))
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorID = "PHANTOM-DET"
    ds.PositionerType = "NONE"
    ds.ViewPosition = "LL"
    view_code = _code("399173006", "SCT", "left lateral")
    if pv.view == View.FLEXION:
        view_code.ViewModifierCodeSequence = [_code("9964006", "SCT", "Flexion")]
    elif pv.view == View.EXTENSION:
        view_code.ViewModifierCodeSequence = [_code("24154002", "SCT", "Extension")]
    else:
        view_code.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [view_code]
    ds.AnatomicRegionSequence = [_code("122494005", "SCT", "Cervical spine")]
    ds.PatientOrientation = ["A" if p.facing > 0 else "P", "F"]
    ds.ImageLaterality = "U"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = seeded_uid(np.random.default_rng([study.seed, 11, series_number]))
    ds.StudyID = f"{study.seed % 100000}"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImageComments = f"Synthetic phantom, view: {label}"
    ds.BurnedInAnnotation = "YES" if p.images[pv.view].text else "NO"
    lossy = tuple(getattr(pv, "lossy", ()))
    ds.LossyImageCompression = "01" if lossy else "00"  # once lossy, always "01" (PS3.3 C.7.6.1.1.5)
    if lossy:
        ds.LossyImageCompressionRatio = [f"{ratio:.2f}" for ratio, _ in lossy]
        ds.LossyImageCompressionMethod = [method for _, method in lossy]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = pv.photometric
    ds.Rows, ds.Columns = pv.shape
    ds.BitsAllocated = 16
    ds.BitsStored = pv.bits_stored
    ds.HighBit = pv.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if pv.photometric == "MONOCHROME2" else 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if pv.photometric == "MONOCHROME2" else "INVERSE"
    lo, hi = np.percentile(pv.pixels[::4, ::4], [1, 99])
    ds.WindowCenter = f"{(lo + hi) / 2:.0f}"
    ds.WindowWidth = f"{max(hi - lo, 16):.0f}"
    # VOILUTFunction is left out: LINEAR is its default, and OHIF 3.13 refuses to display DX images that carry it
    ds.QualityControlImage = "NO"
    ds.AcquisitionContextSequence = []
    ds.PatientIdentityRemoved = "NO"
    ds.PixelData = np.ascontiguousarray(pv.pixels, dtype="<u2").tobytes()
    if ts.is_compressed:
        ds.compress(ts, arr=pv.pixels)
    elif ts != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ts
    return ds


def write_study(study: PhantomStudy, out_dir: Path, *, patient_id: str | None = None,
                transfer_syntax: str = "1.2.840.10008.1.2.1", study_datetime: _dt.datetime | None = None) -> list[Path]:
    """Write each view as a DX For Presentation DICOM file ``<view>.dcm`` into ``out_dir``.

    ``transfer_syntax`` defaults to Explicit VR Little Endian; compressed syntaxes supported by pydicom's
    encoders (RLE Lossless, JPEG-LS / JPEG 2000 lossless where installed) also work.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (view, pv) in enumerate(study.views.items(), start=1):
        ds = view_dataset(study, pv, patient_id=patient_id, series_number=n, transfer_syntax=transfer_syntax,
                          study_datetime=study_datetime)
        path = out_dir / f"{view.value}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------ MRI
@dataclass
class SagittalSeries:
    """One sagittal MR series ready for ``write_series``: the attributes it reads, with the written geometry
    (``orientation``: ImageOrientationPatient; ``positions``: (slices, 3) ImagePositionPatient, written order)."""

    patient: object
    weighting: str
    volume: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    spacing_between_slices_mm: float
    slice_positions_mm: tuple[float, ...]
    orientation: Sequence[float]
    positions: np.ndarray


def write_series(phantom: MriPhantom, out_dir: Path, *, study_uid: str | None = None, patient_id: str | None = None,
                 series_number: int | None = None, study_datetime: _dt.datetime | None = None,
                 orientation: Sequence[float] | None = None, positions: np.ndarray | None = None,
                 uid_key: str | None = None, model_name: str = MRI_MODEL_NAME) -> list[Path]:
    """Write one MR Image Storage file per slice into ``out_dir``; return the paths (slice order).

    UIDs are derived from the seed (stable across runs) unless ``study_uid`` is given. The patient is
    ``PHANTOM^<patient id>``; Patient ID defaults to ``phantom.patient.patient_id``. Any object with the
    attributes read here can be written (renderer A's ``MriPhantom``, renderer B's ``SeriesB``); weighting
    ``T2``, ``T1`` or ``STIR``. The plane geometry defaults to renderer A's (sagittal ``[0, 1, 0, 0, 0, -1]``, the
    field of view centred on the patient origin); an oblique or flipped series passes its own ``orientation``
    (ImageOrientationPatient) and ``positions`` ((slices, 3) ImagePositionPatient in written order). ``uid_key``
    (default ``cspine-mri-<seed>``) seeds the UIDs, so that two renderers with the same seed do not collide;
    ``model_name`` is the ManufacturerModelName (the renderer's).
    """
    from pydicom.dataset import FileDataset
    from pydicom.uid import generate_uid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = phantom.patient
    pid = patient_id or p.patient_id
    key = uid_key or f"cspine-mri-{p.seed}"
    study_uid = study_uid or generate_uid(entropy_srcs=[key, "study"])
    wt = phantom.weighting
    series_uid = generate_uid(entropy_srcs=[key, study_uid, "series", wt])
    for_uid = generate_uid(entropy_srcs=[key, study_uid, "frame-of-reference"])
    when = study_datetime or _dt.datetime(2026, 1, 5, 9, 30) + _dt.timedelta(days=p.seed % 300)
    series_number = series_number or {"T2": 2, "T1": 3, "STIR": 4}.get(wt, 5)
    rows, cols = phantom.volume.shape[1:]
    ps = phantom.pixel_spacing_mm
    fov_v = rows * ps[0]
    paths = []
    tr, te = {"T2": (3200.0, 105.0), "STIR": (3500.0, 60.0)}.get(wt, (550.0, 9.0))
    for k in range(phantom.volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[key, series_uid, str(k)])
        path = out_dir / f"{wt}_{k + 1:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=_file_meta(MR_IMAGE_STORAGE, sop_uid), preamble=b"\0" * 128)
        _phantom_equipment(ds)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
        ds.AccessionNumber = f"A{p.seed:07d}"
        ds.Modality = "MR"
        ds.StudyDescription = "MRI CERVICAL SPINE"
        ds.SeriesDescription = f"{wt} SAG"
        ds.ManufacturerModelName = model_name
        ds.PatientName = f"PHANTOM^{pid}"
        ds.PatientID = pid
        ds.PatientBirthDate = f"{when.year - p.age}0101"
        ds.PatientSex = p.sex
        ds.PatientAge = f"{p.age:03d}Y"
        ds.ScanningSequence = ["SE", "IR"] if wt == "STIR" else ["SE"]
        ds.SequenceVariant = ["SK"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = f"{phantom.slice_thickness_mm:.2f}"
        ds.RepetitionTime = f"{tr:.1f}"
        ds.EchoTime = f"{te:.1f}"
        ds.EchoTrainLength = 16 if wt in ("T2", "STIR") else 3
        if wt == "STIR":
            ds.InversionTime = "160.0"
        ds.MagneticFieldStrength = "1.5"
        ds.SpacingBetweenSlices = f"{phantom.spacing_between_slices_mm:.2f}"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = f"{p.seed % 100000}"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        x = phantom.slice_positions_mm[k]
        # centre the field of view on the patient origin: top-left pixel centre
        if positions is None:
            ds.ImagePositionPatient = [f"{x:.4f}", f"{-cols * ps[1] / 2:.4f}", f"{fov_v / 2:.4f}"]
        else:
            ds.ImagePositionPatient = [f"{float(v):.4f}" for v in positions[k]]
        ds.ImageOrientationPatient = (["0", "1", "0", "0", "0", "-1"] if orientation is None
                                      else [f"{float(v):.6f}" for v in orientation])
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{x:.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{ps[0]:.6f}", f"{ps[1]:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "1000"
        ds.WindowWidth = "2000"
        ds.PixelData = phantom.volume[k].astype("<u2").tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

