"""The SCP's receive path, made cheaper per instance: PDU bodies read with ``recv_into`` in chunks
(``LimitedAssociationSocket._read_body``) and received data set files written back to disk as they grow
(``node.writeback``). The C-STORE path through them end to end is in ``test_node_scp`` / ``test_node_limits``."""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import pydicom
import pytest

from node import writeback
from node.pdu_limits import READ_CHUNK, LimitedAssociationSocket
from node.scp import StorageSCP
from node.scu import store_files
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import make_image

MIB = 1 << 20


def _reader(sock: socket.socket) -> LimitedAssociationSocket:
    r = LimitedAssociationSocket.__new__(LimitedAssociationSocket)  # only ``socket`` is used by ``_read_body``
    r.socket = sock
    return r


def _send_in_pieces(sock: socket.socket, data: bytes, piece: int, close: bool = True) -> threading.Thread:
    def run() -> None:
        for i in range(0, len(data), piece):
            sock.sendall(data[i:i + piece])
            time.sleep(0.001)
        if close:
            sock.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("size", [6, 100_000, READ_CHUNK, 3 * READ_CHUNK + 12345])
def test_a_pdu_body_arriving_in_pieces_is_read_whole(size: int) -> None:
    a, b = socket.socketpair()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    writer = _send_in_pieces(b, payload, 70_001, close=False)
    try:
        got = _reader(a)._read_body(size)
        assert isinstance(got, bytearray) and got == payload
    finally:
        writer.join(10)
        a.close()
        b.close()


@pytest.mark.parametrize("declared", [1000, 512 * MIB])
def test_a_body_cut_short_by_the_peer_returns_what_came_without_allocating_what_was_declared(declared: int) -> None:
    """The DUL sees a short PDU and ends the association, as with pynetdicom's own ``recv``; memory follows the bytes
    that arrived, not the length a (hostile) header declared."""
    a, b = socket.socketpair()
    writer = _send_in_pieces(b, b"x" * 10, 10)
    tracemalloc.start()
    try:
        got = _reader(a)._read_body(declared)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        writer.join(10)
        a.close()
    assert got == bytearray(b"x" * 10)
    assert peak < 2 * READ_CHUNK + MIB


def test_a_received_file_starts_its_writeback_every_chunk_and_keeps_its_bytes(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int, int]] = []
    monkeypatch.setattr(writeback, "_SYNC", lambda fd, off, n, flags: calls.append((fd, off, n, flags)) or 0)
    data = bytes(range(256)) * (10 * MIB // 256) + b"tail"
    tmp = writeback.named_temporary_file(delete=False, mode="wb", suffix=".dcm", dir=tmp_path)
    for i in range(0, len(data), 131_066):  # as pynetdicom writes P-DATA fragments: write, then flush each
        tmp.write(data[i:i + 131_066])
        tmp.file.flush()
    tmp.close()
    assert Path(tmp.name).read_bytes() == data
    assert {c[3] for c in calls} == {2}  # SYNC_FILE_RANGE_WRITE: start the writes, do not wait
    assert [c[1] for c in calls] == [0] + [c[1] + c[2] for c in calls[:-1]]  # contiguous ranges from the start
    assert all(c[2] >= writeback.CHUNK for c in calls)
    assert len(data) - (calls[-1][1] + calls[-1][2]) < writeback.CHUNK  # only the last MiB is left to the fsync


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_receive_to_files_puts_pynetdicom_on_files_written_back_as_they_grow(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pynetdicom import _config, dimse_messages

    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    monkeypatch.setattr(dimse_messages, "NamedTemporaryFile", dimse_messages.NamedTemporaryFile)
    assert writeback.receive_to_files() is True
    assert _config.STORE_RECV_CHUNKED_DATASET is True
    assert dimse_messages.NamedTemporaryFile is writeback.named_temporary_file
    tmp = dimse_messages.NamedTemporaryFile(delete=False, mode="wb", dir=tmp_path)
    tmp.write(b"\0" * (2 * MIB))
    tmp.file.flush()  # the real sync_file_range: it must accept the call
    assert tmp.file._started == 2 * MIB
    tmp.close()
    assert Path(tmp.name).stat().st_size == 2 * MIB


def test_the_scp_receives_through_the_writeback_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end on a real Storage SCP: a 4 MB instance sent by pynetdicom's SCU goes through ``node.writeback``'s file
    (writeback started as it grew, with its real ``sync_file_range`` where there is one) and is stored byte for byte.
    Guards against a pynetdicom release that stops using ``dimse_messages.NamedTemporaryFile``: the early writeback
    would then silently not happen."""
    real, calls = writeback._SYNC, []

    def recording(fd: int, off: int, n: int, flags: int) -> int:
        calls.append((off, n))
        return real(fd, off, n, flags) if real is not None else 0

    monkeypatch.setattr(writeback, "_SYNC", recording)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "received"))
    (tmp_path / "received").mkdir()
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, metrics_port=None)
    node = StorageSCP(settings, Spool(settings.spool_dir))
    node.start()
    try:
        ds = make_image(rows=1400, cols=1400, seed=3)  # 16-bit: about 3.9 MB of pixel data
        path = tmp_path / "big.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert store_files([path], "127.0.0.1", node.port) == [0]
    finally:
        node.stop()
    assert len(calls) >= 3 and calls[0][0] == 0
    (row,) = node.spool.instance_rows(ds.StudyInstanceUID)
    assert pydicom.dcmread(row["path"]).PixelData == ds.PixelData
