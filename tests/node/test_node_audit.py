"""The audit trail: events from a real SCP over TLS (accepted with the certificate subject, instance stored, access
refused for a foreign certificate and a foreign AE title), the analysis task, and deliveries (delivered, failed),
in one append-only, 0600 JSON-lines file per day with no patient name or ID in it; concurrent writers from several
processes keep every line whole."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from node import audit, tls
from node.audit import AuditEvent, AuditTrail, Outcome, read_events
from node.deliver import DeliveryError, send_rows
from node.scp import StorageSCP
from node.scu import AssociationFailed, store_files
from node.settings import Destination, NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import make_image, write_image
from tests.node.nodetest_tls import pki_fixture  # noqa: F401 - the fixture ``pki``
from tests.services import free_port

PATIENT_NAME, PATIENT_ID = "Test^Secret", "SECRET-ID-123"  # what nodetest_data.make_image writes


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_record_refuses_patient_fields_and_writes_private_lines(tmp_path: Path) -> None:
    t = AuditTrail(tmp_path / "audit", node_aet="CSPINE")
    with pytest.raises(ValueError, match="patient_name"):
        t.record(AuditEvent.INSTANCE_STORED, patient_name="x")
    assert t.record(AuditEvent.ACCESS_REFUSED, Outcome.MINOR_FAILURE, peer_ip="10.0.0.9", reason="TLS")
    (f,) = (tmp_path / "audit").iterdir()
    assert f.name.startswith("audit-") and f.suffix == ".jsonl"
    assert _mode(f) == 0o600 and _mode(f.parent) == 0o700
    (e,) = read_events(tmp_path / "audit")
    assert (e["event"], e["event_id"], e["event_type"], e["outcome"]) == (
        "access_refused", "110113", ["110126", "Node Authentication"], 4)
    assert e["source"]["ae_title"] == "CSPINE" and e["time"].endswith("Z")


def _writer(directory: str, n: int) -> None:
    t = AuditTrail(Path(directory))
    for i in range(n):
        t.record(AuditEvent.INSTANCE_STORED, sop_instance_uid=f"1.2.3.{i}", reason="x" * 3000)


def test_concurrent_processes_append_whole_lines(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 150)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = b"".join(p.read_bytes() for p in tmp_path.glob("audit-*.jsonl")).splitlines()
    assert len(lines) == 450
    assert len({json.loads(x)["source"]["pid"] for x in lines}) == 3


def test_scp_analysis_and_delivery_events_without_patient_data(tmp_path: Path, pki: SimpleNamespace,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, tls_port=0, metrics_port=None,
                            allowed_calling_aets=["MODALITY"], tls_certificate=pki.node.certificate,
                            tls_private_key=pki.node.key, tls_ca_bundle=pki.a.certificate,
                            association_request_timeout_s=3)
    spool = Spool(settings.spool_dir)
    scp = StorageSCP(settings, spool)
    peer = StorageSCP(NodeSettings(spool_dir=tmp_path / "peer", host="127.0.0.1", port=0, metrics_port=None),
                      Spool(tmp_path / "peer"))
    scp.start()
    peer.start()
    try:
        study = pydicom.uid.generate_uid()
        files = [write_image(tmp_path / f"i{i}.dcm", make_image(study, seed=i)) for i in range(2)]
        good = tls.client_context(pki.a.certificate, pki.client.certificate, pki.client.key)
        assert store_files(files, "127.0.0.1", scp.tls_port, calling_aet="MODALITY",
                           tls_args=(good, "127.0.0.1")) == [0, 0]
        assert store_files(files[:1], "127.0.0.1", scp.port, calling_aet="MODALITY") == [0]  # a duplicate
        with pytest.raises(AssociationFailed):
            store_files(files, "127.0.0.1", scp.port, calling_aet="STRANGER", timeout_s=10)
        rogue = tls.client_context(pki.a.certificate, pki.rogue.certificate, pki.rogue.key)
        with pytest.raises(AssociationFailed):
            store_files(files, "127.0.0.1", scp.tls_port, calling_aet="MODALITY", tls_args=(rogue, "127.0.0.1"),
                        timeout_s=10)

        # the analysis task (the analysis itself stubbed: the audit hook is in the task)
        from node import tasks

        tasks.configure(settings)
        monkeypatch.setattr(tasks, "run_analysis", lambda *a, **k: {
            "study_uid": study, "generation": 1, "objects": 2, "skipped": ["one view"], "queued": False,
            "models": [["xray", "keypoints", "1.0"], ["xray", "curvature", "1.0"]]})
        assert tasks.analyze_study.apply(args=(study,)).get()["generation"] == 1

        # deliveries: to a peer SCP (delivered), to nobody (failed)
        from tests.node.test_node_deliver import _results

        out_study, uids = _results(spool, ["peer", "down"])
        send_rows(Destination(name="peer", kind="dimse", ae_title="PEER", host="127.0.0.1", port=peer.port),
                  spool.pending_outbox(out_study, "peer"), spool)
        with pytest.raises(DeliveryError):
            send_rows(Destination(name="down", kind="dimse", ae_title="X", host="127.0.0.1", port=free_port(),
                                  timeout_s=5), spool.pending_outbox(out_study, "down"), spool)
    finally:
        scp.stop()
        peer.stop()

    folder = spool.root / audit.AUDIT_DIR
    events = read_events(folder)
    by = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
    accepted = [e for e in by["association_accepted"] if e.get("tls_subject")]
    assert accepted and "CN=storescu-a" in accepted[0]["tls_subject"] and accepted[0]["peer_aet"] == "MODALITY"
    assert accepted[0]["tls_version"] in {"TLSv1.2", "TLSv1.3"} and accepted[0]["peer_ip"] == "127.0.0.1"
    stored = by["instance_stored"]
    assert [e["stored"] for e in stored] == ["new", "new", "duplicate"] and {e["study_uid"] for e in stored} == {study}
    assert stored[0]["event_id"] == "110104" and stored[0]["action"] == "C"
    reasons = {e["reason"] for e in by["access_refused"]}
    assert len(reasons) == 2 and "calling AE title not allowed" in reasons, reasons
    assert any(r.startswith("TLS handshake failed: CERTIFICATE_VERIFY_FAILED (") for r in reasons), reasons
    (analysed,) = by["study_analysed"]
    assert analysed["pipelines"] == ["xray"] and analysed["objects"] == 2 and analysed["skipped"] == 1
    (delivered,) = by["results_delivered"]
    assert delivered["destination"] == "peer" and delivered["count"] == 2
    assert set(delivered["sop_instance_uids"]) == set(uids)
    (failed,) = by["delivery_failed"]
    assert failed["destination"] == "down" and failed["outcome"] == 4 and "unreachable" in failed["reason"]
    text = b"".join(p.read_bytes() for p in folder.iterdir())
    for secret in (PATIENT_NAME, PATIENT_ID, "Secret"):
        assert secret.encode() not in text
    for p in folder.iterdir():
        assert _mode(p) == 0o600
    assert _mode(folder) == 0o700
