"""Storage failures answer their documented DIMSE status: a spool that cannot write (file or SQLite index, full
disk or I/O error) answers 0xA700 (out of resources, the sender retries), an unexpected error 0xC211, and the
node keeps serving. Real full file systems (small tmpfs mounts) when the machine allows mounting them."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from node.scp import OUT_OF_RESOURCES, UNABLE_TO_PROCESS, StorageSCP
from node.scu import store_files
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import DX_PRESENTATION, make_image, write_image


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator:
    started: list[StorageSCP] = []

    def start(spool_dir: Path | None = None) -> StorageSCP:
        settings = NodeSettings(spool_dir=spool_dir or tmp_path / f"spool{len(started)}", host="127.0.0.1", port=0,
                                metrics_port=None)
        scp = StorageSCP(settings, Spool(settings.spool_dir))
        scp.start()
        started.append(scp)
        return scp

    yield start
    for s in started:
        s.stop()


def _images(tmp_path: Path, n: int, rows: int = 64, cols: int = 64) -> list[Path]:
    study = pydicom.uid.generate_uid()
    return [write_image(tmp_path / f"img{uuid.uuid4().hex[:8]}.dcm",
                        make_image(rows=rows, cols=cols, seed=i, study_uid=study)) for i in range(n)]


@pytest.mark.parametrize(("method", "error", "status"), [
    ("store", sqlite3.OperationalError("database or disk is full"), OUT_OF_RESOURCES),
    ("store", sqlite3.OperationalError("disk I/O error"), OUT_OF_RESOURCES),
    ("store", sqlite3.OperationalError("database is locked"), OUT_OF_RESOURCES),
    ("store", OSError(errno.ENOSPC, "No space left on device"), OUT_OF_RESOURCES),
    ("store", OSError(errno.EDQUOT, "Disk quota exceeded"), OUT_OF_RESOURCES),
    ("store", MemoryError(), OUT_OF_RESOURCES),
    ("open_association", sqlite3.OperationalError("database or disk is full"), OUT_OF_RESOURCES),
    ("store", RuntimeError("a bug"), UNABLE_TO_PROCESS),
])
def test_spool_failures_map_to_documented_status(start_scp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 method: str, error: BaseException, status: int) -> None:
    scp = start_scp()
    failing = {"on": True}
    original = getattr(Spool, method)

    def flaky(self, *a, **kw):
        if failing["on"]:
            raise error
        return original(self, *a, **kw)

    monkeypatch.setattr(Spool, method, flaky)
    paths = _images(tmp_path, 2)
    assert store_files(paths, "127.0.0.1", scp.port) == [status, status]
    assert scp.spool.instance_uids() == set()
    failing["on"] = False
    assert store_files(paths, "127.0.0.1", scp.port) == [0, 0]  # the node keeps serving; the retry is stored
    assert len(scp.spool.instance_uids()) == 2


# -- real full file systems ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(fs: Path, leave_bytes: int) -> Path:
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


def _associate(port: int) -> object:
    ae = AE("FULLDISK")
    ae.add_requested_context(DX_PRESENTATION, [pydicom.uid.ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="CSPINE")
    assert assoc.is_established
    return assoc


def _send(assoc, path: Path) -> int:
    return int(assoc.send_c_store(path).Status)


def test_full_index_file_system_answers_a700_then_recovers(start_scp, tmp_path: Path) -> None:
    """The SQLite index (and its WAL) on a full 1 MB tmpfs, the instance files elsewhere: 0xA700, no orphan
    instance file; with space back, the same association (same SQLite connection) stores again."""
    with _tmpfs(tmp_path / "indexfs", "1m") as fs:
        spool_dir = tmp_path / "spool"
        spool_dir.mkdir()
        (spool_dir / "index.sqlite3").symlink_to(fs / "index.sqlite3")  # SQLite follows it: WAL and -shm there too
        scp = start_scp(spool_dir)
        paths = _images(tmp_path, 6)
        assoc = _associate(scp.port)
        try:
            assert _send(assoc, paths[0]) == 0
            filler = _fill(fs, 4096)
            statuses = [_send(assoc, p) for p in paths[1:4]]
            assert statuses == [OUT_OF_RESOURCES] * 3
            assert len(list((spool_dir / "instances").glob("*/*.dcm"))) == 1  # refused files were removed
            filler.unlink()
            assert [_send(assoc, p) for p in paths[1:]] == [0] * 5
        finally:
            assoc.release()
        assert len(scp.spool.instance_uids()) == 6


def test_full_spool_file_system_answers_a700(start_scp, tmp_path: Path) -> None:
    """The whole spool on a 3 MB tmpfs: instances that do not fit answer 0xA700, leave no partial file, and the
    ones acknowledged before are intact."""
    with _tmpfs(tmp_path / "spoolfs", "3m") as fs:
        scp = start_scp(fs / "spool")
        paths = _images(tmp_path, 10, rows=384, cols=384)  # ~290 KB each
        statuses = store_files(paths, "127.0.0.1", scp.port)
        assert OUT_OF_RESOURCES in statuses and statuses[0] == 0
        assert set(statuses) <= {0, OUT_OF_RESOURCES}
        assert list((fs / "spool" / "tmp").iterdir()) == []
        study = pydicom.dcmread(paths[0]).StudyInstanceUID
        stored = {r["sop_instance_uid"]: r["path"] for r in scp.spool.instance_rows(study)}
        assert len(stored) == statuses.count(0)
        for p, status in zip(paths, statuses, strict=True):
            ds = pydicom.dcmread(p)
            if status == 0:
                assert pydicom.dcmread(stored[ds.SOPInstanceUID]).PixelData == ds.PixelData
