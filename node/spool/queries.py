"""Read-only queries of the spool index: status, metrics, delivery sweeps and tests (mixed into ``Spool``)."""

from __future__ import annotations

import sqlite3
import time

from node.spool.rows import OutboxRow, ResultRow, StudyRow
from node.spool.states import OutboxState, StudyState


class SpoolQueries:
    """Queries that change nothing. The class using it provides ``_db()`` (this thread's connection)."""

    def _db(self) -> sqlite3.Connection:  # pragma: no cover - provided by Spool
        raise NotImplementedError

    # -- Studies and instances ---------------------------------------------------------------------

    def study(self, study_uid: str) -> StudyRow | None:
        r = self._db().execute("SELECT * FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
        return StudyRow.from_row(r) if r is not None else None

    def studies(self) -> list[StudyRow]:
        return [StudyRow.from_row(r) for r in self._db().execute("SELECT * FROM studies ORDER BY first_received_at")]

    def instance_uids(self, study_uid: str | None = None) -> set[str]:
        if study_uid is None:
            return {r[0] for r in self._db().execute("SELECT sop_instance_uid FROM instances")}
        return {r[0] for r in self._db().execute(
            "SELECT sop_instance_uid FROM instances WHERE study_uid=?", (study_uid,))}

    def instance_rows(self, study_uid: str) -> list[dict]:
        return [dict(r) for r in self._db().execute("SELECT * FROM instances WHERE study_uid=?", (study_uid,))]

    # -- Results -----------------------------------------------------------------------------------

    def results(self, study_uid: str) -> list[ResultRow]:
        """Result files of the newest analysed generation of a study."""
        return [ResultRow.from_row(r) for r in self._db().execute(
            "SELECT r.* FROM results r JOIN studies s ON s.study_uid = r.study_uid"
            " WHERE r.study_uid=? AND r.generation = s.analyzed_generation ORDER BY r.pipeline", (study_uid,))]

    def patient_results(self, patient_key: str, pipeline: str, *, exclude_study: str = "") -> list[ResultRow]:
        """Result files of one pipeline for one patient key (newest analysed generation of each study),
        newest study first (studies without a date last)."""
        if not patient_key:
            return []
        return [ResultRow.from_row(r) for r in self._db().execute(
            "SELECT r.* FROM results r JOIN studies s ON s.study_uid = r.study_uid"
            " WHERE r.patient_key=? AND r.pipeline=? AND r.study_uid != ? AND r.generation = s.analyzed_generation"
            " ORDER BY r.study_time IS NULL, r.study_time DESC, r.created_at DESC",
            (patient_key, pipeline, exclude_study))]

    # -- Outbox ------------------------------------------------------------------------------------

    def pending_outbox(self, study_uid: str | None = None, destination: str | None = None) -> list[OutboxRow]:
        sql, args = "SELECT * FROM outbox WHERE state=?", [OutboxState.PENDING.value]
        if study_uid is not None:
            sql += " AND study_uid=?"
            args.append(study_uid)
        if destination is not None:
            sql += " AND destination=?"
            args.append(destination)
        return [OutboxRow.from_row(r) for r in self._db().execute(sql + " ORDER BY id", args)]

    def outbox(self, study_uid: str) -> list[OutboxRow]:
        return [OutboxRow.from_row(r) for r in self._db().execute(
            "SELECT * FROM outbox WHERE study_uid=? ORDER BY id", (study_uid,))]

    def stale_outbox(self, older_than_s: float, now: float | None = None) -> list[tuple[str, str]]:
        """(study, destination) pairs with pending rows untouched for ``older_than_s`` (a lost delivery task).
        Rows of an analysis that has not finished (its first objects, ``Spool.queue_first``) are not counted: that
        attempt delivers them, or its retry supersedes them."""
        now = now if now is not None else time.time()
        rows = self._db().execute(
            "SELECT DISTINCT o.study_uid, o.destination FROM outbox o LEFT JOIN studies s ON s.study_uid = o.study_uid"
            " WHERE o.state=? AND o.updated_at <= ? AND (s.study_uid IS NULL OR o.generation <= s.analyzed_generation)",
            (OutboxState.PENDING.value, now - older_than_s),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- Status and metrics ------------------------------------------------------------------------

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
            "SELECT destination, last_error, MAX(updated_at) FROM outbox WHERE last_error != '' AND state != ?"
            " GROUP BY destination", (OutboxState.SENT.value,)
        ):
            out[r[0]] = (r[1], r[2])
        return out

    def delivery_latencies(self) -> list[float]:
        """Seconds from an analysis being recorded (its results queued) to the last of its objects delivered, per
        study generation and destination whose objects were all sent."""
        return [r[0] for r in self._db().execute(
            "SELECT MAX(sent_at) - MIN(created_at) FROM outbox GROUP BY study_uid, generation, destination"
            " HAVING SUM(state != ?) = 0 AND COUNT(sent_at) > 0", (OutboxState.SENT.value,))]

    def analysis_latencies(self) -> list[float]:
        """Seconds from a study becoming ready (dispatch) to its analysis being recorded."""
        return [r[0] for r in self._db().execute(
            "SELECT analyzed_at - ready_at FROM studies WHERE analyzed_at IS NOT NULL AND ready_at IS NOT NULL")]
