"""The TID 1500 SR: read back with highdicom, printed by dcmtk's dsrdump, and OHIF's expectations."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out.graphics import CORNER_ORDER
from pipelines.dicom_out.sr import groups_of
from pipelines.results import VERTEBRAE, StudyResult, View
from pipelines.study import Study
from tests.services import in_ci


def _sr(objects: list[Dataset]) -> Dataset:
    return next(o for o in objects if o.Modality == "SR")


def _identifier(g: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) -> str:
    return str(g.tracking_identifier)


def test_round_trip_highdicom(xray_case: tuple[Study, StudyResult], xray_files: dict[str, list[Path]]) -> None:
    _, result = xray_case
    sr = hd.sr.srread(xray_files["SR"][0])
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len({g.tracking_uid for g in groups}) == len(groups)

    # every measurable value comes back exactly once, with its unit, in the corner group of its view
    measurable = [m for m in result.measurements if m.value is not None]
    nums = [(g, m) for g in groups for m in g.get_measurements()]
    assert len(nums) == len(measurable)
    by_id = {_identifier(g): g for g in groups}
    neutral = next(i for i in result.images if i.view == View.NEUTRAL)
    cobb = next(m for m in measurable if m.key == "cobb_c2_c7" and m.view == View.NEUTRAL)
    g = by_id["Vertebral corners C2-C7 [neutral]"]
    num = g.get_measurements()[0]  # the first label OHIF prints on the view
    assert (num.name.value, num.name.scheme_designator) == ("285285000", "SCT")
    assert num.value == pytest.approx(cobb.value, abs=1e-6)
    assert num.unit.value == "deg"
    assert [s.value.value for s in num.finding_sites] == ["122494005"]  # cervical spine
    assert g.get_measurements()[1].name.meaning == "C2-C7 sagittal vertical axis"
    # the 95 % interval as +/- uncertainty, in the measurement's unit
    props = {i.ConceptNameCodeSequence[0].CodeValue: i for i in num[0].ContentSequence if i.ValueType == "NUM"}
    up = props["371886008"].MeasuredValueSequence[0]
    assert float(up.NumericValue) == pytest.approx(cobb.interval[1] - cobb.value, abs=1e-3)
    assert up.MeasurementUnitsCodeSequence[0].CodeValue == "deg"

    # the 24 corner keypoints read back from the corner polyline (AS, PS, PI, AI per vertebra, C2 to C7)
    kp = {k.name: k for k in neutral.keypoints}
    assert g.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == neutral.image_uid
    names = [f"{v} {r}" for v in VERTEBRAE for r in CORNER_ORDER]
    assert len(names) == 24
    np.testing.assert_allclose(g.roi.value, [[kp[n].x + 0.5, kp[n].y + 0.5] for n in names], atol=1e-4)
    lam = by_id["Spinolaminar line [neutral]"]
    np.testing.assert_allclose(lam.roi.value, [[kp[f"{v} spinolaminar"].x + 0.5, kp[f"{v} spinolaminar"].y + 0.5]
                                               for v in VERTEBRAE], atol=1e-4)

    # the Cobb lines are drawn (the two inferior endplates, joined posteriorly), without a second NUM
    bracket = by_id["C2-C7 Cobb angle [neutral]"]
    assert bracket.get_measurements() == []
    ends = np.array([[kp[n].x + 0.5, kp[n].y + 0.5] for n in (
        "C2 antero-inferior", "C2 postero-inferior", "C7 postero-inferior", "C7 antero-inferior")])
    drawn = [ends[0], (ends[0] + ends[1]) / 2, ends[1], ends[2], (ends[2] + ends[3]) / 2, ends[3]]  # same lines
    np.testing.assert_allclose(bracket.roi.value, drawn, atol=1e-4)

    values = [(m.name.meaning, m.unit.value) for _, m in nums]
    names_found = {n for n, _ in values}
    for expected_name in ("Cobb angle", "C2-C7 sagittal vertical axis", "Spondylolisthesis distance",
                          "Spondylolisthesis angle", "Sagittal diameter of vertebral body",
                          "Sagittal diameter of vertebral canal", "Pavlov ratio"):
        assert expected_name in names_found
    assert ("Pavlov ratio", "1") in values and ("Spondylolisthesis distance", "mm") in values

    # findings first, as coded evaluations with their sites under the evaluation
    assert [g.get_qualitative_evaluations() != [] for g in groups[:len(result.findings)]] == [True] * len(result.findings)
    evaluations = [(q.name.meaning, q.value.meaning) for g in groups for q in g.get_qualitative_evaluations()]
    assert len(evaluations) == len(result.findings)
    instab = [v for n, v in evaluations if n == "Segmental instability"]
    assert len(instab) == 5 and set(instab) <= {"Present", "Absent", "Indeterminate"}
    first = groups_of(pydicom.dcmread(xray_files["SR"][0]))[0].ContentSequence  # highdicom drops the children
    (q,) = [i for i in first if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "F-KYPHOSIS"]
    assert [(c.RelationshipType, c.ConceptCodeSequence[0].CodeValue) for c in q.ContentSequence] == [
        ("HAS CONCEPT MOD", "122494005")]
    assert not [i for i in first if i.ConceptNameCodeSequence[0].CodeValue == "363698007"]  # none at group level


_CODE = re.compile(r"\b\d{3,}\s*:|\([^)]*,[^)]*\)|^\s*:")
"""A code value in a label: digits before a colon ("363698007: C2 vertebra"), a (value, scheme, meaning) triple, or
a line that starts with a colon."""


def ohif_labels(sr: Dataset) -> dict[str, list[list[str]]]:
    """What OHIF 3.13.2's SR viewport prints per image: for each TID 1410 group, "meaning: value unit" of its NUMs
    (at most five lines) and "363698007: meaning" of its first group-level SCT finding site
    (extensions/cornerstone-dicom-sr: getSopClassHandlerModule ``_processTID1410Measurement``,
    DICOMSRDisplayTool ``_getTextBoxLinesFromLabels``); groups without lines draw no text box."""
    out: dict[str, list[list[str]]] = {}
    for g in groups_of(sr):
        items = g.ContentSequence
        lines = [f"{i.ConceptNameCodeSequence[0].CodeMeaning}: {float(i.MeasuredValueSequence[0].NumericValue):.2f} "
                 f"{i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue}"
                 for i in items if i.ValueType == "NUM"]
        sites = [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "363698007"
                 and i.ConceptNameCodeSequence[0].CodingSchemeDesignator == "SCT"]
        if sites:
            lines.append(f"363698007: {sites[0].ConceptCodeSequence[0].CodeMeaning}")
        scoord = next(i for i in items if i.ValueType == "SCOORD")
        image = str(scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        if lines:
            out.setdefault(image, []).append(lines[:5])
    return out


def test_each_view_has_one_short_code_free_label(xray_case: tuple[Study, StudyResult],
                                                 xray_objects: list[Dataset]) -> None:
    """The display the reading room gets (issue 17): one label box per radiograph, headline values first, no code
    in any label or tracking identifier; tests/integration/test_viewer_ohif.py checks the real OHIF."""
    _, result = xray_case
    sr = _sr(xray_objects)
    labels = ohif_labels(sr)
    assert set(labels) == {i.image_uid for i in result.images}
    for boxes in labels.values():
        assert len(boxes) == 1 and len(boxes[0]) == 5
        assert boxes[0][0].startswith("Cobb angle: ") and boxes[0][1].startswith("C2-C7 sagittal vertical axis: ")
        assert not [line for line in boxes[0] if _CODE.search(line)], boxes[0]
    idents = [i.TextValue for g in groups_of(sr) for i in g.ContentSequence
              if i.ConceptNameCodeSequence[0].CodeValue == "112039"]
    assert not [t for t in idents if _CODE.search(t)], idents
    assert sum("flexion-extension changes" in t for t in idents) == 1
    assert len(groups_of(sr)) <= 40  # it was 121 for a three-view study


def ohif_rehydratable(sr: Dataset) -> list[tuple[str, str]]:
    """Tracking identifiers of the groups OHIF 3.13.2 would offer to "restore" as its own tools (isRehydratable:
    a Cornerstone tracking identifier, or an "Image Region" POLYLINE of 4 or 5 points (RectangleROI) or a POINT
    (Probe))."""
    out = []
    for g in groups_of(sr):
        items = g.ContentSequence
        ident = next(str(i.TextValue) for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039")
        scoord = next(i for i in items if i.ValueType == "SCOORD")
        n = len(scoord.GraphicData) // 2
        if (ident.startswith(("Cornerstone3DTools@", "cornerstoneTools@")) or (scoord.GraphicType == "POLYLINE" and n in (4, 5))
                or (scoord.GraphicType == "POINT" and n <= 2)):
            out.append((ident, str(scoord.GraphicType)))
    return out


def test_ohif_does_not_restore_the_sr_as_rectangles(xray_objects: list[Dataset]) -> None:
    """OHIF would turn a 4-point Cobb bracket into a RectangleROI; no group of an X-ray SR looks like one. What it
    can restore are single keypoints outside a complete vertebra (as Probe points, their true place)."""
    restorable = ohif_rehydratable(_sr(xray_objects))
    assert all(kind == "POINT" and re.fullmatch(r"C\d [a-z-]+ \[\w+\]", ident) for ident, kind in restorable), restorable


def test_abnormal_listhesis_is_drawn(xray_case: tuple[Study, StudyResult], tmp_path: Path) -> None:
    """A listhesis of 3.5 mm or more on a view gets its figure (the two posterior walls) labelled with its value
    beside the level; a normal one stays a value of the corner group's box."""
    from dataclasses import replace

    from pipelines.dicom_out._sources import load_sources
    from pipelines.dicom_out.identity import provenance
    from pipelines.dicom_out.sr import LISTHESIS_SHOWN_MM, build_sr

    study, full = xray_case
    image = next(i for i in full.images if i.view == View.NEUTRAL)
    mine = [m for m in full.measurements if m.view == View.NEUTRAL and m.value is not None]
    mine = [replace(m, value=-4.2) if (m.key, m.site) == ("listhesis_distance", "C4-C5") else m for m in mine]
    result = StudyResult(full.study_uid, "xray", full.algorithm, [image], mine, [], [])
    sr = build_sr(result, load_sources(study, result), provenance(result.algorithm, "xray"), series_uid="1.2.3",
                  series_number=1)
    ids = [next(i.TextValue for i in g.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039")
           for g in groups_of(sr)]
    assert sum("Spondylolisthesis distance" in t for t in ids) == 1 and any("C4-C5" in t for t in ids)
    assert LISTHESIS_SHOWN_MM == 3.5
    boxes = ohif_labels(sr)[image.image_uid]
    assert len(boxes) == 2
    assert ["Spondylolisthesis distance: -4.20 mm"] in boxes
    box = next(b for b in boxes if len(b) > 1)
    assert box[0].startswith("Cobb angle") and not any(line.startswith("Spondylolisthesis") for line in box)


def test_every_group_has_what_ohif_needs(xray_objects: list[Dataset]) -> None:
    """OHIF v3.13 needs a Tracking Identifier text, a unique Tracking UID and a SCOORD on an image per group."""
    sr = _sr(xray_objects)
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    library = next(i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028")
    assert len(library.ContentSequence[0].ContentSequence) == 3
    uids = []
    for g in groups_of(sr):
        items = g.ContentSequence
        assert [i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039"]
        uids += [i.UID for i in items if i.ValueType == "UIDREF"]
        scoords = [i for i in items if i.ValueType == "SCOORD"]
        assert len(scoords) == 1 and scoords[0].GraphicType in {"POINT", "POLYLINE"}
        assert scoords[0].ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert len(uids) == len(set(uids)) == len(groups_of(sr))


def test_dsrdump_prints_tree(xray_files: dict[str, list[Path]]) -> None:
    if shutil.which("dsrdump") is None:
        if in_ci():
            pytest.fail("dsrdump missing (apt-get install dcmtk)")
        pytest.skip("dsrdump missing (apt-get install dcmtk)")
    r = subprocess.run(["dsrdump", "+Pl", "+Pc", str(xray_files["SR"][0])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in ("Imaging Measurement Report", "Image Library", "Imaging Measurements", "Measurement Group",
                 "Cobb angle", "C2-C7 sagittal vertical axis", "Pavlov ratio", "Spondylolisthesis distance",
                 "Segmental instability", "Qualitative Evaluations",
                 "SCOORD", "POLYLINE", "99CSPINE", "(deg,UCUM", "(mm,UCUM", "285285000,SCT", "RESEARCH USE ONLY"):
        assert text in out, text
    assert "error" not in r.stderr.lower(), r.stderr


def test_edge_cases_go_to_the_text_container(xray_case: tuple[Study, StudyResult]) -> None:
    """Not-measurable values, findings without geometry and warnings end up as TEXT, never lost; unknown keys
    and sites get private codes."""
    from pipelines.dicom_out._sources import load_sources
    from pipelines.dicom_out.identity import provenance
    from pipelines.dicom_out.sr import build_sr
    from pipelines.results import Finding, Measurement

    study, full = xray_case
    image = full.images[0]
    measurements = [
        next(m for m in full.measurements if m.key == "cobb_c2_c7" and m.view == image.view),
        Measurement("sdvc", "SDVC", None, "mm", "C7", image.view, None, (image.image_uid,), reason="C7 hidden"),
        Measurement("new_index", "Some new index", 1.5, "1", "odd site", image.view, None, (image.image_uid,)),
    ]
    findings = [Finding("foraminal_stenosis_left", "Left foraminal stenosis", "grade 2", "T9-T10", ("no such level",))]
    result = StudyResult(full.study_uid, "xray", full.algorithm, [image], measurements, findings, ["a warning"])
    sr = build_sr(result, load_sources(study, result), provenance(result.algorithm, "xray"), series_uid="1.2.3",
                  series_number=1)
    texts = [i.TextValue for i in sr.ContentSequence[-1].ContentSequence]
    assert "SDVC C7 [neutral]: not measurable (C7 hidden)" in texts
    assert any(t.startswith("Left foraminal stenosis T9-T10: grade 2 - no such level") for t in texts)
    assert texts.index("Warning: a warning") > max(i for i, t in enumerate(texts) if "foraminal" in t)  # findings first
    ids = [next(i.TextValue for i in g.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039")
           for g in groups_of(sr)]
    assert "C2-C7 Cobb angle [neutral]" in ids and not any("SDVC" in i or "foraminal" in i for i in ids)
    # the new key is a value of the view's corner group, under a generated private code with a private site
    corner = next(g for g in groups_of(sr) if any(getattr(i, "TextValue", "").startswith("Vertebral corners")
                                                   for i in g.ContentSequence))
    new = [i for i in corner.ContentSequence if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeValue == "M-NEW_INDEX"]
    assert len(new) == 1 and float(new[0].MeasuredValueSequence[0].NumericValue) == 1.5
    sites = [c.ConceptCodeSequence[0] for c in new[0].ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "363698007"]
    assert sites[0].CodingSchemeDesignator == "99CSPINE"


def test_codes() -> None:
    from pipelines.dicom_out import codes

    assert [c.value for c in codes.site_codes("C2-C7")] == ["122494005"]
    assert [c.meaning for c in codes.site_codes("C3-C5")] == ["C3 vertebra", "C4 vertebra", "C5 vertebra"]
    assert [c.meaning for c in codes.site_codes("C4-C5 disc")] == ["C4/C5 disc"]
    assert codes.site_codes("odd site")[0].scheme_designator == codes.PRIVATE_SCHEME
    assert codes.measurement_code("cobb_c2_c6", "C2-C6 Cobb angle").value == "285285000"
    new = codes.measurement_code("a_very_long_new_measurement_key", "New")
    assert new.scheme_designator == codes.PRIVATE_SCHEME and len(new.value) <= 16
    assert codes.value_code("present").value == "52101004" and codes.value_code("S-shaped").value == "V-S_SHAPED"


def test_mri_findings_draw_no_probability_labels(mri_case: tuple[Study, StudyResult], now) -> None:  # noqa: ANN001
    """A classifier's probability sits under the finding's evaluation (HAS PROPERTIES), so OHIF does not write
    "Probability: 0.81 1" four times over each MRI disc; only real values are labelled."""
    from pipelines.dicom_out import encode

    study, result = mri_case
    sr = _sr(encode(study, result, now=now))
    lines = [line for boxes in ohif_labels(sr).values() for box in boxes for line in box]
    assert lines == ["Disc height: 4.80 mm"]
    (finding,) = [g for g in groups_of(sr) if any(i.ConceptNameCodeSequence[0].CodeValue == "121071" for i in g.ContentSequence)]
    (evaluation,) = [i for i in finding.ContentSequence if i.ValueType == "CODE"
                     and i.ConceptNameCodeSequence[0].CodeValue == "F-DISCDEG"]
    kids = {(k.RelationshipType, k.ValueType): k for k in evaluation.ContentSequence}
    assert float(kids["HAS PROPERTIES", "NUM"].MeasuredValueSequence[0].NumericValue) == pytest.approx(0.81)
    assert kids["HAS CONCEPT MOD", "CODE"].ConceptCodeSequence[0].CodeMeaning == "C4/C5 disc"
