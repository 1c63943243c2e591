"""Ground-truth ``StudyResult``s of the paired phantom studies (real types, real images on disk): a stand-in
for the X-ray and MRI pipelines in unit tests of the patient-level pairing."""

from __future__ import annotations

from pathlib import Path

import pydicom

from pipelines.phantoms.mri import generate_series
from pipelines.phantoms.paired import XRAY_SHAPE
from pipelines.phantoms.patient import virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study
from pipelines.results import KEYPOINT_NAMES, AlgorithmInfo, ImageResult, Keypoint, StudyResult

TRUTH = AlgorithmInfo(name="phantom ground truth", version="1")


def xray_truth(seed: int, files: list[Path]) -> StudyResult:
    """The X-ray phantom's true keypoints, measurements and findings, on the written files."""
    study = generate_study(seed, shape=XRAY_SHAPE, anatomy=xray_anatomy(virtual_patient(seed)))
    headers = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in files)}
    images = []
    for view, pv in study.views.items():
        uid = pv.sop_instance_uid
        images.append(ImageResult(
            image_uid=uid, series_uid=str(headers[uid].SeriesInstanceUID), view=view, rows=pv.shape[0],
            columns=pv.shape[1], pixel_spacing_mm=pv.pixel_spacing_mm,
            keypoints=[Keypoint(n, float(x), float(y), 0.0, uid) for n, (x, y) in zip(KEYPOINT_NAMES, pv.keypoints, strict=True)]))
    return StudyResult(study_uid=study.study_uid, pipeline="xray", algorithm=TRUTH, images=images,
                       measurements=list(study.truth), findings=list(study.findings))


def mri_truth(seed: int, files: list[Path]) -> StudyResult:
    """The MRI phantom's per-level truth, with the disc centres as keypoints on the mid-sagittal slice."""
    phantom = generate_series(seed, patient=virtual_patient(seed))
    ds = pydicom.dcmread(files[phantom.mid_slice], stop_before_pixels=True)
    uid = str(ds.SOPInstanceUID)
    image = ImageResult(image_uid=uid, series_uid=str(ds.SeriesInstanceUID), view=None, rows=int(ds.Rows),
                        columns=int(ds.Columns), pixel_spacing_mm=tuple(float(v) for v in ds.PixelSpacing),
                        keypoints=[Keypoint(f"{t.level} disc", t.disc_centre_px[0], t.disc_centre_px[1], 0.0, uid)
                                   for t in phantom.levels])
    return StudyResult(study_uid=str(ds.StudyInstanceUID), pipeline="mri", algorithm=TRUTH, images=[image],
                       findings=phantom.findings())
