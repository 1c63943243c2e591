"""The spool: every received instance as a file on disk, indexed in SQLite, durable before acknowledgement.

Layout under ``root``::

    index.sqlite3                      SQLite index (WAL journal, synchronous=FULL)
    tmp/                               partial writes (removed at start-up)
    instances/<study>/<sop>.dcm        received instances (DICOM Part 10 files as sent)
    outbox/<study>/<generation>/...    result objects waiting for / done with delivery
    results/<study>/<generation>/<pipeline>.json   typed results of an analysis (``node.patients``)
    patient_key.salt                   secret salt of the patient keys (created once, never logged)
    broker/                            the embedded Celery broker's message folders (see ``node.tasks``)

Durability: ``store`` writes a temp file, fsyncs it, renames it into place, fsyncs the directory, and
commits the index row (WAL + synchronous=FULL) before it returns; only then does the SCP answer Success.
A crash in between leaves either nothing or a complete file, which ``recover`` indexes at start-up.

Study bookkeeping: each study has a *generation* that grows with every new (or changed) instance.
``dispatched_generation`` and ``analyzed_generation`` say what was queued and what was analysed; a study
with ``generation > dispatched_generation`` is waiting to be (re)dispatched, which is how late instances
re-trigger analysis. Outbox rows of an older generation are marked ``superseded`` when a newer analysis
finishes, so only the newest results are delivered.

Duplicates are idempotent: the same SOP Instance UID with the same bytes (SHA-256, computed only when a
UID arrives again) is acknowledged and ignored; with different bytes it replaces the earlier file and
bumps the generation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pipelines.study import Instance, Study

_SAFE_UID = re.compile(r"^[0-9][0-9.]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    view_position TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT '',
    image_orientation TEXT NOT NULL DEFAULT '[]',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',
    calling_aet TEXT NOT NULL DEFAULT '',
    assoc_id TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    dispatched_generation INTEGER NOT NULL DEFAULT 0,
    analyzed_generation INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    ready_at REAL,
    dispatched_at REAL,
    analysis_started_at REAL,
    analyzed_at REAL,
    task_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS associations (
    id TEXT PRIMARY KEY,
    calling_aet TEXT NOT NULL,
    peer TEXT NOT NULL,
    opened_at REAL NOT NULL,
    closed_at REAL,
    how TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS study_associations (
    study_uid TEXT NOT NULL,
    assoc_id TEXT NOT NULL,
    PRIMARY KEY (study_uid, assoc_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    destination TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, destination, study_uid);
CREATE TABLE IF NOT EXISTS results (
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    pipeline TEXT NOT NULL,
    patient_key TEXT NOT NULL DEFAULT '',
    study_time REAL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (study_uid, generation, pipeline)
);
CREATE INDEX IF NOT EXISTS results_patient ON results(patient_key, pipeline);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    task_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class StudyState(StrEnum):
    RECEIVING = "receiving"
    QUEUED = "queued"
    ANALYZING = "analyzing"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class StoreOutcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"


@dataclass(frozen=True)
class InstanceHeader:
    """The header fields the index keeps for one instance (no patient identifiers)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str = ""
    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    series_description: str = ""
    image_orientation: tuple[float, ...] = ()


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    state: str
    generation: int
    dispatched_generation: int
    analyzed_generation: int
    n_instances: int
    first_received_at: float
    last_received_at: float
    ready_at: float | None
    dispatched_at: float | None
    analysis_started_at: float | None
    analyzed_at: float | None
    task_id: str
    reason: str
    summary: str


@dataclass(frozen=True)
class ResultRow:
    """Typed results of one pipeline run on one analysed generation (a JSON file), keyed by patient.

    ``patient_key`` is a salted hash of the Patient ID (``node.patients``), never the ID itself;
    ``study_time`` is StudyDate/StudyTime as POSIX seconds (None when the study has no date)."""

    study_uid: str
    generation: int
    pipeline: str
    patient_key: str
    study_time: float | None
    path: str
    created_at: float = 0.0


