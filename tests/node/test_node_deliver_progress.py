"""Delivery records each object as the destination acknowledges it, so an interrupted delivery re-sends only the
rest: a DIMSE destination that accepts N objects and then drops the association, the delivering process killed
(SIGKILL) while the destination holds the next C-STORE, and a STOW-RS destination that answers the first request
and drops the connection on the second. The second attempt sends exactly the objects not acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from node import deliver
from node.deliver import DeliveryError, send_rows, stow_outcome
from node.settings import Destination
from node.spool import OutboxState, Spool, header_from_dataset, write_atomic
from tests.node.nodetest_data import make_image
from tests.node.nodetest_proc import ROOT, wait_for

SC = str(SecondaryCaptureImageStorage)


def _results(spool: Spool, destination: str, n: int) -> tuple[str, list[str]]:
    """A study in the spool with ``n`` result objects queued for ``destination``."""
    src = make_image()
    buf = BytesIO()
    src.save_as(buf, enforce_file_format=True)
    spool.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))))
    _, gen = spool.begin_analysis(src.StudyInstanceUID)
    objs = []
    for i in range(n):
        ds = make_image(src.StudyInstanceUID, modality="OT", sop_class=SC, rows=32, cols=32, seed=i)
        path = spool.outbox_path(src.StudyInstanceUID, gen, ds.SOPInstanceUID)
        b = BytesIO()
        ds.save_as(b, enforce_file_format=True)
        write_atomic(b.getvalue(), path, spool.tmp_dir)
        objs.append((str(ds.SOPInstanceUID), SC, path))
    assert spool.finish_analysis(src.StudyInstanceUID, gen, objs, [destination])
    return str(src.StudyInstanceUID), [o[0] for o in objs]


def _states(spool: Spool, study: str) -> dict[str, str]:
    return {r.sop_instance_uid: r.state.value for r in spool.outbox(study)}


class Pacs:
    """A C-STORE SCP recording the SOP Instance UIDs it acknowledged, per association. ``then`` says what happens
    to the request after ``accept`` successes: ``"abort"`` the association, ``"hold"`` (block until ``release``)."""

    def __init__(self) -> None:
        self.accept: int | None = None
        self.then = "abort"
        self.acked: list[list[str]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        ae = AE("PACS")
        ae.add_supported_context(SC)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, lambda e: self.acked.append([]))])
        self.port = int(self.server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        if self.accept is not None and sum(map(len, self.acked)) >= self.accept:
            if self.then == "hold":
                self.holding.set()
                self.release.wait(30)
                return 0xA700
            event.assoc.abort()
            return 0xA700
        self.acked[-1].append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    p = Pacs()
    yield p
    p.stop()


def test_dimse_destination_dropping_after_n_gets_only_the_rest(tmp_path: Path, pacs: Pacs) -> None:
    spool = Spool(tmp_path / "spool")
    study, uids = _results(spool, "pacs", 6)
    # timeout_s: how long the sender waits for the answer the aborting destination never sends
    dest = Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=pacs.port, timeout_s=3)
    pacs.accept = 3
    with pytest.raises(DeliveryError) as e:
        send_rows(dest, spool.pending_outbox(study, "pacs"), spool)
    assert len(e.value.failed_ids) == 3
    assert _states(spool, study) == {u: "sent" if i < 3 else "pending" for i, u in enumerate(uids)}
    pacs.accept = None
    send_rows(dest, spool.pending_outbox(study, "pacs"), spool)
    assert pacs.acked[0] == uids[:3] and pacs.acked[-1] == uids[3:]
    assert set(_states(spool, study).values()) == {"sent"}


@pytest.mark.timeout(120)
def test_dimse_delivery_killed_midway_resends_only_the_unacknowledged(tmp_path: Path, pacs: Pacs) -> None:
    """kill -9 of the delivering process while the destination holds the 4th C-STORE: the 3 acknowledged objects
    are recorded as sent (before, the whole batch was sent again)."""
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    study, uids = _results(spool, "pacs", 6)
    dest = Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=pacs.port, timeout_s=30)
    pacs.accept, pacs.then = 3, "hold"
    code = ("import json, sys; from node.deliver import send_rows; from node.settings import Destination; "
            "from node.spool import Spool; sp = Spool(sys.argv[1]); d = Destination(**json.loads(sys.argv[2])); "
            "send_rows(d, sp.pending_outbox(sys.argv[3], 'pacs'), sp)")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(spool_dir), dest.model_dump_json(), study], cwd=ROOT,
                            env=env)
    try:
        assert pacs.holding.wait(60), "the 4th C-STORE never arrived"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    pacs.release.set()
    assert _states(spool, study) == {u: "sent" if i < 3 else "pending" for i, u in enumerate(uids)}
    pacs.accept = None
    send_rows(dest, spool.pending_outbox(study, "pacs"), spool)
    wait_for(lambda: pacs.acked[-1] == uids[3:], 10, "the second association")
    assert pacs.acked[0] == uids[:3], "the first attempt's acknowledged objects are not sent again"
    assert set(_states(spool, study).values()) == {"sent"}


class _Stow(BaseHTTPRequestHandler):
    """STOW-RS: answers with the SOP Instance UIDs it received in ReferencedSOPSequence; drops the connection
    without an answer on request number ``server.drop_on``."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1  # type: ignore[attr-defined]
        if self.server.requests == self.server.drop_on:  # type: ignore[attr-defined]
            self.close_connection = True
            self.connection.shutdown(2)
            return
        boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
        uids = []
        for part in body.split(b"--" + boundary):
            if b"DICM" in part:
                data = part.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n")
                uids.append(str(pydicom.dcmread(BytesIO(data)).SOPInstanceUID))
        self.server.received.append(uids)  # type: ignore[attr-defined]
        payload = json.dumps({"00081199": {"vr": "SQ", "Value": [
            {"00081150": {"vr": "UI", "Value": [SC]}, "00081155": {"vr": "UI", "Value": [u]}} for u in uids]}})
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_stow_destination_dropping_the_second_request_gets_only_the_rest(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "STOW_BATCH", 2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stow)
    server.requests, server.drop_on, server.received = 0, 2, []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spool = Spool(tmp_path / "spool")
        study, uids = _results(spool, "archive", 5)
        dest = Destination(name="archive", kind="stow", url=f"http://127.0.0.1:{server.server_address[1]}/dicom-web",
                           timeout_s=10)
        with pytest.raises(DeliveryError, match="STOW-RS"):
            send_rows(dest, spool.pending_outbox(study, "archive"), spool)
        assert _states(spool, study) == {u: "sent" if i < 2 else "pending" for i, u in enumerate(uids)}
        send_rows(dest, spool.pending_outbox(study, "archive"), spool)
        assert server.received == [uids[:2], uids[2:4], uids[4:]]  # type: ignore[attr-defined]
        assert set(_states(spool, study).values()) == {OutboxState.SENT.value}
    finally:
        server.shutdown()


def test_stow_outcome_per_instance() -> None:
    from node.spool import OutboxRow

    rows = [OutboxRow(i, "s", 1, "d", f"1.2.{i}", SC, "/x", OutboxState.PENDING, 0, "", 0.0, 0.0, None)
            for i in range(3)]

    def response(referenced: list[int], failed: list[int]) -> pydicom.Dataset:
        ds = pydicom.Dataset()
        for keyword, ids in (("ReferencedSOPSequence", referenced), ("FailedSOPSequence", failed)):
            if ids:
                setattr(ds, keyword, [pydicom.Dataset() for _ in ids])
                for item, i in zip(getattr(ds, keyword), ids, strict=True):
                    item.ReferencedSOPInstanceUID = f"1.2.{i}"
        return ds

    assert stow_outcome(response([], []), rows) == ([0, 1, 2], [])  # empty 200 OK: all stored
    assert stow_outcome(response([0, 2], [1]), rows) == ([0, 2], [1])
    assert stow_outcome(response([0], []), rows) == ([0], [1, 2])  # not listed: sent again
    assert stow_outcome(response([], [2]), rows) == ([0, 1], [2])
