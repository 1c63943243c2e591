"""Reading corrections: the SR OHIF 3.13.2 really saved (tests/fixtures/ohif_saved_sr.dcm, recorded by
tests/integration/record_ohif_sr.py) and hand-made variants of it, matched against the node's keypoints."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pipelines.corrections import (
    CORNER_NAMES,
    UnreadableSR,
    apply_correction,
    empty_document,
    keypoint_from_label,
    match_corrections,
    read_annotations,
    read_annotations_bytes,
)
from pipelines.results import AlgorithmInfo, ImageResult, Keypoint, Measurement, StudyResult
from pipelines.vocabulary import View

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SR_FILE = FIXTURES / "ohif_saved_sr.dcm"
SIDECAR = json.loads((FIXTURES / "ohif_saved_sr.json").read_text())
IMAGE_UID = SIDECAR["referenced_image"]


def _result() -> StudyResult:
    """The node's result for the recorded image: the phantom's corners (what the recorder aimed near)."""
    kps = [Keypoint(n, x, y, 1.0, IMAGE_UID) for n, (x, y) in SIDECAR["keypoints"].items()]
    rows, cols = SIDECAR["image_size"]
    img = ImageResult(IMAGE_UID, "1.2.3.4", View.NEUTRAL, rows, cols, tuple(SIDECAR["pixel_spacing_mm"]), kps)
    cobb = Measurement("cobb_c2_c7", "C2-C7 Cobb angle", 12.0, "deg", "C2-C7", View.NEUTRAL, image_uids=(IMAGE_UID,),
                       keypoints=("C2 antero-inferior", "C2 postero-inferior", "C7 antero-inferior", "C7 postero-inferior"))
    sdvb = Measurement("sdvb", "SDVB", 15.0, "mm", "C3", View.NEUTRAL, image_uids=(IMAGE_UID,),
                       keypoints=("C3 postero-superior", "C3 postero-inferior"))
    return StudyResult(SIDECAR["study_uid"], "xray", AlgorithmInfo("xray_keypoints", "9.9.9"), images=[img],
                       measurements=[cobb, sdvb])


def _ds() -> Dataset:
    return pydicom.dcmread(SR_FILE)


def _groups(ds: Dataset) -> list[Dataset]:
    imaging = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(imaging.ContentSequence)


def _scoord(group: Dataset) -> Dataset:
    num = next(it for it in group.ContentSequence if it.ValueType == "NUM")
    return num.ContentSequence[0]


def test_reads_what_ohif_wrote() -> None:
    sr = read_annotations(_ds())
    assert sr.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.22"  # OHIF saves Enhanced SR
    assert sr.study_uid == SIDECAR["study_uid"] and not sr.own and sr.from_ohif
    assert sr.referenced_images == (IMAGE_UID,)
    assert [(a.tool, a.graphic_type, len(a.points), a.label) for a in sr.annotations] == [
        ("Length", "POLYLINE", 2, ""), ("Probe", "POINT", 1, ""), ("Probe", "POINT", 1, ""),
        ("ArrowAnnotate", "POLYLINE", 2, "C5 PS")]  # the arrow: tip then tail, its text as a TEXT Comment
    # where the mouse aimed (DICOM image coordinates) is where OHIF stored the points, to the canvas pixel
    for a, aimed in zip(sr.annotations, SIDECAR["aimed"], strict=True):
        n = len(aimed["image"])
        assert np.abs(a.points[:n] + 0.5 - np.asarray(aimed["image"])).max() < 1.5
    assert all(a.image_uid == IMAGE_UID and a.tracking_uid for a in sr.annotations)
    assert read_annotations_bytes(SR_FILE.read_bytes()).sop_instance_uid == sr.sop_instance_uid


def test_recorded_correction_moves_the_endplate_the_probed_and_the_labelled_corner() -> None:
    m = match_corrections(read_annotations(_ds()), _result())
    c = m.images[IMAGE_UID]
    assert set(c.moved) == {"C7 antero-inferior", "C7 postero-inferior", "C4 antero-inferior", "C5 postero-superior"}
    assert c.sources["C7 antero-inferior"].startswith("Length") and c.sources["C4 antero-inferior"].startswith("Probe")
    assert c.sources["C5 postero-superior"].startswith("ArrowAnnotate")
    aimed_tip = np.asarray(SIDECAR["aimed"][3]["image"][0]) - 0.5
    assert np.hypot(*(np.asarray(c.moved["C5 postero-superior"]) - aimed_tip)) < 1.5  # the tip, not the tail
    assert 1.5 < c.moved_mm["C4 antero-inferior"] < 3.0  # aimed 9 px right, 6 px down at 0.221 mm/px
    assert ("cobb_c2_c7", "C2-C7") in c.measurements and ("sdvb", "C3") not in c.measurements
    assert len(m.notes) == 1 and "not a correction" in m.notes[0]  # the probe in the soft tissue


def test_moved_point_and_redrawn_line_land_where_drawn() -> None:
    ds = _ds()
    kp = SIDECAR["keypoints"]
    g = _groups(ds)
    x, y = kp["C6 postero-superior"]
    _scoord(g[1]).GraphicData = [x + 0.5 + 10, y + 0.5 - 4]  # the probe now 2.4 mm from C6 PS
    (ax, ay), (px, py) = kp["C3 antero-superior"], kp["C3 postero-superior"]
    _scoord(g[0]).GraphicData = [px + 0.5 - 3, py + 0.5 + 2, ax + 0.5 + 4, ay + 0.5]  # drawn posterior to anterior
    c = match_corrections(read_annotations(ds), _result()).images[IMAGE_UID]
    assert c.moved["C6 postero-superior"] == pytest.approx((x + 10, y - 4), abs=1e-3)
    assert c.moved["C3 postero-superior"] == pytest.approx((px - 3, py + 2), abs=1e-3)
    assert c.moved["C3 antero-superior"] == pytest.approx((ax + 4, ay), abs=1e-3)


def test_label_names_the_corner() -> None:
    ds = _ds()
    g = _groups(ds)[2]  # the unrelated probe, 31 mm from any corner
    finding = Dataset()
    finding.RelationshipType, finding.ValueType = "CONTAINS", "CODE"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    finding.ConceptCodeSequence = Sequence([_code("CORNERSTONEFREETEXT", "CORNERSTONEJS", "C6 AI")])
    g.ContentSequence.append(finding)
    kp = SIDECAR["keypoints"]["C6 antero-inferior"]
    _scoord(g).GraphicData = [kp[0] + 0.5 + 30, kp[1] + 0.5]  # 6.6 mm off: too far by distance, named by label
    sr = read_annotations(ds)
    assert sr.annotations[2].label == "C6 AI"
    assert match_corrections(sr, _result()).images[IMAGE_UID].moved["C6 antero-inferior"][0] == pytest.approx(kp[0] + 30, abs=1e-3)
    assert [keypoint_from_label(s) for s in ("c4 antero-inferior", "C4 PI", "C7_anterosuperior", "C8 AI", "disc")] == [
        "C4 antero-inferior", "C4 postero-inferior", "C7 antero-superior", None, None]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def test_other_image_and_unrelated_annotations_are_ignored_with_notes() -> None:
    ds = _ds()
    g = _groups(ds)
    _scoord(g[3]).ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.3.998"  # the arrow
    _scoord(g[0]).ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.3.999"
    scoord = _scoord(g[1])
    scoord.GraphicType = "ELLIPSE"
    scoord.GraphicData = [500.0, 500.0, 520.0, 500.0, 510.0, 495.0, 510.0, 505.0]
    m = match_corrections(read_annotations(ds), _result())
    assert m.n_moved == 0
    assert any("did not analyse" in n for n in m.notes) and any("ELLIPSE" in n for n in m.notes)


def test_another_vendors_sr_is_read_by_geometry() -> None:
    """No Cornerstone tracking identifiers, a Comprehensive SR, the SCOORD directly in the group (TID 1410 style)."""
    ds = _ds()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.Manufacturer = "Other PACS Inc."
    for g in _groups(ds):
        items = [it for it in g.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue not in ("112039",)]
        num = next(it for it in items if it.ValueType == "NUM")
        scoord = num.ContentSequence[0]
        scoord.RelationshipType = "CONTAINS"
        g.ContentSequence = Sequence([it for it in items if it.ValueType != "NUM"] + [scoord])
    sr = read_annotations(ds)
    assert not sr.from_ohif and [a.tool for a in sr.annotations] == ["", "", "", ""]
    c = match_corrections(sr, _result()).images[IMAGE_UID]
    assert set(c.moved) == {"C7 antero-inferior", "C7 postero-inferior", "C4 antero-inferior"}


def test_own_sr_garbage_and_not_an_sr() -> None:
    ds = _ds()
    ds.Manufacturer = "cspine-node (open source)"
    assert read_annotations(ds).own
    with pytest.raises(UnreadableSR, match="not a parsable|not an SR"):  # garbage bytes
        read_annotations_bytes(b"\x00" * 10)
    with pytest.raises(UnreadableSR, match="not an SR"):
        bad = _ds()
        bad.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        read_annotations(bad)
    empty = _ds()
    del empty.ContentSequence
    with pytest.raises(UnreadableSR, match="Content Sequence"):
        read_annotations(empty)


def test_coco_example_keeps_provenance_and_applies_a_second_sr_on_top() -> None:
    result = _result()
    image = result.images[0]
    doc = empty_document()
    first = match_corrections(read_annotations(_ds()), result).images[IMAGE_UID]
    kw = dict(file_name="images/x.png", study_uid=result.study_uid, model_version="xray_keypoints 9.9.9",
              received_at="2026-12-02T17:00:00Z", patient_key="k1")
    assert apply_correction(doc, image, first, sr_uid="1.1", **kw)
    assert not apply_correction(doc, image, first, sr_uid="1.1", **kw)  # the same SR again: nothing changes
    second = copy.deepcopy(first)
    second.moved = {"C2 antero-superior": (1.0, 2.0)}
    assert apply_correction(doc, image, second, sr_uid="1.2", **kw)
    assert len(doc["images"]) == len(doc["annotations"]) == 1
    ann = doc["annotations"][0]
    flat = np.asarray(ann["keypoints"]).reshape(-1, 3)
    assert flat.shape == (24, 3) and (flat[:, 2] == 2).all()
    assert flat[CORNER_NAMES.index("C2 antero-superior"), :2].tolist() == [1.0, 2.0]
    assert flat[CORNER_NAMES.index("C4 antero-inferior"), :2] == pytest.approx(first.moved["C4 antero-inferior"], abs=1e-3)
    assert ann["source_sr_uid"] == "1.2" and ann["source_sr_uids"] == ["1.1", "1.2"]
    assert ann["corrected_model_version"] == "xray_keypoints 9.9.9" and ann["corrected_at"] == "2026-12-02T17:00:00Z"
    assert set(ann["corrected_keypoints"]) == set(first.moved) | {"C2 antero-superior"}
    assert doc["images"][0]["patient_key"] == "k1" and doc["categories"][0]["keypoints"] == list(CORNER_NAMES)


def test_the_nodes_own_corner_polyline_edited_elsewhere_moves_the_vertices_that_moved(tmp_path: Path) -> None:
    """Our own SR is recognised (and never a correction as it is); re-saved by another viewer with one vertex of the
    neutral view's corner polyline moved, that vertex (C3 postero-inferior) is the one corner corrected."""
    from datetime import UTC, datetime

    from pipelines.dicom_out import encode
    from pipelines.dicom_out.example import phantom_example

    study, result = phantom_example(SIDECAR["seed"], tmp_path, shape=tuple(SIDECAR["shape"]))
    sr = next(o for o in encode(study, result, now=datetime.now(UTC)) if o.Modality == "SR")
    own = read_annotations(sr)
    assert own.own
    neutral = next(a for a in own.annotations if a.tracking_identifier.startswith("Vertebral corners C2-C7 [neutral]"))
    assert len(neutral.points) == 24 and not match_corrections(own, result).n_moved  # as written: nothing moved
    edited = copy.deepcopy(sr)
    edited.Manufacturer = "Other viewer"
    del edited.CodingSchemeIdentificationSequence
    scoords = []
    edited.walk(lambda _ds, el: scoords.append(_ds) if el.keyword == "GraphicData" and len(el.value) == 48 else None)
    target = next(d for d in scoords if np.allclose(np.asarray(d.GraphicData).reshape(-1, 2)[0] - 0.5, neutral.points[0]))
    pts = np.asarray(target.GraphicData, float).reshape(-1, 2)
    j = 4 * 1 + 2  # C3, the third vertex: postero-inferior (per vertebra AS, PS, PI, AI)
    pts[j] += (5.0, 3.0)
    target.GraphicData = pts.ravel().tolist()
    m = match_corrections(read_annotations(edited), result)
    assert not read_annotations(edited).own
    (c,) = m.images.values()
    assert list(c.moved) == ["C3 postero-inferior"] and c.image_uid == neutral.image_uid
    kp = next(k for k in next(i for i in result.images if i.image_uid == neutral.image_uid).keypoints
              if k.name == "C3 postero-inferior")
    assert c.moved["C3 postero-inferior"] == pytest.approx((kp.x + 5, kp.y + 3), abs=1e-3)


