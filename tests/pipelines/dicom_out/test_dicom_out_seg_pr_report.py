"""SEG (radiograph without plane geometry, MR with it), GSPS drawing, report SC/PDF."""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.dicom_out.graphics import (
    figure_graphics,
    keypoint_graphics,
    keypoints_by_name,
    vertebra_polygon,
)
from pipelines.dicom_out.seg import rasterize
from pipelines.results import VERTEBRAE, StudyResult, View
from pipelines.study import Study


def _of(objects: list[Dataset], modality: str) -> list[Dataset]:
    return [o for o in objects if o.Modality == modality]


def test_seg_radiograph(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset]) -> None:
    _, result = xray_case
    for seg_ds in _of(xray_objects, "SEG"):
        seg = hd.seg.Segmentation.from_dataset(seg_ds)
        src_uid = seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        image = next(i for i in result.images if i.image_uid == src_uid)
        labels = [d.SegmentLabel for d in seg_ds.SegmentSequence]
        kp = keypoints_by_name(image)
        present = [v for v in VERTEBRAE if vertebra_polygon(kp, v) is not None]  # C7 may hide behind shoulders
        assert len(present) >= 5
        assert labels == [f"{v} vertebral body" for v in present] + ["spinal canal"]
        assert seg_ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "113205007"  # C3 vertebra
        assert "FrameOfReferenceUID" not in seg_ds and seg_ds.PatientOrientation
        masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=[src_uid], combine_segments=False)[0]
        for n, v in enumerate(present):
            truth = rasterize(vertebra_polygon(kp, v), image.rows, image.columns)
            assert np.array_equal(masks[..., n].astype(bool), truth), v
        canal = masks[..., len(present)].astype(bool)
        assert canal.sum() > 0 and not (canal & masks[..., : len(present)].any(axis=-1)).any()


def test_seg_mri_references_slices(mri_case: tuple[Study, StudyResult], now: datetime) -> None:
    study, result = mri_case
    (seg_ds,) = _of(encode(study, result, now=now), "SEG")
    assert seg_ds.FrameOfReferenceUID == study.instances[0].read(pixels=False).FrameOfReferenceUID
    refs = {r.ReferencedSOPInstanceUID for r in seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    with_masks = {m.image_uid for i in result.images for m in i.masks}
    assert refs == with_masks
    assert [d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for d in seg_ds.SegmentSequence] == ["C4/C5 disc"]


def test_gsps_draws_figure(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset]) -> None:
    _, result = xray_case
    for pr in _of(xray_objects, "PR"):
        layers = {a.GraphicLayer: a for a in pr.GraphicAnnotationSequence}
        assert set(layers) == {"KEYPOINTS", "LINES", "LABELS"}
        polylines = [g for g in layers["KEYPOINTS"].GraphicObjectSequence if g.GraphicType == "POLYLINE"]
        dots = [g for g in layers["KEYPOINTS"].GraphicObjectSequence if g.GraphicType == "CIRCLE"]
        image = next(i for i in result.images if i.image_uid == layers["KEYPOINTS"].ReferencedImageSequence[0].ReferencedSOPInstanceUID)
        # one outline per complete vertebral body + the spinolaminar line; one dot per keypoint (also lone ones)
        outlines = [g for _, _, g in keypoint_graphics(image) if g.kind == "POLYLINE"]
        assert len(polylines) == len(outlines) >= 6 and len(dots) == len(image.keypoints)
        n_lines = len(layers["LINES"].GraphicObjectSequence)
        assert n_lines == sum(layer == "lines" for layer, _ in figure_graphics(image, result.measurements))
        if image.view == View.NEUTRAL:
            assert n_lines == 3  # two Cobb endplate lines + the SVA plumb line
        texts = [t.UnformattedTextValue for t in layers["LABELS"].TextObjectSequence]
        kp = keypoints_by_name(image)
        assert {v for v in VERTEBRAE if vertebra_polygon(kp, v) is not None} <= set(texts)
        assert any("Cobb angle: " in t and t.endswith(" deg") for t in texts)
        assert "RESEARCH USE ONLY - NOT FOR DIAGNOSIS" in texts
        assert all(g.GraphicAnnotationUnits == "PIXEL" for g in polylines)
        pts = np.asarray(polylines[0].GraphicData).reshape(-1, 2)
        assert (pts[:, 0] <= image.columns).all() and (pts[:, 1] <= image.rows).all()
        assert pr.SoftcopyVOILUTSequence[0].WindowWidth > 0


def test_report_sc_and_pdf(xray_objects: list[Dataset]) -> None:
    (sc,) = _of(xray_objects, "OT")
    px = sc.pixel_array
    assert sc.PhotometricInterpretation == "RGB" and px.shape == (sc.Rows, sc.Columns, 3)
    assert sc.Rows > sc.Columns > 800  # A4 portrait page
    assert px.std() > 20  # a picture, not a blank page
    assert sc.BurnedInAnnotation == "NO"
    (doc,) = _of(xray_objects, "DOC")
    assert doc.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(doc.EncapsulatedDocument[:5]) == b"%PDF-"
    assert len(doc.EncapsulatedDocument) % 2 == 0 and doc.EncapsulatedDocumentLength <= len(doc.EncapsulatedDocument)
