"""Unit tests of the spool: atomic durable writes, index, duplicates, recovery after a crash."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from node.spool import InstanceHeader, Spool, StoreOutcome, StudyState, header_from_dataset, write_atomic
from tests.node.nodetest_data import make_image


def _encode(ds) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _store(spool: Spool, ds, **kw) -> StoreOutcome:
    data = _encode(ds)
    return spool.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data))), **kw)


def test_store_writes_file_and_index(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ds = make_image()
    assert _store(spool, ds, assoc_id="a1", calling_aet="PACS") is StoreOutcome.NEW
    rows = spool.instance_rows(ds.StudyInstanceUID)
    assert len(rows) == 1
    path = Path(rows[0]["path"])
    assert path.is_file() and path.is_relative_to(spool.instances_dir)
    back = pydicom.dcmread(path)
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == ds.PixelData
    assert rows[0]["view_position"] == "LL" and rows[0]["body_part"] == "CSPINE"
    assert not list(spool.tmp_dir.iterdir()), "no temp file may remain"
    s = spool.study(ds.StudyInstanceUID)
    assert s.state == StudyState.RECEIVING and s.generation == 1 and s.n_instances == 1


def test_index_has_no_patient_identifiers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    _store(spool, make_image())
    spool.close()
    raw = (tmp_path / "spool" / "index.sqlite3").read_bytes()
    wal = tmp_path / "spool" / "index.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"SECRET-ID-123" not in raw and b"Secret" not in raw


def test_duplicate_is_idempotent_and_changed_content_replaces(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ds = make_image(seed=1)
    assert _store(spool, ds) is StoreOutcome.NEW
    assert _store(spool, ds) is StoreOutcome.DUPLICATE
    s = spool.study(ds.StudyInstanceUID)
    assert (s.generation, s.n_instances) == (1, 1)
    changed = make_image(ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID, sop_uid=ds.SOPInstanceUID, seed=2)
    assert _store(spool, changed) is StoreOutcome.REPLACED
    s = spool.study(ds.StudyInstanceUID)
    assert (s.generation, s.n_instances) == (2, 1)
    path = Path(spool.instance_rows(ds.StudyInstanceUID)[0]["path"])
    assert pydicom.dcmread(path).PixelData == changed.PixelData


def test_write_atomic_leaves_no_partial_file_on_error(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()

    with pytest.raises(TypeError):
        write_atomic(object(), tmp_path / "out" / "x.dcm", tmp_path / "tmp")  # type: ignore[arg-type]
    assert not (tmp_path / "out" / "x.dcm").exists()
    assert not list((tmp_path / "tmp").iterdir())


def test_recover_after_crash(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    a = make_image()
    _store(spool, a, assoc_id="dead-assoc")
    spool.open_association("dead-assoc", "PACS", "127.0.0.1")
    spool.mark_dispatched(a.StudyInstanceUID, 1, "task-1")
    # A crash: a partial temp file, and a complete file renamed into place but never indexed.
    (spool.tmp_dir / "junk.part").write_bytes(b"partial")
    b = make_image(a.StudyInstanceUID, series_uid=a.SeriesInstanceUID)
    orphan = spool.instance_path(b.StudyInstanceUID, b.SOPInstanceUID)
    orphan.write_bytes(_encode(b))
    spool.close()

    spool = Spool(root)
    report = spool.recover()
    assert report["partial_files_removed"] == 1
    assert report["associations_closed"] == 1
    assert report["orphans_indexed"] == 1
    assert report["studies_requeued"] == 1
    assert spool.instance_uids(a.StudyInstanceUID) == {a.SOPInstanceUID, b.SOPInstanceUID}
    s = spool.study(a.StudyInstanceUID)
    assert s.generation == 2 and s.dispatched_generation == 0 and s.state == StudyState.RECEIVING


def test_header_from_dataset_requires_uids() -> None:
    ds = make_image()
    del ds.StudyInstanceUID
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        header_from_dataset(ds)


def test_non_numeric_uid_gets_safe_path(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    h = InstanceHeader("../../etc/passwd", "1.2", "1.2.3", "1.2.3.4")
    spool.store(b"x" * 10, h)
    row = spool.instance_rows("1.2.3")[0]
    assert Path(row["path"]).resolve().is_relative_to(spool.instances_dir)
