"""Issue 17 part 2/3: prior-study comparison against a real Orthanc (tests/services.py).

The prior is an earlier phantom X-ray study of the same patient (2024-01-01) whose SR this node wrote; the current
study (2026-01-01) is analysed by ``node.tasks.run_analysis`` with the real pipelines and the shipped models. The
PACS holds the prior's SR (and, in one case, its images); it is found through QIDO-RS (stow destination) and through
C-FIND + C-GET (dimse destination); the comparison is in the new SR, the report page and summary.txt. A prior study
without an SR, with another vendor's SR or a broken one, and an unreachable PACS each give a note, not a failure.
"""

from __future__ import annotations

import copy
import shutil
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from node import tasks
from node.priors import PriorHistory
from node.settings import Destination
from node.spool import Spool, header_from_dataset
from pipelines.dicom_out import encode
from pipelines.dicom_out.example import phantom_example
from pipelines.study import Study
from pipelines.vocabulary import PipelineName
from tests.services import free_port

pytestmark = [pytest.mark.integration]

PID, NODE_AET = "PRIORS-TEST-1", "CSPINE"


def _relabel(src: list[Path], out: Path, date: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in src:
        ds = pydicom.dcmread(p)
        ds.PatientID, ds.StudyDate = PID, date
        paths.append(out / p.name)
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The prior (seed 6: images + the SR this node wrote, dated 2024-01-01) and the current study (seed 5)."""
    base = tmp_path_factory.mktemp("priors")
    prior_study, prior_result = phantom_example(6, base / "prior_raw", shape=(1024, 832))
    prior_files = _relabel([i.path for i in prior_study.instances], base / "prior", "20240101")
    prior = Study.from_paths(prior_files)[0]
    sr = encode(prior, prior_result)[0]
    current_study, _ = phantom_example(5, base / "current_raw", shape=(1024, 832))
    current = _relabel([i.path for i in current_study.instances], base / "current", "20260101")
    return {"prior_files": prior_files, "prior_sr": sr, "prior_uid": prior.study_uid, "current": current,
            "prior_result": prior_result}


def _sr_bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _upload_sr(orthanc, ds: Dataset, tmp: Path) -> None:  # noqa: ANN001
    p = tmp / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(p, enforce_file_format=True)
    orthanc.upload(p)


def _spool_with(tmp: Path, files: list[Path]) -> tuple[Spool, str]:
    sp = Spool(tmp / "spool")
    for p in files:
        data = p.read_bytes()
        sp.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data), stop_before_pixels=True)))
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sp.mark_dispatched(uid, sp.study(uid).generation, "t1")
    return sp, uid


def _analyse(sp: Spool, uid: str, models, dests: list[Destination]) -> tuple[Dataset, str, list[Dataset]]:  # noqa: ANN001
    import pipelines

    report = tasks.run_analysis(sp, [], uid, lambda study, history: pipelines.analyze(study, models, history),
                                prior_destinations=dests, calling_aet=NODE_AET)
    objects = [pydicom.dcmread(p) for p in sorted((sp.root / "outbox").rglob("*")) if p.is_file() and p.name != "summary.txt"
               and uid in str(p)]
    objects = [o for o in objects if o.StudyInstanceUID == uid and o.get("Modality") in {"SR", "OT"}]
    summary = next(p for p in (sp.root / "outbox").rglob("summary.txt") if uid in str(p)).read_text()
    assert report["objects"] > 0
    sr = next(o for o in objects if o.Modality == "SR" and "TID 1500 SR" in str(o.SeriesDescription))
    return sr, summary, objects


def _remarks(sr: Dataset) -> list[str]:
    return [str(c.TextValue) for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "C0034375"
            for c in item.ContentSequence if c.ValueType == "TEXT"]


def _stow(orthanc) -> Destination:  # noqa: ANN001
    return Destination(name="archive", kind="stow", url=orthanc.dicomweb_url, priors=True, priors_timeout_s=10)


def _dimse(orthanc) -> Destination:  # noqa: ANN001
    return Destination(name="pacs", kind="dimse", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                       priors=True, priors_timeout_s=10)


def _orthanc(orthanc_factory):  # noqa: ANN001, ANN202 - our AE may C-FIND and C-GET
    return orthanc_factory(modalities={"NODE": (NODE_AET, "127.0.0.1", free_port())})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stow", "dimse"])
def test_prior_sr_in_pacs_is_compared(kind: str, phantoms: dict, orthanc_factory, models, tmp_path: Path) -> None:  # noqa: ANN001
    orthanc = _orthanc(orthanc_factory)
    if kind == "stow":  # the prior's SR only
        _upload_sr(orthanc, phantoms["prior_sr"], tmp_path)
    else:  # the prior study's images and its SR
        for p in phantoms["prior_files"]:
            orthanc.upload(p)
        _upload_sr(orthanc, phantoms["prior_sr"], tmp_path)
    dest = _stow(orthanc) if kind == "stow" else _dimse(orthanc)
    sp, uid = _spool_with(tmp_path, phantoms["current"])
    sr, summary, objects = _analyse(sp, uid, models, [dest])
    source = "archive (QIDO-RS)" if kind == "stow" else "pacs (C-FIND)"
    remarks = _remarks(sr)
    head = next((t for t in remarks if t.startswith("Compared with")), None)
    assert head is not None and head.startswith(f"Compared with 2024-01-01 (2.0 years earlier, {source})"), remarks[-5:]
    cobb = [t for t in remarks if t.startswith("Comparison: C2-C7 Cobb angle [neutral]")]
    assert len(cobb) == 1 and ", was " in cobb[0] and "on 2024-01-01, change " in cobb[0] and "/year)" in cobb[0]
    assert f"Compared with 2024-01-01 (2.0 years earlier, {source})" in summary
    assert "C2-C7 Cobb angle [neutral]:" in summary
    assert any(o.Modality == "OT" for o in objects)  # the report page (its table: test_dicom_out_sr_compare)


@pytest.mark.slow
def test_prior_from_the_node_index_needs_no_pacs(phantoms: dict, models, tmp_path: Path) -> None:  # noqa: ANN001
    sp, prior_uid = _spool_with(tmp_path, phantoms["prior_files"])
    _analyse(sp, prior_uid, models, [])
    files = phantoms["current"]
    for p in files:
        data = p.read_bytes()
        sp.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data), stop_before_pixels=True)))
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sp.mark_dispatched(uid, sp.study(uid).generation, "t2")
    unreachable = Destination(name="down", kind="stow", url=f"http://127.0.0.1:{free_port()}/dicom-web", priors=True)
    sr, summary, _ = _analyse(sp, uid, models, [unreachable])
    assert "Compared with 2024-01-01 (2.0 years earlier, node index)" in summary
    assert any(t.startswith("Comparison: C2-C7 Cobb angle [neutral]") and "change +0.00" not in t for t in _remarks(sr))


@pytest.mark.parametrize("kind", ["stow", "dimse"])
def test_missing_foreign_and_broken_priors_give_notes(kind: str, phantoms: dict, orthanc_factory, tmp_path: Path) -> None:  # noqa: ANN001
    orthanc = _orthanc(orthanc_factory)
    for p in phantoms["prior_files"]:  # an earlier X-ray study without any SR
        orthanc.upload(p)
    foreign = copy.deepcopy(phantoms["prior_sr"])  # another vendor's SR in another earlier study
    foreign.Manufacturer = "ACME Imaging"
    del foreign.CodingSchemeIdentificationSequence
    foreign.StudyInstanceUID, foreign.StudyDate = pydicom.uid.generate_uid(), "20250101"
    foreign.SeriesInstanceUID, foreign.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    _upload_sr(orthanc, foreign, tmp_path)
    broken = copy.deepcopy(phantoms["prior_sr"])  # this node's SR without its content
    broken.ContentSequence = []
    broken.StudyInstanceUID, broken.StudyDate = pydicom.uid.generate_uid(), "20250601"
    broken.SeriesInstanceUID, broken.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    _upload_sr(orthanc, broken, tmp_path)
    shutil.rmtree(tmp_path / "spool", ignore_errors=True)
    sp = Spool(tmp_path / "spool")
    current = Study.from_paths(phantoms["current"])[0]
    history = PriorHistory(sp, 90, [_stow(orthanc) if kind == "stow" else _dimse(orthanc)], calling_aet=NODE_AET)
    priors = history.priors(current, PipelineName.XRAY)
    notes = {p.study_date: p.note for p in priors}
    assert all(p.result is None for p in priors)
    assert notes["20240101"].startswith("no SR of this node in that study")
    assert notes["20250101"].startswith("prior SR from another vendor (ACME Imaging")
    assert "no single pipeline" in notes["20250601"] or "no measurement" in notes["20250601"]
    from pipelines.patient.compare import compare

    cmp = compare(phantoms["prior_result"], "20260101", priors)
    assert cmp is not None and not cmp.compared and len(cmp.notes) == 3
    # for an MRI study of the patient the earlier radiographs without an SR are no concern (the SR notes are)
    assert sorted(p.study_date for p in history.priors(current, PipelineName.MRI)) == ["20250101", "20250601"]


def test_unreachable_pacs_is_a_note(phantoms: dict, orthanc_factory, tmp_path: Path) -> None:  # noqa: ANN001
    import logging

    sp = Spool(tmp_path / "spool")
    current = Study.from_paths(phantoms["current"])[0]
    orthanc = orthanc_factory()
    dests = [Destination(name="web", kind="stow", url=f"http://127.0.0.1:{free_port()}/dicom-web", priors=True, priors_timeout_s=1),
             Destination(name="wrongpath", kind="stow", url=orthanc.http_url + "/no-such-root", priors=True),
             Destination(name="dimse", kind="dimse", ae_title="NONE", host="127.0.0.1", port=free_port(), priors=True,
                         priors_timeout_s=1)]
    from io import StringIO

    from node.logs import CHATTY_LOGGERS, setup_logging

    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", *CHATTY_LOGGERS, "celery")}
    out = StringIO()
    setup_logging("DEBUG", stream=out)  # the node's own logging, at its most verbose
    try:
        priors = PriorHistory(sp, 90, dests).priors(current, PipelineName.XRAY)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_cspine", False)]:
            root.removeHandler(h)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    assert [p.note.split(":")[0] for p in priors] == ["web", "wrongpath", "dimse"]
    assert all("prior lookup failed" in p.note for p in priors)
    assert "HTTPError" in priors[1].note
    # the failed request's URL held the Patient ID: neither the notes nor the node's log repeat it
    assert "prior lookup" in out.getvalue()
    assert not any(PID in p.note for p in priors) and PID not in out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stow", "dimse"])
def test_partner_for_the_patient_report_from_the_pacs(kind: str, orthanc_factory, models, tmp_path: Path) -> None:  # noqa: ANN001
    """The X-ray study reached the PACS (with this node's SR) before this node's index knew it: the MRI study of the
    same patient a week later pairs with it through the same query (QIDO-RS or C-FIND), and the patient-level report
    is made."""
    import pipelines
    from pipelines.phantoms.paired import paired_phantom_studies

    xray_files, mri_files = paired_phantom_studies(9, tmp_path / "in")
    xray = Study.from_paths(xray_files)[0]
    xray_sr = next(o for o in pipelines.analyze(xray, models, None).objects if o.Modality == "SR")
    orthanc = _orthanc(orthanc_factory)
    _upload_sr(orthanc, xray_sr, tmp_path)
    sp, uid = _spool_with(tmp_path, mri_files)
    seen = {}

    def analyze(study, history):  # noqa: ANN001, ANN202
        seen["analysis"] = pipelines.analyze(study, models, history)
        return seen["analysis"]

    dest = _stow(orthanc) if kind == "stow" else _dimse(orthanc)
    tasks.run_analysis(sp, [], uid, analyze, prior_destinations=[dest], calling_aet=NODE_AET)
    analysis = seen["analysis"]
    assert analysis.partner_study_uid == xray.study_uid, analysis.warnings
    assert [o.Modality for o in analysis.patient_objects] == ["SR", "DOC"]
    assert xray.study_uid.encode() in _sr_bytes(analysis.patient_objects[0])  # the patient SR names the X-ray study


@pytest.mark.slow
def test_through_serve_the_pacs_gets_the_compared_sr(phantoms: dict, orthanc_factory, tmp_path: Path) -> None:  # noqa: ANN001
    """The whole node: ``cspine-node serve`` (embedded worker, real pipelines) receives the current study, finds the
    prior's SR in the PACS by C-FIND + C-GET (``priors: true`` on its dimse destination), and the SR it delivers
    to that PACS carries the comparison."""
    import json

    from node.scu import store_files
    from tests.node.nodetest_proc import serve, wait_for

    orthanc = _orthanc(orthanc_factory)
    _upload_sr(orthanc, phantoms["prior_sr"], tmp_path)
    spool_dir = tmp_path / "spool"
    node = serve(spool_dir, tmp_path / "serve.log", CSPINE_STABLE_AGE_S="1", CSPINE_DELIVER_BACKOFF_MAX_S="5",
                 CSPINE_AE_TITLE=NODE_AET,
                 CSPINE_DESTINATIONS=json.dumps([{"name": "pacs", "kind": "dimse", "ae_title": orthanc.aet,
                                                  "host": "127.0.0.1", "port": orthanc.dicom_port, "priors": True,
                                                  "priors_timeout_s": 10}]))
    try:
        files = phantoms["current"]
        assert store_files(files, "127.0.0.1", node.port) == [0] * len(files)
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        sp = Spool(spool_dir)
        wait_for(lambda: (r := sp.study(uid)) is not None and r.state in {"done", "failed", "skipped"}, 300, "analysis")
        assert sp.study(uid).state == "done", f"{sp.study(uid).reason}\n{node.log()}"
        wait_for(lambda: (o := sp.outbox(uid)) and all(r.state == "sent" for r in o), 120, "delivery")
        srs = [orthanc.get(f"/instances/{i}/file").content for i in orthanc.instances()]
        mine = [pydicom.dcmread(BytesIO(b)) for b in srs]
        new_sr = next(d for d in mine if d.StudyInstanceUID == uid and d.Modality == "SR"
                      and "TID 1500 SR" in str(d.get("SeriesDescription", "")))
        assert any(t.startswith("Compared with 2024-01-01 (2.0 years earlier, pacs (C-FIND))") for t in _remarks(new_sr))
        assert PID not in node.log()  # the Patient ID of the query is never logged
    finally:
        node.stop()