@dataclass(frozen=True)
class OutboxRow:
    id: int
    study_uid: str
    generation: int
    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    state: str
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    sent_at: float | None


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def safe_name(uid: str) -> str:
    """A file-system-safe name for a UID (the UID itself when it is digits and dots)."""
    return uid if _SAFE_UID.match(uid) else hashlib.sha1(uid.encode()).hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or create inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(data: bytes, dst: Path, tmp_dir: Path) -> None:
    """Write ``data`` to ``dst`` atomically and durably: temp file, fsync, rename, fsync directory."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


class Spool:
    """Files + SQLite index. Thread-safe: one SQLite connection per thread."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / "tmp"
        self.instances_dir = self.root / "instances"
        self.outbox_dir = self.root / "outbox"
        self.broker_dir = self.root / "broker"
        self.results_dir = self.root / "results"
        for d in (self.root, self.tmp_dir, self.instances_dir, self.outbox_dir, self.broker_dir, self.results_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / "index.sqlite3"
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    # -- SQLite plumbing ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.index_path, timeout=60.0, isolation_level=None, check_same_thread=True)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- Receiving ---------------------------------------------------------------------------------

    def instance_path(self, study_uid: str, sop_instance_uid: str) -> Path:
        return self.instances_dir / safe_name(study_uid) / f"{safe_name(sop_instance_uid)}.dcm"

    def open_association(self, assoc_id: str, calling_aet: str, peer: str, now: float | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO associations(id, calling_aet, peer, opened_at) VALUES (?,?,?,?)",
                (assoc_id, calling_aet, peer, now if now is not None else time.time()),
            )

    def close_association(self, assoc_id: str, how: str, now: float | None = None) -> None:
        """Mark an association released/aborted (the association-release marker used by assembly)."""
        with self._tx() as db:
            db.execute(
                "UPDATE associations SET closed_at=?, how=? WHERE id=? AND closed_at IS NULL",
                (now if now is not None else time.time(), how, assoc_id),
            )

    def store(
        self, data: bytes, header: InstanceHeader, *, assoc_id: str = "", calling_aet: str = "",
        now: float | None = None,
    ) -> StoreOutcome:
        """Persist one instance (Part 10 bytes) durably and index it. Returns what happened."""
        now = now if now is not None else time.time()
        db = self._db()
        row = db.execute(
            "SELECT sha256, study_uid, path FROM instances WHERE sop_instance_uid=?", (header.sop_instance_uid,)
        ).fetchone()
        digest = ""  # hashed only when a duplicate needs comparing (saves ~20 ms per 10 MB instance)
        if row is not None and row["study_uid"] == header.study_uid:
            digest = hashlib.sha256(data).hexdigest()
            if (row["sha256"] or _file_sha256(Path(row["path"]))) == digest:
                with self._tx() as db:
                    self._link_association(db, header.study_uid, assoc_id)
                return StoreOutcome.DUPLICATE
        path = self.instance_path(header.study_uid, header.sop_instance_uid)
        new_dir = not path.parent.exists()
        write_atomic(data, path, self.tmp_dir)
        if new_dir:
            fsync_dir(self.instances_dir)
        with self._tx() as db:
            outcome = self._index(db, header, path, len(data), digest, calling_aet, assoc_id, now)
        if outcome is StoreOutcome.REPLACED and row is not None and row["path"] != str(path):
            Path(row["path"]).unlink(missing_ok=True)
        return outcome

    def _link_association(self, db: sqlite3.Connection, study_uid: str, assoc_id: str) -> None:
        if assoc_id:
            db.execute("INSERT OR IGNORE INTO study_associations VALUES (?,?)", (study_uid, assoc_id))

    def _index(
        self, db: sqlite3.Connection, h: InstanceHeader, path: Path, size: int, digest: str, calling_aet: str,
        assoc_id: str, now: float,
    ) -> StoreOutcome:
        old = db.execute(
            "SELECT study_uid FROM instances WHERE sop_instance_uid=?", (h.sop_instance_uid,)
        ).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (h.sop_instance_uid, h.study_uid, h.series_uid, h.sop_class_uid, h.transfer_syntax, h.modality,
             h.body_part, h.view_position, h.series_description, json.dumps(list(h.image_orientation)),
             str(path), size, digest, calling_aet, assoc_id, now),
        )
        if old is not None and old["study_uid"] != h.study_uid:
            self._bump(db, old["study_uid"], now, delta_instances=-1)
        self._bump(db, h.study_uid, now, delta_instances=0 if old is not None and old["study_uid"] == h.study_uid else 1)
        self._link_association(db, h.study_uid, assoc_id)
        return StoreOutcome.NEW if old is None else StoreOutcome.REPLACED

    @staticmethod
    def _bump(db: sqlite3.Connection, study_uid: str, now: float, delta_instances: int) -> None:
        db.execute(
            "INSERT INTO studies(study_uid, state, generation, n_instances, first_received_at, last_received_at)"
            " VALUES (?, ?, 1, ?, ?, ?)"
            " ON CONFLICT(study_uid) DO UPDATE SET generation=generation+1, n_instances=n_instances+?,"
            " last_received_at=?, state=?, ready_at=NULL",
            (study_uid, StudyState.RECEIVING.value, max(delta_instances, 0), now, now, delta_instances, now,
             StudyState.RECEIVING.value),
        )

    # -- Recovery ----------------------------------------------------------------------------------

    def recover(self, now: float | None = None) -> dict[str, int]:
        """Start-up repair after a crash: drop partial files, close associations of the dead process,
        index complete files that were written but not indexed, and re-queue unfinished studies."""
        from pydicom import dcmread

        now = now if now is not None else time.time()
        removed = 0
        for p in self.tmp_dir.glob("*.part"):
            p.unlink(missing_ok=True)
            removed += 1
        with self._tx() as db:
            closed = db.execute(
                "UPDATE associations SET closed_at=?, how='lost (restart)' WHERE closed_at IS NULL", (now,)
            ).rowcount
            known = {r[0] for r in db.execute("SELECT path FROM instances")}
        orphans = 0
        for p in self.instances_dir.glob("*/*.dcm"):
            if str(p) in known:
                continue
            try:
                ds = dcmread(p, stop_before_pixels=True)
                header = header_from_dataset(ds)
            except Exception:  # noqa: BLE001 - a file we cannot read is moved aside, never deleted
                p.rename(p.with_suffix(".unreadable"))
                continue
            with self._tx() as db:
                self._index(db, header, p, p.stat().st_size, "", "", "", now)
            orphans += 1
        with self._tx() as db:
            requeued = db.execute(
                "UPDATE studies SET dispatched_generation=analyzed_generation, state=?"
                " WHERE generation > analyzed_generation AND state IN (?,?,?)",
                (StudyState.RECEIVING.value, StudyState.QUEUED.value, StudyState.ANALYZING.value,
                 StudyState.RECEIVING.value),
            ).rowcount
        return {"partial_files_removed": removed, "associations_closed": closed, "orphans_indexed": orphans,
                "studies_requeued": requeued}

    # -- Assembly ----------------------------------------------------------------------------------

    def ready_studies(self, now: float, stable_age_s: float, open_association_age_s: float) -> list[tuple[str, int]]:
        """Studies to dispatch now: new instances since the last dispatch, quiet for ``stable_age_s`` with
        every association that brought them closed, or quiet for ``open_association_age_s`` regardless."""
        rows = self._db().execute(
            "SELECT s.study_uid, s.generation, s.last_received_at, EXISTS("
            "  SELECT 1 FROM study_associations sa JOIN associations a ON a.id = sa.assoc_id"
            "  WHERE sa.study_uid = s.study_uid AND a.closed_at IS NULL) AS open_assoc"
            " FROM studies s WHERE s.generation > s.dispatched_generation AND s.last_received_at <= ?"
            " ORDER BY s.last_received_at",
            (now - stable_age_s,),
        ).fetchall()
        out = []
        for r in rows:
            if not r["open_assoc"] or r["last_received_at"] <= now - open_association_age_s:
                out.append((r["study_uid"], int(r["generation"])))
        return out

    def mark_dispatched(self, study_uid: str, generation: int, task_id: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE studies SET dispatched_generation=MAX(dispatched_generation, ?), dispatched_at=?,"
                " task_id=?, state=CASE WHEN generation <= ? THEN ? ELSE state END,"
                " ready_at=COALESCE(ready_at, ?) WHERE study_uid=?",
                (generation, now, task_id, generation, StudyState.QUEUED.value, now, study_uid),
            )

    # -- Analysis ----------------------------------------------------------------------------------

    def begin_analysis(self, study_uid: str, now: float | None = None) -> tuple[Study, int] | None:
        """Snapshot the study for analysis. None when the newest generation was already analysed."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None:
                raise KeyError(f"study {study_uid} is not in the spool")
            if s["analyzed_generation"] >= s["generation"]:
                return None
            db.execute(
                "UPDATE studies SET state=?, analysis_started_at=? WHERE study_uid=?",
                (StudyState.ANALYZING.value, now, study_uid),
            )
            rows = db.execute(
                "SELECT * FROM instances WHERE study_uid=? ORDER BY series_uid, path", (study_uid,)
            ).fetchall()
            generation = int(s["generation"])
        instances = tuple(
            Instance(
                path=Path(r["path"]), sop_instance_uid=r["sop_instance_uid"], sop_class_uid=r["sop_class_uid"],
                series_uid=r["series_uid"], modality=r["modality"], body_part=r["body_part"],
                view_position=r["view_position"], series_description=r["series_description"],
                image_orientation=tuple(json.loads(r["image_orientation"])),
            )
            for r in rows
        )
        return Study(study_uid, instances), generation

    def outbox_path(self, study_uid: str, generation: int, sop_instance_uid: str) -> Path:
        return self.outbox_dir / safe_name(study_uid) / str(generation) / f"{safe_name(sop_instance_uid)}.dcm"

    def finish_analysis(
        self,
        study_uid: str,
        generation: int,
        objects: list[tuple[str, str, Path]],
        destinations: list[str],
        *,
        skipped_reason: str = "",
        summary: str = "",
        results: list[ResultRow] | tuple[ResultRow, ...] = (),
        now: float | None = None,
    ) -> bool:
        """Record an analysis of ``generation`` with its written objects ``(sop uid, sop class, path)`` and
        queue them for every destination. Returns False (nothing queued) when a newer analysis already
        finished; otherwise older pending outbox rows of the study are superseded. ``results`` (typed
        result files, see ``node.patients``) are indexed in the same transaction."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None or s["analyzed_generation"] >= generation:
                return False
            db.execute(
                "UPDATE outbox SET state='superseded', updated_at=? WHERE study_uid=? AND state IN ('pending','failed')"
                " AND generation < ?",
                (now, study_uid, generation),
            )
            if s["generation"] > generation:
                state = StudyState.RECEIVING.value  # late instances arrived meanwhile: it will be re-dispatched
            elif not objects and skipped_reason:
                state = StudyState.SKIPPED.value
            else:
                state = StudyState.DONE.value
            db.execute(
                "UPDATE studies SET analyzed_generation=?, analyzed_at=?, state=?, reason=?, summary=?"
                " WHERE study_uid=?",
                (generation, now, state, skipped_reason, summary, study_uid),
            )
            for r in results:
                db.execute(
                    "INSERT OR REPLACE INTO results(study_uid, generation, pipeline, patient_key, study_time, path,"
                    " created_at) VALUES (?,?,?,?,?,?,?)",
                    (study_uid, generation, r.pipeline, r.patient_key, r.study_time, r.path, now),
                )
            for dest in destinations:
                for sop_uid, sop_class, path in objects:
                    db.execute(
                        "INSERT INTO outbox(study_uid, generation, destination, sop_instance_uid, sop_class_uid, path,"
                        " state, created_at, updated_at) VALUES (?,?,?,?,?,?, 'pending', ?, ?)",
                        (study_uid, generation, dest, sop_uid, sop_class, str(path), now, now),
                    )
        return True

    def fail_study(self, study_uid: str, generation: int, error: str, task_id: str = "", now: float | None = None) -> None:
        """Dead-letter an analysis that exhausted its retries."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO dead_letters(kind, study_uid, generation, task_id, error, created_at)"
                " VALUES ('analyze', ?, ?, ?, ?, ?)",
                (study_uid, generation, task_id, error[:4000], now),
            )
            db.execute(
                "UPDATE studies SET state=?, reason=?, analyzed_at=? WHERE study_uid=? AND analyzed_generation < ?",
                (StudyState.FAILED.value, error[:1000], now, study_uid, generation),
            )

    # -- Delivery ----------------------------------------------------------------------------------

    def pending_outbox(self, study_uid: str | None = None, destination: str | None = None) -> list[OutboxRow]:
        sql, args = "SELECT * FROM outbox WHERE state='pending'", []
        if study_uid is not None:
            sql += " AND study_uid=?"
            args.append(study_uid)
        if destination is not None:
            sql += " AND destination=?"
            args.append(destination)
        return [OutboxRow(**dict(r)) for r in self._db().execute(sql + " ORDER BY id", args)]

    def outbox(self, study_uid: str) -> list[OutboxRow]:
        return [OutboxRow(**dict(r)) for r in self._db().execute(
            "SELECT * FROM outbox WHERE study_uid=? ORDER BY id", (study_uid,))]

    def mark_sent(self, ids: list[int], now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET state='sent', sent_at=?, updated_at=?, attempts=attempts+1, last_error=''"
                " WHERE id=? AND state='pending'",
                [(now, now, i) for i in ids],
            )

    def mark_attempt_failed(self, ids: list[int], error: str, *, final: bool = False, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, updated_at=?, state=? WHERE id=? AND state='pending'",
                [(error[:1000], now, "failed" if final else "pending", i) for i in ids],
            )
            if final and ids:
                r = db.execute("SELECT study_uid, generation, destination FROM outbox WHERE id=?", (ids[0],)).fetchone()
                db.execute(
                    "INSERT INTO dead_letters(kind, study_uid, generation, destination, error, created_at)"
                    " VALUES ('deliver', ?, ?, ?, ?, ?)",
                    (r["study_uid"], r["generation"], r["destination"], error[:4000], now),
                )

    def stale_outbox(self, older_than_s: float, now: float | None = None) -> list[tuple[str, str]]:
        """(study, destination) pairs with pending rows untouched for ``older_than_s`` (a lost delivery task)."""
        now = now if now is not None else time.time()
        rows = self._db().execute(
            "SELECT DISTINCT study_uid, destination FROM outbox WHERE state='pending' AND updated_at <= ?",
            (now - older_than_s,),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def touch_outbox(self, study_uid: str, destination: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.execute("UPDATE outbox SET updated_at=? WHERE study_uid=? AND destination=? AND state='pending'",
                       (now, study_uid, destination))

    # -- Queries (status, tests) -------------------------------------------------------------------

    def study(self, study_uid: str) -> StudyRow | None:
        r = self._db().execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
        return StudyRow(**dict(r)) if r is not None else None

    def studies(self) -> list[StudyRow]:
        return [StudyRow(**dict(r)) for r in self._db().execute("SELECT * FROM studies ORDER BY first_received_at")]

    def instance_uids(self, study_uid: str | None = None) -> set[str]:
        if study_uid is None:
            return {r[0] for r in self._db().execute("SELECT sop_instance_uid FROM instances")}
        return {r[0] for r in self._db().execute(
            "SELECT sop_instance_uid FROM instances WHERE study_uid=?", (study_uid,))}

    def instance_rows(self, study_uid: str) -> list[dict]:
        return [dict(r) for r in self._db().execute("SELECT * FROM instances WHERE study_uid=?", (study_uid,))]

    def result_path(self, study_uid: str, generation: int, pipeline: str) -> Path:
        return self.results_dir / safe_name(study_uid) / str(generation) / f"{safe_name(pipeline)}.json"

    def results(self, study_uid: str) -> list[ResultRow]:
        """Result files of the newest analysed generation of a study."""
        return [ResultRow(**dict(r)) for r in self._db().execute(
            "SELECT r.* FROM results r JOIN studies s ON s.study_uid = r.study_uid"
            " WHERE r.study_uid=? AND r.generation = s.analyzed_generation ORDER BY r.pipeline", (study_uid,))]

    def patient_results(self, patient_key: str, pipeline: str, *, exclude_study: str = "") -> list[ResultRow]:
        """Result files of one pipeline for one patient key (newest analysed generation of each study),
        newest study first (studies without a date last)."""
        if not patient_key:
            return []
        return [ResultRow(**dict(r)) for r in self._db().execute(
            "SELECT r.* FROM results r JOIN studies s ON s.study_uid = r.study_uid"
            " WHERE r.patient_key=? AND r.pipeline=? AND r.study_uid != ? AND r.generation = s.analyzed_generation"
            " ORDER BY r.study_time IS NULL, r.study_time DESC, r.created_at DESC",
            (patient_key, pipeline, exclude_study))]

    def dead_letters(self) -> list[dict]:
        return [dict(r) for r in self._db().execute("SELECT * FROM dead_letters ORDER BY id")]

    def counts(self) -> dict[str, dict[str, int]]:
        """Numbers for ``status`` and metrics: studies by state, outbox by destination and state, etc."""
        db = self._db()
        studies = {r[0]: r[1] for r in db.execute("SELECT state, COUNT(*) FROM studies GROUP BY state")}
        outbox: dict[str, int] = {}
        for dest, state, n in db.execute("SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2"):
            outbox[f"{dest}:{state}"] = n
        instances = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances").fetchone()
        dead = {r[0]: r[1] for r in db.execute("SELECT kind, COUNT(*) FROM dead_letters GROUP BY kind")}
        waiting = db.execute("SELECT COUNT(*) FROM studies WHERE generation > dispatched_generation").fetchone()[0]
        queued = db.execute(
            "SELECT COUNT(*) FROM studies WHERE dispatched_generation > analyzed_generation AND state IN (?,?)",
            (StudyState.QUEUED.value, StudyState.ANALYZING.value)).fetchone()[0]
        return {"studies": studies, "outbox": outbox, "dead_letters": dead,
                "instances": {"count": instances[0], "bytes": instances[1]},
                "queue": {"assembling": waiting, "queued_or_running": queued}}

    def destination_errors(self) -> dict[str, tuple[str, float]]:
        """Last error per destination (``(error, when)``) among outbox rows not yet sent."""
        out = {}
        for r in self._db().execute(
            "SELECT destination, last_error, MAX(updated_at) FROM outbox WHERE last_error != '' AND state != 'sent'"
            " GROUP BY destination"
        ):
            out[r[0]] = (r[1], r[2])
        return out

    def delivery_latencies(self) -> list[float]:
        """Seconds from an analysis being recorded (its results queued) to the last of its objects delivered, per
        study generation and destination whose objects were all sent."""
        return [r[0] for r in self._db().execute(
            "SELECT MAX(sent_at) - MIN(created_at) FROM outbox GROUP BY study_uid, generation, destination"
            " HAVING SUM(state != 'sent') = 0 AND COUNT(sent_at) > 0")]

    def analysis_latencies(self) -> list[float]:
        """Seconds from a study becoming ready (dispatch) to its analysis being recorded."""
        return [r[0] for r in self._db().execute(
            "SELECT analyzed_at - ready_at FROM studies WHERE analyzed_at IS NOT NULL AND ready_at IS NOT NULL")]


def header_from_dataset(ds) -> InstanceHeader:  # noqa: ANN001 - pydicom Dataset / FileDataset
    """The index fields of a dataset; raises ``ValueError`` when a required UID is missing."""
    missing = [k for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID") if not ds.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    inst = Instance.from_dataset(Path("."), ds)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return InstanceHeader(
        sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
        study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID), transfer_syntax=ts,
        modality=inst.modality, body_part=inst.body_part, view_position=inst.view_position,
        series_description=inst.series_description, image_orientation=inst.image_orientation,
    )
