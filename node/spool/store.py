"""``Spool``: the state machine of received instances, studies and result objects over files + the index.

Receiving: ``store`` writes the instance durably (``node.spool.durable``) and commits its index row before it
returns; only then does the SCP answer Success. Assembly: ``ready_studies`` (``node.spool.ready``) /
``mark_dispatched``. Analysis:
``begin_analysis`` / ``finish_analysis`` / ``fail_attempt`` / ``fail_study`` (attempts, backoff and dead letters:
``node.spool.attempts``). Delivery: ``mark_sent`` / ``mark_attempt_failed`` /
``touch_outbox``. Start-up: ``recover``. Read-only queries come from ``node.spool.queries``, stage times
(``record_stages``, ``stage_times``) from ``node.spool.stages``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from node.settings import embedded_broker_dir
from node.spool import schema
from node.spool.attempts import AnalysisAbandoned, AnalysisDeferred, RetryPolicy, close_attempt, dead_letter
from node.spool.durable import file_sha256, fsync_dir, move_atomic, private, safe_name, write_atomic
from node.spool.headers import InstanceHeader, header_from_dataset
from node.spool.queries import SpoolQueries
from node.spool.ready import StudyReadiness
from node.spool.rows import ResultRow
from node.spool.stages import StageTimes, record_dispatch_stages
from node.spool.states import AssociationEnd, DeadLetterKind, OutboxState, StoreOutcome, StudyState
from pipelines.study import Instance, Study


class Spool(SpoolQueries, StudyReadiness, StageTimes):
    """Files + SQLite index. Thread-safe: one SQLite connection per thread. ``retry``: how often and how fast an
    analysis is tried again (``node.spool.attempts``)."""

    def __init__(self, root: Path | str, retry: RetryPolicy | None = None):
        self.root = Path(root).resolve()
        self.retry = retry or RetryPolicy()
        self.tmp_dir = self.root / "tmp"
        self.instances_dir = self.root / "instances"
        self.outbox_dir = self.root / "outbox"
        self.broker_dir = embedded_broker_dir(self.root)
        self.results_dir = self.root / "results"
        for d in (self.root, self.tmp_dir, self.instances_dir, self.outbox_dir, self.broker_dir, self.results_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            private(d, 0o700)
        self.index_path = self.root / "index.sqlite3"
        if not self.index_path.exists():  # SQLite gives its -wal and -shm files the mode of the database file
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.index_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for p in (self.index_path, self.index_path.with_name("index.sqlite3-wal"),
                  self.index_path.with_name("index.sqlite3-shm")):
            private(p, 0o600)
        self._local = threading.local()
        schema.create(self._db())

    # -- SQLite plumbing ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = schema.connect(self.index_path)
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. A failed COMMIT (e.g. SQLITE_FULL) leaves the transaction open in SQLite, and a
        failed statement may already have rolled it back: roll back only what is still open, so the connection
        is usable again (the next ``BEGIN`` would fail otherwise) and the original error is the one raised."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - the original error matters more
                    pass
            raise

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- Layout ------------------------------------------------------------------------------------

    def instance_path(self, study_uid: str, sop_instance_uid: str) -> Path:
        return self.instances_dir / safe_name(study_uid) / f"{safe_name(sop_instance_uid)}.dcm"

    def outbox_path(self, study_uid: str, generation: int, sop_instance_uid: str) -> Path:
        return self.outbox_dir / safe_name(study_uid) / str(generation) / f"{safe_name(sop_instance_uid)}.dcm"

    def result_path(self, study_uid: str, generation: int, pipeline: str) -> Path:
        return self.results_dir / safe_name(study_uid) / str(generation) / f"{safe_name(pipeline)}.json"

    # -- Receiving ---------------------------------------------------------------------------------

    def open_association(self, assoc_id: str, calling_aet: str, peer: str, now: float | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO associations(id, calling_aet, peer, opened_at) VALUES (?,?,?,?)",
                (assoc_id, calling_aet, peer, now if now is not None else time.time()),
            )

    def close_association(self, assoc_id: str, how: AssociationEnd | str, now: float | None = None) -> None:
        """Mark an association released/aborted (the association-release marker used by assembly)."""
        with self._tx() as db:
            db.execute(
                "UPDATE associations SET closed_at=?, how=? WHERE id=? AND closed_at IS NULL",
                (now if now is not None else time.time(), str(how), assoc_id),
            )

    def store(
        self, data: bytes | Path, header: InstanceHeader, *, assoc_id: str = "", calling_aet: str = "",
        now: float | None = None,
    ) -> StoreOutcome:
        """Persist one instance durably and index it. Returns what happened. ``data``: the Part 10 bytes, or a
        Part 10 file received to disk, which is moved into the spool (``move_atomic``), never read whole."""
        now = now if now is not None else time.time()
        db = self._db()
        row = db.execute(
            "SELECT sha256, study_uid, path FROM instances WHERE sop_instance_uid=?", (header.sop_instance_uid,)
        ).fetchone()
        digest = ""  # hashed only when a duplicate needs comparing (saves ~20 ms per 10 MB instance)
        if row is not None and row["study_uid"] == header.study_uid:
            digest = file_sha256(data) if isinstance(data, Path) else hashlib.sha256(data).hexdigest()
            if (row["sha256"] or file_sha256(Path(row["path"]))) == digest:
                with self._tx() as db:
                    self._link_association(db, header.study_uid, assoc_id)
                return StoreOutcome.DUPLICATE
        path = self.instance_path(header.study_uid, header.sop_instance_uid)
        new_dir = not path.parent.exists()
        if isinstance(data, Path):
            size = data.stat().st_size
            move_atomic(data, path, self.tmp_dir)
        else:
            size = len(data)
            write_atomic(data, path, self.tmp_dir)
        try:
            if new_dir:
                fsync_dir(self.instances_dir)
            with self._tx() as db:
                outcome = self._index(db, header, path, size, digest, calling_aet, assoc_id, now)
        except BaseException:
            if row is None or row["path"] != str(path):  # a new file the index does not know: not stored
                path.unlink(missing_ok=True)
            raise
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
            "INSERT INTO studies(study_uid, state, generation, n_instances, first_received_at, last_received_at,"
            " batch_started_at) VALUES (?, ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT(study_uid) DO UPDATE SET generation=generation+1, n_instances=n_instances+?,"
            " last_received_at=?, state=?, ready_at=NULL,"
            " batch_started_at=CASE WHEN generation <= dispatched_generation OR batch_started_at IS NULL THEN ?"
            " ELSE batch_started_at END,"
            " attempts=0, worker_deaths=0, attempt_id='', retry_at=NULL, last_error=''",
            (study_uid, StudyState.RECEIVING.value, max(delta_instances, 0), now, now, now, delta_instances, now,
             StudyState.RECEIVING.value, now),
        )

    # -- Recovery ----------------------------------------------------------------------------------

    def recover(self, now: float | None = None, *, lost_attempts: bool = False) -> dict[str, int]:
        """Start-up repair after a crash: drop partial files (ours, and data sets pynetdicom was receiving, when the
        node's temporary folder is ``tmp``), close associations of the dead process, index complete files that
        were written but not indexed, and re-queue unfinished studies (``requeue_unfinished``)."""
        from pydicom import dcmread

        now = now if now is not None else time.time()
        removed = 0
        for p in [*self.tmp_dir.glob("*.part"), *self.tmp_dir.glob("tmp*.dcm")]:
            p.unlink(missing_ok=True)
            removed += 1
        with self._tx() as db:
            closed = db.execute(
                "UPDATE associations SET closed_at=?, how=? WHERE closed_at IS NULL", (now, AssociationEnd.LOST.value)
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
        return {"partial_files_removed": removed, "associations_closed": closed, "orphans_indexed": orphans,
                **self.requeue_unfinished(now, lost_attempts=lost_attempts)}

    def requeue_unfinished(self, now: float | None = None, *, lost_attempts: bool = False) -> dict[str, int]:
        """Make every study whose newest generation is queued or being analysed ready to dispatch again (its task
        may be lost). ``lost_attempts``: every open analysis attempt died with its worker (the embedded node, whose
        worker is its child): each counts as an attempt and its study waits its backoff, or becomes a dead letter.
        Safe while the SCP receives (unlike ``recover``, it touches no file and no association)."""
        now = now if now is not None else time.time()
        deaths = self._settle_lost_attempts(now) if lost_attempts else 0
        with self._tx() as db:
            requeued = db.execute(
                "UPDATE studies SET dispatched_generation=analyzed_generation, state=?"
                " WHERE generation > analyzed_generation AND state IN (?,?,?)",
                (StudyState.RECEIVING.value, StudyState.QUEUED.value, StudyState.ANALYZING.value,
                 StudyState.RECEIVING.value),
            ).rowcount
        return {"studies_requeued": requeued, "worker_deaths": deaths}

    def _settle_lost_attempts(self, now: float) -> int:
        """Record the death of every open analysis attempt (``node.spool.attempts.close_attempt``)."""
        with self._tx() as db:
            lost = db.execute("SELECT * FROM studies WHERE attempt_id != '' AND analyzed_generation < generation"
                              ).fetchall()
            for s in lost:
                close_attempt(db, s, self.retry, now, died=True)
        return len(lost)

    # -- Assembly ----------------------------------------------------------------------------------

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

    def begin_analysis(self, study_uid: str, now: float | None = None, *,
                       attempt_id: str = "") -> tuple[Study, int] | None:
        """Open an analysis attempt (recorded before the analysis runs, ``node.spool.attempts``) and snapshot the
        study. None when the newest generation was already analysed. ``attempt_id``: the task id (delivered again
        after its worker died, it finds its own attempt open); ``""``: a new one.

        Raises ``AnalysisDeferred`` (back off: a worker died during the previous attempt, the last attempt failed
        less than its backoff ago, or another task is analysing the study) or ``AnalysisAbandoned`` (attempts used
        up: the study is now a dead letter)."""
        now = now if now is not None else time.time()
        attempt_id = attempt_id or uuid.uuid4().hex
        stop: AnalysisDeferred | AnalysisAbandoned | None = None
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None:
                raise KeyError(f"study {study_uid} is not in the spool")
            if s["analyzed_generation"] >= s["generation"]:
                return None
            stop = self._attempt_blocked(db, s, attempt_id, now)
            if stop is None:
                record_dispatch_stages(db, s, now)
                db.execute(
                    "UPDATE studies SET state=?, analysis_started_at=?, attempts=attempts+1, attempt_id=?,"
                    " retry_at=NULL WHERE study_uid=?",
                    (StudyState.ANALYZING.value, now, attempt_id, study_uid),
                )
            rows = db.execute(
                "SELECT * FROM instances WHERE study_uid=? ORDER BY series_uid, path", (study_uid,)
            ).fetchall() if stop is None else []
            generation = int(s["generation"])
        if stop is not None:
            raise stop
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

    def _attempt_blocked(self, db: sqlite3.Connection, s: sqlite3.Row, attempt_id: str,
                         now: float) -> AnalysisDeferred | AnalysisAbandoned | None:
        """Why no attempt may start now (recording a death found on the way), or None."""
        open_id = str(s["attempt_id"])
        if open_id:
            if open_id != attempt_id and now - float(s["analysis_started_at"] or 0) < self.retry.running_for_s:
                return AnalysisDeferred(self.retry.delay_s(int(s["attempts"])), "another task is analysing the study")
            outcome = close_attempt(db, s, self.retry, now, died=True)
            if isinstance(outcome, str):
                return AnalysisAbandoned(outcome)
            return AnalysisDeferred(outcome, "the worker died during the previous attempt")
        if s["retry_at"] is not None and now < float(s["retry_at"]) - 0.1:
            return AnalysisDeferred(float(s["retry_at"]) - now, "backing off after a failed attempt")
        if int(s["attempts"]) >= self.retry.max_attempts:  # e.g. the policy was lowered meanwhile
            outcome = close_attempt(db, s, self.retry, now, died=False)
            return AnalysisAbandoned(str(outcome))
        return None

    def set_aside(self, study_uid: str, attempt_id: str) -> None:
        """Close the open attempt ``attempt_id`` of an analysis set aside (``node.grace``: newer instances came, or
        are coming) without counting it, the study back to receiving; a no-op when the attempt is no longer the
        study's open one (a newer instance already cleared it)."""
        with self._tx() as db:
            db.execute("UPDATE studies SET attempt_id='', attempts=MAX(attempts-1, 0), state=? WHERE study_uid=?"
                       " AND attempt_id=?", (StudyState.RECEIVING.value, study_uid, attempt_id))

    def fail_attempt(self, study_uid: str, attempt_id: str, error: str,
                     now: float | None = None) -> AnalysisDeferred | AnalysisAbandoned | None:
        """Close the open attempt ``attempt_id`` that raised ``error``. Returns ``AnalysisDeferred`` (its backoff;
        the study is queued again) or ``AnalysisAbandoned`` (attempts used up: a dead letter now), or None when
        that attempt is no longer the study's open one (a newer generation arrived: it will be analysed anyway)."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None or not attempt_id or s["attempt_id"] != attempt_id:
                return None
            outcome = close_attempt(db, s, self.retry, now, died=False, error=error)
        if isinstance(outcome, str):
            return AnalysisAbandoned(outcome)
        return AnalysisDeferred(outcome, f"attempt {s['attempts']} failed")

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
        queued_first: Collection[str] = (),
        now: float | None = None,
    ) -> bool:
        """Record an analysis of ``generation`` with its written objects ``(sop uid, sop class, path)`` and
        queue them for every destination. Returns False (nothing queued) when a newer analysis already
        finished; otherwise older pending outbox rows of the study are superseded. ``results`` (typed
        result files, see ``node.patients``) are indexed in the same transaction. ``queued_first``: SOP
        instance UIDs this attempt already queued with ``queue_first`` (not queued again); pending rows of the
        same generation left by an earlier attempt that died are superseded."""
        now = now if now is not None else time.time()
        first = set(queued_first)
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None or s["analyzed_generation"] >= generation:
                return False
            db.execute(
                "UPDATE outbox SET state=?, updated_at=? WHERE study_uid=? AND state IN (?,?) AND generation < ?",
                (OutboxState.SUPERSEDED.value, now, study_uid, OutboxState.PENDING.value, OutboxState.FAILED.value,
                 generation),
            )
            _supersede_leftovers(db, study_uid, generation, first, now)
            if s["generation"] > generation:
                state = StudyState.RECEIVING  # late instances arrived meanwhile: it will be re-dispatched
            elif not objects and skipped_reason:
                state = StudyState.SKIPPED
            else:
                state = StudyState.DONE
            db.execute(
                "UPDATE studies SET analyzed_generation=?, analyzed_at=?, state=?, reason=?, summary=?"
                " WHERE study_uid=?",
                (generation, now, state.value, skipped_reason, summary, study_uid),
            )
            if s["generation"] == generation:  # analysed: no attempt open (a newer generation keeps its own)
                db.execute("UPDATE studies SET attempt_id='', retry_at=NULL WHERE study_uid=?", (study_uid,))
            for r in results:
                db.execute(
                    "INSERT OR REPLACE INTO results(study_uid, generation, pipeline, patient_key, study_time, path,"
                    " created_at) VALUES (?,?,?,?,?,?,?)",
                    (study_uid, generation, r.pipeline, r.patient_key, r.study_time, r.path, now),
                )
            _queue(db, study_uid, generation, [o for o in objects if o[0] not in first], destinations, now)
        return True

    def queue_first(self, study_uid: str, generation: int, objects: list[tuple[str, str, Path]],
                    destinations: list[str], *, attempt_id: str = "", queued_before: Collection[str] = (),
                    now: float | None = None) -> bool:
        """Queue the first objects of an analysis that is still running (its SR and SEG, written and fsync'd), so
        that they can be delivered while the rest is encoded. ``finish_analysis`` (with ``queued_first``) then
        records the analysis and queues the rest. Returns False, queuing nothing, when a newer analysis already
        finished or (with ``attempt_id``) another attempt owns the study. Pending rows of the same generation
        left by an earlier attempt that died before finishing are superseded (its objects already sent stay
        sent: the PACS may then hold that attempt's SR as well); ``queued_before``: SOP instance UIDs this attempt
        queued with earlier calls (another pipeline's, the patient-level SR), kept."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            s = db.execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if s is None or s["analyzed_generation"] >= generation or (attempt_id and s["attempt_id"] != attempt_id):
                return False
            _supersede_leftovers(db, study_uid, generation, set(queued_before), now)
            _queue(db, study_uid, generation, objects, destinations, now)
        return True

    def fail_study(self, study_uid: str, generation: int, error: str, task_id: str = "", now: float | None = None) -> None:
        """Dead-letter an analysis that failed for good outside the attempt bookkeeping (an unexpected error)."""
        now = now if now is not None else time.time()
        with self._tx() as db:
            dead_letter(db, study_uid, generation, error, task_id, now)

    # -- Delivery ----------------------------------------------------------------------------------

    def mark_sent(self, ids: list[int], now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET state=?, sent_at=?, updated_at=?, attempts=attempts+1, last_error=''"
                " WHERE id=? AND state=?",
                [(OutboxState.SENT.value, now, now, i, OutboxState.PENDING.value) for i in ids],
            )

    def mark_attempt_failed(self, ids: list[int], error: str, *, final: bool = False, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        state = OutboxState.FAILED if final else OutboxState.PENDING
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, updated_at=?, state=? WHERE id=? AND state=?",
                [(error[:1000], now, state.value, i, OutboxState.PENDING.value) for i in ids],
            )
            if final and ids:
                r = db.execute("SELECT study_uid, generation, destination FROM outbox WHERE id=?", (ids[0],)).fetchone()
                db.execute(
                    "INSERT INTO dead_letters(kind, study_uid, generation, destination, error, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (DeadLetterKind.DELIVER.value, r["study_uid"], r["generation"], r["destination"], error[:4000],
                     now),
                )

    def touch_outbox(self, study_uid: str, destination: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._tx() as db:
            db.execute("UPDATE outbox SET updated_at=? WHERE study_uid=? AND destination=? AND state=?",
                       (now, study_uid, destination, OutboxState.PENDING.value))


def _queue(db: sqlite3.Connection, study_uid: str, generation: int, objects: list[tuple[str, str, Path]],
           destinations: list[str], now: float) -> None:
    for dest in destinations:
        for sop_uid, sop_class, path in objects:
            db.execute(
                "INSERT INTO outbox(study_uid, generation, destination, sop_instance_uid, sop_class_uid, path,"
                " state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (study_uid, generation, dest, sop_uid, sop_class, str(path), OutboxState.PENDING.value, now, now),
            )


def _supersede_leftovers(db: sqlite3.Connection, study_uid: str, generation: int, keep: set[str],
                         now: float) -> None:
    """Supersede pending/failed rows of ``generation`` not in ``keep``: the first objects of an attempt that died."""
    rows = db.execute("SELECT id, sop_instance_uid FROM outbox WHERE study_uid=? AND generation=? AND state IN (?,?)",
                      (study_uid, generation, OutboxState.PENDING.value, OutboxState.FAILED.value)).fetchall()
    for r in rows:
        if r["sop_instance_uid"] not in keep:
            db.execute("UPDATE outbox SET state=?, updated_at=? WHERE id=?",
                       (OutboxState.SUPERSEDED.value, now, r["id"]))
