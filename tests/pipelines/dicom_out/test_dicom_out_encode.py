"""encode(): which objects, identity (UIDs, series, instance numbers), patient/study copy, provenance."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.dicom_out.identity import RESEARCH_STATEMENT, result_series_uid, run_number
from pipelines.results import StudyResult
from pipelines.study import Study

SOP = {
    "SR": "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",  # GSPS
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "DOC": "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
}
COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
          "AccessionNumber", "StudyID")


def _by_modality(objects: list[Dataset]) -> dict[str, list[Dataset]]:
    out: dict[str, list[Dataset]] = {}
    for ds in objects:
        out.setdefault(str(ds.Modality), []).append(ds)
    return out


def test_object_kinds(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset]) -> None:
    _, result = xray_case
    kinds = _by_modality(xray_objects)
    assert {k: len(v) for k, v in kinds.items()} == {"SR": 1, "SEG": 3, "PR": 3, "OT": 1, "DOC": 1}
    for modality, objs in kinds.items():
        assert all(o.SOPClassUID == SOP[modality] for o in objs)
    # one SEG and one GSPS per view, each referencing its own radiograph
    for modality in ("SEG", "PR"):
        refs = set()
        for o in kinds[modality]:
            seq = o.ReferencedSeriesSequence[0].ReferencedInstanceSequence if modality == "SEG" else \
                o.ReferencedSeriesSequence[0].ReferencedImageSequence
            refs |= {r.ReferencedSOPInstanceUID for r in seq}
        assert refs == {i.image_uid for i in result.images}


def test_patient_and_study_copied(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset]) -> None:
    study, _ = xray_case
    src = study.instances[0].read(pixels=False)
    for ds in xray_objects:
        for kw in COPIED:
            assert str(ds.get(kw, "")) == str(src.get(kw, "")), (ds.Modality, kw)


def test_uids_new_and_series_deterministic(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset], now: datetime) -> None:
    study, result = xray_case
    sop_uids = [ds.SOPInstanceUID for ds in xray_objects]
    assert len(set(sop_uids)) == len(sop_uids)
    assert not set(sop_uids) & {i.sop_instance_uid for i in study.instances}
    assert not {ds.SeriesInstanceUID for ds in xray_objects} & set(study.series_uids)
    kinds = _by_modality(xray_objects)
    assert kinds["SR"][0].SeriesInstanceUID == result_series_uid(study.study_uid, "xray", "sr")
    assert kinds["SEG"][0].SeriesInstanceUID == result_series_uid(study.study_uid, "xray", "seg")
    assert len({ds.SeriesInstanceUID for ds in kinds["SEG"]}) == 1  # one SEG series, one instance per view
    assert sorted(ds.InstanceNumber for ds in kinds["SEG"]) == [run_number(now) + i for i in range(3)]
    # different studies / kinds never share a series
    assert result_series_uid("1.2.3", "xray", "sr") != result_series_uid("1.2.4", "xray", "sr")
    assert result_series_uid("1.2.3", "xray", "sr") != result_series_uid("1.2.3", "mri", "sr")
    with pytest.raises(ValueError):
        result_series_uid("1.2.3", "xray", "ko")


def test_reanalysis_same_series_new_instances(xray_case: tuple[Study, StudyResult], tmp_path: Path, now: datetime) -> None:
    """A re-analysis lands in the same series with new SOPInstanceUIDs, a higher InstanceNumber, and the SR
    names the earlier SR (held by the study) as predecessor."""
    study, full = xray_case
    image = full.images[0]
    small = StudyResult(full.study_uid, "xray", full.algorithm, [image],
                        [m for m in full.measurements if m.view == image.view][:4], [])
    first = encode(study, small, now=now)
    earlier_sr = first[0]
    p = tmp_path / "earlier_sr.dcm"
    earlier_sr.save_as(p, enforce_file_format=True)
    from pipelines.study import Instance

    study2 = Study(study.study_uid, (*study.instances, Instance.from_path(p)))
    second = encode(study2, small, now=now + timedelta(hours=1))
    assert [d.SeriesInstanceUID for d in first] == [d.SeriesInstanceUID for d in second]
    assert not {d.SOPInstanceUID for d in first} & {d.SOPInstanceUID for d in second}
    assert all(b.InstanceNumber > a.InstanceNumber for a, b in zip(first, second, strict=True))
    pred = second[0].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == earlier_sr.SOPInstanceUID


def test_provenance_and_research_statement(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset]) -> None:
    _, result = xray_case
    for ds in xray_objects:
        algorithm_items = [
            e for e in ds.ContributingEquipmentSequence
            if (e.PurposeOfReferenceCodeSequence[0].CodeValue, e.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator,
                e.PurposeOfReferenceCodeSequence[0].CodeMeaning) == ("Newcode1", "99IHE", "Processing Algorithm")
        ]
        assert len(algorithm_items) == 1, ds.Modality
        eq = algorithm_items[0]
        assert eq.ManufacturerModelName == result.algorithm.name
        assert eq.SoftwareVersions == result.algorithm.version
        assert eq.DeviceUID.startswith("2.25.")
        assert "RESEARCH" in ds.SeriesDescription.upper()
    sr = _by_modality(xray_objects)["SR"][0]
    texts = [i.TextValue for i in sr.ContentSequence[-1].ContentSequence]
    assert texts[0] == RESEARCH_STATEMENT


def test_each_object_gets_its_own_contributing_equipment_items(xray_case: tuple[Study, StudyResult]) -> None:
    """The algorithm's item is built once per encoding (``Provenance.contributing_equipment``) and copied for each
    object: equal in every object, none shared, so changing one object's item leaves the others alone."""
    study, result = xray_case
    objects = encode(study, result)  # its own objects: the session's are shared with other tests
    ours = [e for ds in objects for e in ds.ContributingEquipmentSequence
            if e.get("ManufacturerModelName") == result.algorithm.name]
    assert len(ours) == len(objects) and all(e == ours[0] for e in ours)
    assert len({id(e) for e in ours}) == len(ours)
    before = ours[1].ContributionDescription
    ours[0].ContributionDescription = "changed"
    assert ours[1].ContributionDescription == before != "changed"


