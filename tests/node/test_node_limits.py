"""Bounded memory (``node.pdu_limits``, ``max_pdu``, ``max_instance_bytes``): a PDU declaring more than the maximum
is aborted before its body is read, a C-STORE data set over the maximum instance size is aborted as it passes the
limit (nothing stored, no file left), and data sets are received to disk: the node's peak RSS hardly grows while a
64 MB instance arrives. The node keeps answering C-ECHO after every refusal."""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from node.pdu_limits import (
    ABORT_REASON_INVALID_PDU_PARAMETER_VALUE,
    ABORT_SOURCE_SERVICE_PROVIDER,
    ABORT_SOURCE_SERVICE_USER,
    WireLimits,
    command_field,
)
from node.scp import StorageSCP
from node.scu import echo, store_files
from node.settings import NodeSettings
from node.spool import Spool
from node.spool.durable import move_atomic
from tests.node.nodetest_data import DX_PRESENTATION, make_image, write_image
from tests.node.nodetest_proc import serve
from tests.node.nodetest_raw import (
    RawAssociation,
    associate_rq,
    c_store_rq,
    encode_dataset,
    rss_kib,
    wait_closed,
)

MIB = 1 << 20


@pytest.fixture
def received_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pynetdicom's temporary files of data sets being received go here (as ``serve`` points them at the spool)."""
    d = tmp_path / "received"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def scp(tmp_path: Path, received_dir: Path) -> Iterator[StorageSCP]:
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, metrics_port=None,
                            max_pdu=16384, max_instance_bytes=MIB)
    node = StorageSCP(settings, Spool(settings.spool_dir))
    node.start()
    yield node
    node.stop()


def _associated(port: int) -> RawAssociation:
    raw = RawAssociation(port)
    assert raw.open(associate_rq([DX_PRESENTATION])) == 0x02 and raw.accepted.get(3)
    return raw


def _abort(raw: RawAssociation) -> tuple[int, int] | None:
    """(source, reason) of the A-ABORT the node sent, reading past anything else; None when none came."""
    raw.sock.settimeout(10)
    while (pdu := raw.read_pdu()) is not None:
        if pdu[0] == 0x07:
            return pdu[1][2], pdu[1][3]
    return None


def test_raw_c_store_is_stored_with_its_bytes(scp: StorageSCP, received_dir: Path) -> None:
    ds = make_image(rows=128, cols=128)
    data = encode_dataset(ds)
    raw = _associated(scp.port)
    raw.send(c_store_rq(data, DX_PRESENTATION, ds.SOPInstanceUID))
    assert raw.dimse_status() == 0
    raw.close()
    (row,) = scp.spool.instance_rows(ds.StudyInstanceUID)
    assert Path(row["path"]).read_bytes().endswith(data)  # file meta + the data set exactly as sent
    assert pydicom.dcmread(row["path"]).SOPInstanceUID == ds.SOPInstanceUID
    assert list(received_dir.iterdir()) == []  # moved into the spool, nothing left behind


def test_p_data_declaring_4_gb_is_aborted_before_its_body(scp: StorageSCP) -> None:
    raw = _associated(scp.port)
    t0 = time.monotonic()
    raw.send(struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0) + bytes(64 << 10))
    assert _abort(raw) == (ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)
    sent = sum(raw.send(bytes(1 << 16)) for _ in range(64))  # the node reads no more: the socket is closed
    assert sent < 64 and time.monotonic() - t0 < 5
    raw.close()
    assert echo("127.0.0.1", scp.port) == 0


def test_oversize_association_request_is_aborted(scp: StorageSCP) -> None:
    raw = RawAssociation(scp.port)
    raw.send(struct.pack(">BBL", 0x01, 0, 100 * MIB) + bytes(4096))
    assert _abort(raw) == (ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)
    assert wait_closed(raw.sock, 5)
    assert echo("127.0.0.1", scp.port) == 0