def test_ohif_restored_edited_and_saved_again() -> None:
    """The recording's second SR: OHIF restored the first, the Probe was dragged 6 px left / 4 px up, and "Create SR"
    saved a whole new SR (a new series, every group with a new tracking UID, no predecessor reference). Applied on
    top of the first it moves C4 antero-inferior again; the rest stays where the first put it."""
    first, edited = read_annotations(_ds()), read_annotations(pydicom.dcmread(FIXTURES / "ohif_saved_sr_edited.dcm"))
    assert [a.tool for a in edited.annotations] == [a.tool for a in first.annotations]
    assert not {a.tracking_uid for a in edited.annotations} & {a.tracking_uid for a in first.annotations}
    dragged_to = np.asarray(SIDECAR["aimed_edit"]["image"][1]) - 0.5
    assert np.hypot(*(edited.annotations[1].points[0] - dragged_to)) < 1.5
    result = _result()
    doc = empty_document()
    kw = dict(file_name="images/x.png", study_uid=result.study_uid, model_version="m 1", received_at="t")
    c1 = match_corrections(first, result).images[IMAGE_UID]
    c2 = match_corrections(edited, result).images[IMAGE_UID]
    assert set(c2.moved) == set(c1.moved)
    apply_correction(doc, result.images[0], c1, sr_uid=first.sop_instance_uid, **kw)
    apply_correction(doc, result.images[0], c2, sr_uid=edited.sop_instance_uid, **kw)
    flat = np.asarray(doc["annotations"][0]["keypoints"]).reshape(24, 3)
    assert flat[CORNER_NAMES.index("C4 antero-inferior"), :2] == pytest.approx(c2.moved["C4 antero-inferior"], abs=1e-3)
    assert flat[CORNER_NAMES.index("C7 antero-inferior"), :2] == pytest.approx(c1.moved["C7 antero-inferior"], abs=1e-3)
