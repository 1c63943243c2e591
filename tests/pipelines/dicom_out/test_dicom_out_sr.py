"""The TID 1500 SR: read back with highdicom, printed by dcmtk's dsrdump, and OHIF's expectations."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out.graphics import keypoint_graphics
from pipelines.dicom_out.sr import groups_of
from pipelines.results import StudyResult, View
from pipelines.study import Study
from tests.services import in_ci


def _sr(objects: list[Dataset]) -> Dataset:
    return next(o for o in objects if o.Modality == "SR")


def test_round_trip_highdicom(xray_case: tuple[Study, StudyResult], xray_files: dict[str, list[Path]]) -> None:
    _, result = xray_case
    sr = hd.sr.srread(xray_files["SR"][0])
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    groups = sr.content.get_planar_roi_measurement_groups()
    n_keypoint_groups = sum(len(keypoint_graphics(i)) for i in result.images)
    measurable = [m for m in result.measurements if m.value is not None]
    assert len(groups) == n_keypoint_groups + len(measurable) + len(result.findings)
    assert len({g.tracking_uid for g in groups}) == len(groups)

    # every measurable value comes back with its unit, in a group named after it
    by_id = {g.tracking_identifier: g for g in groups}
    neutral = next(i for i in result.images if i.view == View.NEUTRAL)
    cobb = next(m for m in measurable if m.key == "cobb_c2_c7" and m.view == View.NEUTRAL)
    g = by_id["C2-C7 Cobb angle [neutral]"]
    (num,) = g.get_measurements()
    assert (num.name.value, num.name.scheme_designator) == ("285285000", "SCT")
    assert num.value == pytest.approx(cobb.value, abs=1e-6)
    assert num.unit.value == "deg"
    assert g.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == neutral.image_uid
    kp = {k.name: k for k in neutral.keypoints}
    bracket = ("C2 antero-inferior", "C2 postero-inferior", "C7 postero-inferior", "C7 antero-inferior")
    expected = np.array([[kp[n].x + 0.5, kp[n].y + 0.5] for n in bracket])  # both inferior endplates
    np.testing.assert_allclose(g.roi.value, expected, atol=1e-4)
    assert [s.value.value for s in num.finding_sites] == ["122494005"]  # cervical spine
    # the 95 % interval as +/- uncertainty, in the measurement's unit
    props = {i.ConceptNameCodeSequence[0].CodeValue: i for i in num[0].ContentSequence if i.ValueType == "NUM"}
    up = props["371886008"].MeasuredValueSequence[0]
    assert float(up.NumericValue) == pytest.approx(cobb.interval[1] - cobb.value, abs=1e-3)
    assert up.MeasurementUnitsCodeSequence[0].CodeValue == "deg"

    values = []
    for g in groups:
        for m in g.get_measurements():
            values.append((m.name.meaning, m.unit.value))
    names = {n for n, _ in values}
    for expected_name in ("Cobb angle", "C2-C7 sagittal vertical axis", "Spondylolisthesis distance",
                          "Spondylolisthesis angle", "Sagittal diameter of vertebral body",
                          "Sagittal diameter of vertebral canal", "Pavlov ratio"):
        assert expected_name in names
    assert ("Pavlov ratio", "1") in values and ("Spondylolisthesis distance", "mm") in values

    # findings as coded evaluations
    evaluations = [(q.name.meaning, q.value.meaning) for g in groups for q in g.get_qualitative_evaluations()]
    assert len(evaluations) == len(result.findings)
    instab = [v for n, v in evaluations if n == "Segmental instability"]
    assert len(instab) == 5 and set(instab) <= {"Present", "Absent", "Indeterminate"}


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
    assert any(t.startswith("Some new index odd site") and "no figure" in t for t in texts)
    assert any(t.startswith("Left foraminal stenosis T9-T10: grade 2 - no such level") for t in texts)
    assert "Warning: a warning" in texts
    ids = [next(i.TextValue for i in g.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039")
           for g in groups_of(sr)]
    assert "C2-C7 Cobb angle [neutral]" in ids and not any("SDVC" in i or "foraminal" in i for i in ids)


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