def test_instance_over_max_instance_bytes_is_aborted_and_leaves_nothing(scp: StorageSCP, received_dir: Path) -> None:
    big = make_image(rows=1024, cols=1024, seed=3)  # 2 MiB of pixels > 1 MiB
    raw = _associated(scp.port)
    raw.send(c_store_rq(encode_dataset(big), DX_PRESENTATION, big.SOPInstanceUID))
    assert _abort(raw) == (ABORT_SOURCE_SERVICE_USER, 0)
    raw.close()
    deadline = time.monotonic() + 5
    while list(received_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(received_dir.iterdir()) == [], "the partial data set file is removed"
    assert scp.spool.instance_uids() == set()
    small = make_image(rows=256, cols=256, seed=4)
    path = write_image(received_dir.parent / "small.dcm", small)
    assert store_files([path], "127.0.0.1", scp.port) == [0]


def test_p_data_longer_than_max_pdu_is_aborted(scp: StorageSCP) -> None:
    ds = make_image(rows=128, cols=128)
    raw = _associated(scp.port)
    raw.send(c_store_rq(encode_dataset(ds), DX_PRESENTATION, ds.SOPInstanceUID, max_pdu=32768))  # we announced 16384
    assert _abort(raw) == (ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)
    assert scp.spool.instance_uids() == set()


def test_limits_and_command_field() -> None:
    limits = WireLimits(max_pdu=16384, max_instance_bytes=MIB)
    assert limits.pdu_limit(0x04) == 16384 and limits.pdu_limit(0x01) == MIB
    assert WireLimits(max_pdu=0, max_instance_bytes=MIB).pdu_limit(0x04) > MIB
    assert WireLimits(max_pdu=0, max_instance_bytes=0).pdu_limit(0x04) == 0
    command = struct.pack("<HHLL", 0, 0, 4, 18) + struct.pack("<HHLH", 0, 0x0100, 2, 0x0001)
    assert command_field(command) == 0x0001 and command_field(b"\x00" * 5) is None
    with pytest.raises(ValueError, match="at least 4096"):
        NodeSettings(max_instance_bytes=100)


def test_move_atomic_across_file_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst, tmp = tmp_path / "src.dcm", tmp_path / "a" / "dst.dcm", tmp_path / "tmp"
    tmp.mkdir()
    src.write_bytes(b"x" * (3 * MIB + 5))
    real = os.replace

    def cross_device(a, b):  # noqa: ANN001, ANN202 - the first rename fails as it would across devices
        if Path(a) == src:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(a, b)

    monkeypatch.setattr(os, "replace", cross_device)
    move_atomic(src, dst, tmp)
    assert dst.read_bytes() == src.read_bytes() and list(tmp.iterdir()) == []


@pytest.mark.timeout(180)
def test_node_rss_bounded_while_receiving_64_mb(tmp_path: Path) -> None:
    """``cspine-node serve`` (no worker): a 64 MB instance over ``max_instance_bytes`` (48 MiB) is aborted, one
    of 40 MB is stored; the node's peak RSS (VmHWM) grows by less than 40 MB over both (the data set goes to
    disk; before, one 256 MB instance peaked at 3.1x its size)."""
    node = serve(tmp_path / "spool", tmp_path / "node.log", CSPINE_EMBEDDED_WORKER="false",
                 CSPINE_MAX_INSTANCE_BYTES=str(48 * MIB), CSPINE_LOG_JSON="true")
    try:
        assert echo("127.0.0.1", node.port) == 0
        time.sleep(0.5)
        _, peak0 = rss_kib(node.proc.pid)
        big = make_image(rows=4096, cols=8192, seed=5)  # 64 MiB of pixels
        raw = _associated(node.port)
        raw.send(c_store_rq(encode_dataset(big), DX_PRESENTATION, big.SOPInstanceUID, max_pdu=131072))
        assert _abort(raw) == (ABORT_SOURCE_SERVICE_USER, 0)
        raw.close()
        del big
        ok = make_image(rows=4096, cols=5120, seed=6)  # 40 MiB
        path = write_image(tmp_path / "ok.dcm", ok)
        del ok
        assert store_files([path], "127.0.0.1", node.port) == [0]
        assert echo("127.0.0.1", node.port) == 0
        _, peak = rss_kib(node.proc.pid)
        sp = Spool(tmp_path / "spool")
        (row,) = [r for s in sp.studies() for r in sp.instance_rows(s.study_uid)]
        assert Path(row["path"]).read_bytes()[-1000:] == path.read_bytes()[-1000:]
        assert row["size"] > 40 * MIB
        assert list((tmp_path / "spool" / "tmp").iterdir()) == []
    finally:
        node.stop()
    print(f"node peak RSS {peak0 / 1024:.0f} -> {peak / 1024:.0f} MB")
    assert (peak - peak0) < 40 * 1024, f"peak RSS grew by {(peak - peak0) / 1024:.0f} MB"
