"""Patient-level pairing in a real spool: typed results persisted with a salted patient key, the other
modality's study found within the window, and a patient SR + PDF queued with the later study.

The pipelines are stood in for by the phantoms' ground truth (real ``StudyResult``s on the real files);
``test_patient_node_e2e.py`` runs the same path with the real pipelines through ``cspine-node serve``.
"""

from __future__ import annotations

import dataclasses
import stat
import subprocess
from pathlib import Path

import pydicom
import pytest

from models.registry import entry
from node.patients import (
    find_partner,
    load_result,
    patient_key,
    patient_salt,
    result_from_json,
    result_to_json,
    spool_study,
    study_identity,
    study_time,
)
from node.spool import Spool, header_from_dataset
from node.tasks import run_analysis
from pipelines import Analysis, add_patient_level
from pipelines.dicom_out.patient import CORROBORATION, PREDICTION_CODES, RULE_CODES
from pipelines.patient.report import patient_report
from pipelines.phantoms.paired import paired_phantom_studies
from tests.pipelines.patient.patienttest_data import mri_truth, xray_truth

SEED = 9
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("pair")
    xray_files, mri_files = paired_phantom_studies(SEED, out)
    x, m = xray_truth(SEED, xray_files), mri_truth(SEED, mri_files)
    pid = str(pydicom.dcmread(mri_files[0], stop_before_pixels=True).PatientID)
    return {"xray_files": xray_files, "mri_files": mri_files, "xray": x, "mri": m, "pid": pid}


def _spool_with(tmp_path: Path, *file_lists: list[Path]) -> Spool:
    sp = Spool(tmp_path / "spool")
    for files in file_lists:
        for p in files:
            sp.store(p.read_bytes(), header_from_dataset(pydicom.dcmread(p, stop_before_pixels=True)))
    return sp


@pytest.fixture(scope="module")
def neck_pain():  # noqa: ANN201 - the shipped neck-pain model (interfaces.PatientModel)
    return entry("neck_pain").load(None, "cpu")


def _analysis(study, results, predictor, history) -> Analysis:  # noqa: ANN001
    """What ``pipelines.analyze`` returns for these typed results: the patient level included."""
    analysis = Analysis(study.study_uid, results=results)
    add_patient_level(analysis, study, predictor, history)
    return analysis


def _stand_in(pair: dict, predictor):  # noqa: ANN001, ANN202
    by_uid = {pair["xray"].study_uid: pair["xray"], pair["mri"].study_uid: pair["mri"]}
    return lambda study, history: _analysis(study, [by_uid[study.study_uid]], predictor, history)


def _texts(sr: pydicom.Dataset) -> list[str]:
    out = []
    for item in sr.ContentSequence:
        for child in item.get("ContentSequence", []):
            if child.ValueType == "TEXT":
                out.append(str(child.TextValue))
    return out


def test_patient_key_is_salted_and_study_time_parses() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert patient_key("P1", "", a) == patient_key(" P1 ", "", a) != patient_key("P1", "", b)
    assert patient_key("P1", "", a) != patient_key("P2", "", a) != patient_key("P1", "HOSP", a)
    assert patient_key("", "", a) == "" and len(patient_key("P1", "", a)) == 32 and "P1" not in patient_key("P1", "", a)
    assert study_time("20260309", "093000.25") - study_time("20260302", "093000") == 7 * 86400
    assert study_time("20260302") == study_time("20260302", "000000")
    assert study_time("", "1200") is None and study_time("2026-03-02") is None


def test_patient_result_json_round_trip(pair: dict) -> None:
    for result in (pair["xray"], pair["mri"]):
        assert result_from_json(result_to_json(result)) == result


