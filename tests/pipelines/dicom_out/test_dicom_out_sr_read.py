"""pipelines.dicom_out.sr_read: this node's SRs read back (X-ray and MRI), and the notes for SRs it cannot compare
(another vendor, corrupt, no content, patient-level)."""

from __future__ import annotations

import copy
from io import BytesIO

import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.dicom_out.sr_read import prior_from_bytes, prior_from_dataset, read_result, sr_pipeline
from pipelines.patient.compare import UNKNOWN, compare, view_name
from pipelines.results import StudyResult
from pipelines.study import Study


def _bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _key(m) -> tuple:
    return (m.key, m.site, view_name(m))


def test_xray_sr_reads_back_measurements_views_and_findings(xray_case: tuple[Study, StudyResult],
                                                           xray_objects: list[Dataset]) -> None:
    _, result = xray_case
    sr = xray_objects[0]
    assert sr.Modality == "SR" and sr_pipeline(sr) == "xray"
    back = read_result(copy.deepcopy(sr))  # no hints from the current result: codes only
    assert back.pipeline == "xray" and back.algorithm.name == result.algorithm.name
    original = {_key(m): m for m in result.measurements if m.value is not None}
    read = {_key(m): m for m in back.measurements}
    assert len(read) >= 0.9 * len(original), (len(read), len(original))
    for k, m in read.items():
        assert k in original, k
        assert m.value == pytest.approx(original[k].value, abs=1e-6)
        assert m.unit == original[k].unit
    assert {"neutral", "flexion", "extension", "flexion-extension"} <= {k[2] for k in read}
    def state(v: str) -> str:  # the SR codes every kind of "not measurable" as Indeterminate
        return "indeterminate" if v in UNKNOWN else v

    assert {(f.key, f.site, f.value) for f in back.findings} == {(f.key, f.site, state(f.value)) for f in result.findings}
    # comparing the result with its own SR: every read measurement matched, change 0
    cmp = compare(result, "20990101", [prior_from_dataset(sr, "test")])
    assert cmp.compared and len(cmp.measurements) == len(read)
    assert all(c.change == pytest.approx(0.0, abs=1e-6) for c in cmp.measurements if c.change is not None)
    assert cmp.findings == []


def test_mri_sr_reads_back(mri_case: tuple[Study, StudyResult], now) -> None:
    study, result = mri_case
    sr = encode(study, result, now=now)[0]
    back = prior_from_bytes(_bytes(sr), "test",
                            known_keys=[(m.key, m.name) for m in result.measurements],
                            known_sites=[m.site for m in result.measurements] + [f.site for f in result.findings],
                            known_findings=[(f.key, f.name) for f in result.findings])
    assert back.result is not None, back.note
    assert back.result.pipeline == "mri"
    graded = {(f.key, f.site, "indeterminate" if f.value in UNKNOWN else f.value) for f in result.findings}
    assert {(f.key, f.site, f.value) for f in back.result.findings} <= graded
    assert len(back.result.findings) >= 1


def test_other_vendor_sr_gives_a_note(xray_objects: list[Dataset]) -> None:
    sr = copy.deepcopy(xray_objects[0])
    sr.Manufacturer = "ACME Imaging"
    del sr.CodingSchemeIdentificationSequence
    p = prior_from_bytes(_bytes(sr), "pacs (QIDO-RS)")
    assert p.result is None and p.note.startswith("prior SR from another vendor (ACME Imaging")
    basic = Dataset()  # a Basic Text SR of another kind (no TID 1500)
    basic.SOPClassUID, basic.StudyInstanceUID, basic.StudyDate = "1.2.840.10008.5.1.4.1.1.88.11", "1.2.3", "20200101"
    basic.Manufacturer = "Other"
    p = prior_from_dataset(basic, "pacs (C-FIND)")
    assert p.result is None and "another vendor" in p.note and p.study_date == "20200101"


def test_corrupt_and_empty_srs_give_notes(xray_objects: list[Dataset]) -> None:
    assert "unreadable" in prior_from_bytes(b"not dicom at all", "x").note
    assert prior_from_bytes(_bytes(xray_objects[0])[:4000], "x").result is None
    empty = copy.deepcopy(xray_objects[0])
    empty.ContentSequence = []
    p = prior_from_dataset(empty, "x")
    assert p.result is None and "no single pipeline" in p.note
    broken = copy.deepcopy(xray_objects[0])
    broken.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    assert "another vendor" in prior_from_dataset(broken, "x").note


def test_raw_content_reader_equals_pydicom(xray_objects: list[Dataset], mri_case, now) -> None:  # noqa: ANN001
    import pydicom

    from pipelines.dicom_out.sr_raw import content_nodes
    from pipelines.dicom_out.sr_read import _children, _node

    study, result = mri_case
    for sr in (xray_objects[0], encode(study, result, now=now)[0]):
        data = _bytes(sr)
        raw = content_nodes(pydicom.dcmread(BytesIO(data)))
        assert raw is not None and raw == [_node(i) for i in _children(pydicom.dcmread(BytesIO(data)))]
    implicit = pydicom.dcmread(BytesIO(_bytes(xray_objects[0])))
    implicit.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    assert content_nodes(implicit) is None  # another transfer syntax: the reader falls back to pydicom


def test_long_finding_keys_read_back(xray_case: tuple[Study, StudyResult], now) -> None:  # noqa: ANN001
    """``atlanto_occipital_assimilation`` is coded F-ATLANTO_OCCIP (14 letters): the reader still gives the key."""
    import dataclasses

    from pipelines.results import Finding

    study, result = xray_case
    extra = [Finding("atlanto_occipital_assimilation", "Atlanto-occipital assimilation", "present", "C2", probability=0.8),
             Finding("os_odontoideum", "Os odontoideum", "absent", "C2", probability=0.1)]
    sr = encode(study, dataclasses.replace(result, findings=[*result.findings, *extra]), now=now)[0]
    back = read_result(sr)
    got = {(f.key, f.site): (f.value, f.probability) for f in back.findings}
    assert got[("atlanto_occipital_assimilation", "C2")] == ("present", pytest.approx(0.8))
    assert got[("os_odontoideum", "C2")] == ("absent", pytest.approx(0.1))