def test_rejects_foreign_result(xray_case: tuple[Study, StudyResult]) -> None:
    study, result = xray_case
    with pytest.raises(ValueError, match="not for"):
        encode(study, replace(result, study_uid="1.2.3.4"))
    stray = replace(result, images=[replace(result.images[0], image_uid="1.2.3.4.5", keypoints=[])])
    with pytest.raises(ValueError, match="not in study"):
        encode(study, stray)


def test_files_readable(xray_files: dict[str, list]) -> None:
    for paths in xray_files.values():
        for p in paths:
            ds = pydicom.dcmread(p)
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_first_gets_the_sr_and_segs_before_the_rest_is_encoded(xray_case: tuple[Study, StudyResult],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``first`` (the node sends these while it encodes the rest) is called with the SR, then with the first SEG
    before the next SEG is built, then with the other SEGs, all before a presentation state or the report is built;
    the returned list still holds every object, those first."""
    import pipelines.dicom_out as dicom_out
    from pipelines.dicom_out import seg as seg_mod

    study, result = xray_case
    calls: list[list[str]] = []
    events: list[str] = []
    build_gsps, pixel_array = dicom_out.build_gsps, seg_mod._pixel_array

    def gsps_after_first(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        assert calls, "presentation states built before the SR and SEGs were handed out"
        return build_gsps(*args, **kwargs)

    def counted_pixel_array(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        events.append("build SEG")
        return pixel_array(*args, **kwargs)

    def handed_out(objs: list) -> None:
        calls.append([str(o.Modality) for o in objs])
        events.append(f"first {len(objs)}")

    monkeypatch.setattr(dicom_out, "build_gsps", gsps_after_first)
    monkeypatch.setattr(seg_mod, "_pixel_array", counted_pixel_array)
    objects = encode(study, result, first=handed_out)
    assert calls == [["SR"], ["SEG"], ["SEG", "SEG"]]  # the SR as soon as it is built, then each SEG group
    assert events == ["first 1", "build SEG", "first 1", "build SEG", "build SEG", "first 2"]
    assert [str(o.Modality) for o in objects][:4] == [m for c in calls for m in c] and len(objects) == 9
