"""Connections that cannot starve the SCP: silent and half-open sockets (raw TCP over loopback) are closed within
the A-ASSOCIATE-RQ deadline, a peer address beyond its pending cap is closed at once, and a real pynetdicom C-ECHO
from an allowed peer is answered meanwhile. ``bench/connection_flood.py`` runs the same with 100 sockets."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from node.connections import PendingConnections
from node.scp import StorageSCP
from node.scu import echo
from node.settings import NodeSettings
from node.spool import Spool

PARTIAL_RQ = b"\x01\x00\x00\x00\x01\x00\x00\x01"  # A-ASSOCIATE-RQ header declaring 256 bytes, then 2 of them


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator:
    started: list[StorageSCP] = []

    def start(**kw) -> StorageSCP:
        settings = NodeSettings(spool_dir=tmp_path / f"spool{len(started)}", host="127.0.0.1", port=0,
                                metrics_port=None, **kw)
        scp = StorageSCP(settings, Spool(settings.spool_dir))
        scp.start()
        started.append(scp)
        return scp

    yield start
    for s in started:
        s.stop()


def _connect(port: int, source: str, payload: bytes = b"") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if payload:
        s.sendall(payload)
    return s


def _closed_at(socks: list[socket.socket], until: float) -> dict[int, float]:
    """Wait (bounded by ``until``, monotonic) for the peer to close each socket; index -> monotonic time."""
    closed: dict[int, float] = {}
    while len(closed) < len(socks) and time.monotonic() < until:
        open_ = [s for i, s in enumerate(socks) if i not in closed]
        ready, _, _ = select.select(open_, [], [], 0.05)
        for s in ready:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed[socks.index(s)] = time.monotonic()
    return closed


def _timed_echo(port: int) -> float:
    t0 = time.monotonic()
    assert echo("127.0.0.1", port, timeout_s=10) == 0
    return time.monotonic() - t0


def test_silent_and_half_open_connections_do_not_starve_echo(start_scp) -> None:
    deadline = 2.0
    scp = start_scp(association_request_timeout_s=deadline, max_pending_per_host=8, allowed_hosts=["127.0.0.1"])
    socks, opened = [], []
    for i in range(30):  # 127.0.0.2 .. 127.0.0.5, at most 8 from each address; every other one half-open
        socks.append(_connect(scp.port, f"127.0.0.{2 + i // 8}", PARTIAL_RQ if i % 2 else b""))
        opened.append(time.monotonic())
    over_cap = [_connect(scp.port, "127.0.0.2") for _ in range(3)]  # 127.0.0.2 already has 8 pending
    try:
        t_over = time.monotonic()
        assert len(_closed_at(over_cap, t_over + 1.0)) == 3  # closed at once, not after the deadline
        assert scp.pending.count() == 30
        echo_s = [_timed_echo(scp.port) for _ in range(3)]
        assert max(echo_s) < 2.0, echo_s
        closed = _closed_at(socks, opened[-1] + deadline + 3.0)
        assert len(closed) == 30
        late = [closed[i] - opened[i] for i in closed]
        # closed by the deadline, plus scheduling slack: the server's clock starts at its accept, after the client's,
        # and a loaded 2-core machine was seen 0.6 s late in a CI dry run (a connection held open would take 30 s+)
        assert max(late) < deadline + 1.0, late
        assert min(late) > deadline - 0.5, late  # ... and not before
        assert _timed_echo(scp.port) < 2.0
        assert scp.pending.count() == 0
    finally:
        for s in socks + over_cap:
            s.close()


def test_slots_count_requests_not_connections(start_scp) -> None:
    """With one association slot, silent sockets take none; a second complete request gets A-ASSOCIATE-RJ
    (rejected transient, service provider, local limit exceeded) and the slot is free again after release."""
    scp = start_scp(max_associations=1, association_request_timeout_s=3.0)
    silent = [_connect(scp.port, "127.0.0.2") for _ in range(5)]
    try:
        ae = AE("A")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", scp.port, ae_title="CSPINE")
        assert first.is_established
        try:
            second = ae.associate("127.0.0.1", scp.port, ae_title="CSPINE")
            assert second.is_rejected
            rj = second.acceptor.primitive
            assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
        finally:
            first.release()
        for _ in range(50):  # the slot is freed when the first association's close event has run
            if len(scp.slots) == 0:
                break
            time.sleep(0.05)
        assert echo("127.0.0.1", scp.port) == 0
    finally:
        for s in silent:
            s.close()


def test_pending_cap_and_deadline_unit() -> None:
    pending = PendingConnections(deadline_s=1.0, max_per_host=2)
    a, b, c, d = (socket.socket() for _ in range(4))
    try:
        assert pending.admit(a, "10.0.0.1", now=0.0) and pending.admit(b, "10.0.0.1", now=0.5)
        assert not pending.admit(c, "10.0.0.1", now=0.6)  # third from the same address
        assert pending.admit(d, "10.0.0.2", now=0.6)  # another address has its own cap
        pending.settle(b)
        assert pending.count("10.0.0.1") == 1
        assert pending.sweep(now=0.9) == 0
        assert pending.sweep(now=1.0) == 1  # a expired; d (0.6) not yet
        assert pending.count() == 1
        d.close()
        assert pending.sweep(now=1.1) == 0 and pending.count() == 0  # closed sockets are forgotten
    finally:
        for s in (a, b, c, d):
            s.close()


def test_fifty_concurrent_senders_are_accepted_or_told_to_retry(start_scp) -> None:
    """Default settings (10 associations): 50 senders at once from one host are each accepted, rejected transient
    with 'local limit exceeded' (result 2, reason 2), or — while more than ``max_pending_per_host`` of their
    connections are still opening — closed before their request (a network error a sender retries); never refused
    for good; and, retrying as a DICOM sender does, all 50 instances are stored."""
    import threading

    from tests.node.nodetest_data import make_image

    scp = start_scp()
    refusals: list[tuple[int, int, int]] = []
    stored: dict[int, int] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        ds = make_image(f"1.2.826.0.1.3680043.10.1.{i + 1}")
        ae = AE(ae_title=f"SENDER{i}")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        for _ in range(40):
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="CSPINE")
            if assoc.is_established:
                status = assoc.send_c_store(ds)
                assoc.release()
                with lock:
                    stored[i] = int(status.Status) if status else -1
                return
            with lock:
                if assoc.is_rejected:
                    p = assoc.acceptor.primitive
                    refusals.append((int(p.result), int(p.result_source), int(p.diagnostic)))
                else:
                    refusals.append((-1, -1, -1))  # aborted or cut off: not a DICOM 'retry later'
            time.sleep(0.2)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(refusals) <= {(2, 3, 2), (-1, -1, -1)}, set(refusals)  # transient reject, or closed while pending
    assert stored == dict.fromkeys(range(50), 0)
    assert len(list(scp.spool.root.rglob("*.dcm"))) == 50