def test_patient_pairing_in_the_spool(tmp_path: Path, pair: dict, require, neck_pain) -> None:  # noqa: ANN001
    require("dciodvfy")
    sp = _spool_with(tmp_path, pair["xray_files"], pair["mri_files"])
    x_uid, m_uid = pair["xray"].study_uid, pair["mri"].study_uid
    salt_file = sp.root / "patient_key.salt"

    first = run_analysis(sp, ["pacs"], x_uid, analyze=_stand_in(pair, neck_pain))
    assert first["objects"] == 0  # no MRI of this patient analysed yet
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    (xrow,) = sp.results(x_uid)
    assert xrow.pipeline == "xray" and xrow.patient_key == patient_key(pair["pid"], "", patient_salt(sp))
    assert load_result(xrow) == pair["xray"]

    second = run_analysis(sp, ["pacs"], m_uid, analyze=_stand_in(pair, neck_pain))
    assert second["objects"] == 2 and second["queued"]
    (mrow,) = sp.results(m_uid)
    assert mrow.patient_key == xrow.patient_key and mrow.study_time - xrow.study_time == 7 * 86400
    assert find_partner(sp, study_identity(spool_study(sp, m_uid), patient_salt(sp)), m_uid, "xray", 90) == xrow

    rows = sp.outbox(m_uid)
    by_class = {r.sop_class_uid: Path(r.path) for r in rows}
    assert set(by_class) == {SR_CLASS, PDF_CLASS} and all(r.state == "pending" for r in rows)
    sr = pydicom.dcmread(by_class[SR_CLASS])
    assert sr.StudyInstanceUID == m_uid and sr.PatientID == pair["pid"]
    assert [s.StudyInstanceUID for s in sr.PertinentOtherEvidenceSequence] == [x_uid]
    out = subprocess.run(["dciodvfy", str(by_class[SR_CLASS])], capture_output=True, text=True)
    assert [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")] == []

    expected = patient_report(pair["xray"], pair["mri"])
    assert {c.threshold for c in expected.corroborations} & {"developmental_canal", "instability_herniation",
                                                              "instability_canal"}  # seed 9: across modalities
    texts = _texts(sr)
    corroborations = [t for t in texts if t.startswith("Corroboration - ")]
    assert len(corroborations) == len(expected.corroborations)
    for c in expected.corroborations:
        assert any(f"{c.name} {c.site}: present" in t and c.threshold in t for t in corroborations), c.site
    groups = [g for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"
              for g in item.ContentSequence]
    rule_codes = []
    for g in groups:
        items = [e for e in g.ContentSequence if e.ValueType == "CODE"]
        if any(e.ConceptCodeSequence[0].CodeValue == CORROBORATION.value for e in items):
            rule_codes += [e.ConceptNameCodeSequence[0].CodeValue for e in items
                           if e.ConceptNameCodeSequence[0].CodeValue.startswith("R-")]
    assert sorted(rule_codes) == sorted(RULE_CODES[c.threshold].value for c in expected.corroborations)
    assert len(groups) == len(expected.findings()) + 1  # + the neck-pain recovery prediction (models.neck_pain)
    (neck,) = [g for g in groups if any(e.ValueType == "CODE" and e.ConceptCodeSequence[0].CodeValue
                                        == PREDICTION_CODES["neck_pain_recovery"].value for e in g.ContentSequence)]
    (num,) = [e for e in neck.ContentSequence if e.ValueType == "NUM"]
    assert 0 < float(num.MeasuredValueSequence[0].NumericValue) < 1
    assert any("neck-pain" in str(e.ManufacturerModelName) for e in sr.ContributingEquipmentSequence)
    pdf = pydicom.dcmread(by_class[PDF_CLASS])
    assert pdf.StudyInstanceUID == m_uid and bytes(pdf.EncapsulatedDocument).startswith(b"%PDF")

    index = b"".join(p.read_bytes() for p in sp.root.glob("index.sqlite3*"))
    assert pair["pid"].encode() not in index  # the index holds only the salted key


def test_patient_window_and_identity_limit_the_pairing(tmp_path: Path, pair: dict, neck_pain) -> None:
    sp = _spool_with(tmp_path, pair["xray_files"], pair["mri_files"])
    run_analysis(sp, ["pacs"], pair["xray"].study_uid, analyze=_stand_in(pair, neck_pain), patient_window_days=6)
    report = run_analysis(sp, ["pacs"], pair["mri"].study_uid, analyze=_stand_in(pair, neck_pain), patient_window_days=6)
    assert report["objects"] == 0 and sp.outbox(pair["mri"].study_uid) == []  # 7 days apart > 6
    ident = study_identity(spool_study(sp, pair["mri"].study_uid), patient_salt(sp))
    assert find_partner(sp, ident, pair["mri"].study_uid, "xray", 7.01) is not None
    other = type(ident)(patient_key("SOMEONE-ELSE", "", patient_salt(sp)), ident.study_time)
    assert find_partner(sp, other, pair["mri"].study_uid, "xray", 90) is None
    assert find_partner(sp, type(ident)(ident.patient_key, None), pair["mri"].study_uid, "xray", 90) is None


def test_patient_report_failure_keeps_the_study_results(tmp_path: Path, pair: dict, neck_pain) -> None:
    sp = _spool_with(tmp_path, pair["xray_files"], pair["mri_files"])
    run_analysis(sp, ["pacs"], pair["xray"].study_uid, analyze=_stand_in(pair, neck_pain))
    (xrow,) = sp.results(pair["xray"].study_uid)
    Path(xrow.path).unlink()  # the partner's typed results are gone: no report, but the analysis succeeds
    report = run_analysis(sp, ["pacs"], pair["mri"].study_uid, analyze=_stand_in(pair, neck_pain))
    assert report["objects"] == 0 and sp.study(pair["mri"].study_uid).state == "done"
    assert [r.pipeline for r in sp.results(pair["mri"].study_uid)] == ["mri"]


def test_patient_one_study_with_both_modalities(tmp_path: Path, pair: dict, neck_pain) -> None:
    """An MR series filed under the radiographs' study: the study pairs with itself."""
    x_uid = pair["xray"].study_uid
    moved = []
    for p in pair["mri_files"]:
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID = x_uid
        q = tmp_path / "moved" / p.name
        q.parent.mkdir(exist_ok=True)
        ds.save_as(q, enforce_file_format=True)
        moved.append(q)
    sp = _spool_with(tmp_path, pair["xray_files"], moved)
    mri = dataclasses.replace(pair["mri"], study_uid=x_uid)
    report = run_analysis(sp, ["pacs"], x_uid, analyze=lambda st, h: _analysis(st, [pair["xray"], mri], neck_pain, h))
    assert report["objects"] == 2
    sr = pydicom.dcmread(next(Path(r.path) for r in sp.outbox(x_uid) if r.sop_class_uid == SR_CLASS))
    assert sr.StudyInstanceUID == x_uid and "PertinentOtherEvidenceSequence" not in sr
    n = len(patient_report(pair["xray"], mri).corroborations)
    assert n and len([t for t in _texts(sr) if t.startswith("Corroboration - ")]) == n
