"""A complete, realistic example without a trained model: a phantom study and its result objects.

``phantom_example(seed, out_dir)`` writes a synthetic neutral/flexion/extension DX study, builds the
``StudyResult`` a perfect keypoint model would give (keypoints = phantom truth, measurements =
``pipelines.xray.geometry`` on those keypoints with a 2 px spread for the intervals, findings from
``pipelines.xray.findings``) and returns both. Used by the tests, the OHIF viewer test and the docs::

    python -m pipelines.dicom_out.example OUT_DIR [--seed N] [--png docs/example_annotated.png]

writes the study, every result object (``results/*.dcm``) and optionally the annotated report picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from pipelines.results import KEYPOINT_NAMES, AlgorithmInfo, ImageResult, Keypoint, StudyResult, View
from pipelines.study import Study

ALGORITHM = AlgorithmInfo(
    name="cspine-xray-phantom-truth",
    version="0.1.0",
    model_card="example: keypoints are phantom ground truth (no model); research use only",
)
SIGMA_PX = 2.0


def _write_dx(pv, study, view: View, out_dir: Path, index: int) -> Path:
    """Minimal DX For Presentation writer (used only when the phantom has no DICOM writer yet)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = pv.sop_instance_uid
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = f"{study.study_uid}.{index + 1}"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Cspine", f"PH{study.seed}", "", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20260101", "120000", "", "", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "DX", index + 1, 1, "phantom"
    ds.SeriesDescription = f"C-spine lateral {view.value}"
    ds.BodyPartExamined, ds.ViewPosition, ds.PatientOrientation = "CSPINE", "LL", ["A", "F"]
    ds.ImageType, ds.PresentationIntentType = ["ORIGINAL", "PRIMARY"], "FOR PRESENTATION"
    ds.Rows, ds.Columns = pv.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, pv.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, pv.bits_stored, pv.bits_stored - 1, 0
    ds.ImagerPixelSpacing = list(pv.imager_pixel_spacing_mm)
    ds.EstimatedRadiographicMagnificationFactor = pv.magnification
    ds.PixelData = pv.pixels.astype(np.uint16).tobytes()
    path = out_dir / f"{view.value}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def phantom_example(seed: int, out_dir: Path, *, shape: tuple[int, int] | None = None) -> tuple[Study, StudyResult]:
    """Write a phantom DX study under ``out_dir`` and return it with its perfect-keypoint ``StudyResult``."""
    from pipelines.phantoms.xray import generate_study
    from pipelines.xray import geometry
    from pipelines.xray.findings import findings_from_measurements

    out_dir.mkdir(parents=True, exist_ok=True)
    ps = generate_study(seed, shape=shape)
    try:
        from pipelines.phantoms.dicom import write_study

        paths = write_study(ps, out_dir)
    except ModuleNotFoundError:  # the phantom's DICOM writer is optional
        paths = [_write_dx(pv, ps, v, out_dir, i) for i, (v, pv) in enumerate(ps.views.items())]
    study = Study.from_paths(paths)[0]
    result = StudyResult(study.study_uid, "xray", ALGORITHM)
    rng = np.random.default_rng(seed)
    sigma = np.full(len(KEYPOINT_NAMES), SIGMA_PX)
    for view, pv in ps.views.items():
        inst = next(i for i in study.instances if i.sop_instance_uid == pv.sop_instance_uid)
        ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        kps = [
            Keypoint(name, float(x), float(y), SIGMA_PX, pv.sop_instance_uid)
            for name, (x, y), vis in zip(KEYPOINT_NAMES, pv.keypoints, pv.visible, strict=True)
            if vis
        ]
        result.images.append(ImageResult(pv.sop_instance_uid, str(ds.SeriesInstanceUID), view, int(ds.Rows), int(ds.Columns), pv.pixel_spacing_mm, kps))
        result.measurements += geometry.measure_view(
            pv.keypoints, pv.pixel_spacing_mm, view=view, image_uid=pv.sop_instance_uid, sigma_px=sigma, rng=rng,
            n_samples=64, visible=pv.visible,
        )
    if View.FLEXION in ps.views and View.EXTENSION in ps.views:
        f, e = ps.views[View.FLEXION], ps.views[View.EXTENSION]
        result.measurements += geometry.measure_dynamic(
            f.keypoints, e.keypoints, f.pixel_spacing_mm, e.pixel_spacing_mm,
            image_uids=(f.sop_instance_uid, e.sop_instance_uid), sigma_px=(sigma, sigma), rng=rng, n_samples=64,
            visible=(f.visible, e.visible),
        )
    result.findings = findings_from_measurements(result.measurements)
    result.warnings.append("example: keypoints are phantom ground truth, not model output")
    return study, result


def main(argv: list[str] | None = None) -> int:
    from pipelines.dicom_out import encode
    from pipelines.dicom_out._sources import load_sources
    from pipelines.dicom_out.report import render

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--png", type=Path, help="also write the report page as PNG here")
    args = ap.parse_args(argv)
    study, result = phantom_example(args.seed, args.out_dir / "study")
    res_dir = args.out_dir / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(encode(study, result)):
        ds.save_as(res_dir / f"{i:02d}_{ds.Modality}.dcm", enforce_file_format=True)
    if args.png:
        from PIL import Image

        Image.fromarray(render(result, load_sources(study, result)).pixels).save(args.png)
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
