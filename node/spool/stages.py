"""How long each step of a study took: one row per study generation and stage in the index table ``stage_times``.

Stages (seconds; ``STAGES`` is their order):

* ``receive``: the first instance of the batch -> its last instance (the sender's C-STOREs);
* ``stability``: the last instance -> dispatch (association released; with ``dispatch_at_release`` False, also the
  grace for a second association);
* ``queue``: dispatch -> the analysis starting on a worker (broker, a free worker, backoff after a failure);
* ``pipeline:<name>``: one pipeline's run (models and measurements), per pipeline (``xray``, ``mri``);
* ``hold``: the results waiting for the end of the release grace (a study dispatched at its release,
  ``node.grace``; recorded only when they waited: an analysis usually outlasts the grace);
* ``first``: the analysis starting -> its first SR and SEGs written and queued, sent at once while the rest is
  encoded (``node.first.FirstObjects``; only where the worker delivers);
* ``encode``: the DICOM result objects of every pipeline (SR, SEG, GSPS, report);
* ``patient``: the patient-level report (when the patient's other modality is known);
* ``store``: the result objects written (fsync'd) and the analysis recorded;
* ``deliver:<destination>``: the analysis recorded -> every one of its objects stored at that destination.

The receiving process records the first three when an analysis begins (``record_dispatch_stages``, in the same
transaction), the worker the others (``StageTimes.record_stages``). ``cspine-node status`` prints the median and
95th percentile of each stage, ``/metrics`` has the histogram ``cspine_stage_seconds{stage}`` and every analysis
and delivery logs its stages (``node.tasks``). A spool made before this table existed gets it when opened
(``schema.create``); its older studies simply have no stage times.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

RECEIVE, STABILITY, QUEUE, ENCODE, PATIENT, STORE = "receive", "stability", "queue", "encode", "patient", "store"
FIRST_QUEUED, HOLD = "first", "hold"
STAGES = (RECEIVE, STABILITY, QUEUE, "pipeline:", HOLD, FIRST_QUEUED, ENCODE, PATIENT, STORE, "deliver:")
"""Stage names in the order a study passes them (``pipeline:`` and ``deliver:`` are prefixes)."""


def pipeline_stage(name: str) -> str:
    return f"pipeline:{name}"


def deliver_stage(destination: str) -> str:
    return f"deliver:{destination}"


def stage_order(stage: str) -> tuple[int, str]:
    """Sort key: the position of the stage (or its prefix) in ``STAGES``, then the name."""
    for i, s in enumerate(STAGES):
        if stage == s or (s.endswith(":") and stage.startswith(s)):
            return i, stage
    return len(STAGES), stage


def _insert(db: sqlite3.Connection, study_uid: str, generation: int, stages: Mapping[str, float], now: float) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO stage_times(study_uid, generation, stage, seconds, recorded_at) VALUES (?,?,?,?,?)",
        [(study_uid, generation, stage, max(float(s), 0.0), now) for stage, s in stages.items()],
    )


def dispatch_stages(s: sqlite3.Row | Mapping, now: float) -> dict[str, float]:
    """``receive``, ``stability`` and ``queue`` of the study row ``s`` (as it is when its analysis begins at
    ``now``); a stage whose times are unknown or out of order (an instance arrived after the dispatch) is left out."""
    out: dict[str, float] = {}
    first, last, dispatched = s["batch_started_at"], s["last_received_at"], s["dispatched_at"]
    if first is not None and last is not None and last >= first:
        out[RECEIVE] = last - first
    if dispatched is not None and last is not None and dispatched >= last:
        out[STABILITY] = dispatched - last
    if dispatched is not None and now >= dispatched:
        out[QUEUE] = now - dispatched
    return out


def record_dispatch_stages(db: sqlite3.Connection, s: sqlite3.Row, now: float) -> dict[str, float]:
    """Record ``dispatch_stages`` of the study row ``s`` in the caller's transaction; returns them."""
    stages = dispatch_stages(s, now)
    _insert(db, s["study_uid"], int(s["generation"]), stages, now)
    return stages


class StageTimes:
    """Recording and reading stage times. The class using it provides ``_db()`` and ``_tx()`` (``Spool``)."""

    def _db(self) -> sqlite3.Connection:  # pragma: no cover - provided by Spool
        raise NotImplementedError

    def _tx(self):  # noqa: ANN202 - provided by Spool (a context manager of one write transaction)
        raise NotImplementedError

    def record_stages(self, study_uid: str, generation: int, stages: Mapping[str, float],
                      now: float | None = None) -> None:
        """Record (or replace) stage times of one study generation."""
        if not stages:
            return
        with self._tx() as db:
            _insert(db, study_uid, generation, stages, now if now is not None else time.time())

    def stage_times(self, study_uid: str | None = None, *, since: float | None = None) -> dict[str, list[float]]:
        """Seconds per stage (all studies, or one), in ``STAGES`` order; ``since``: recorded at or after."""
        sql, args = "SELECT stage, seconds FROM stage_times WHERE 1=1", []
        if study_uid is not None:
            sql, args = sql + " AND study_uid=?", [*args, study_uid]
        if since is not None:
            sql, args = sql + " AND recorded_at>=?", [*args, since]
        out: dict[str, list[float]] = {}
        for stage, seconds in self._db().execute(sql + " ORDER BY recorded_at", args):
            out.setdefault(stage, []).append(float(seconds))
        return dict(sorted(out.items(), key=lambda kv: stage_order(kv[0])))

    def study_stages(self, study_uid: str, generation: int) -> dict[str, float]:
        """The stage times of one study generation."""
        rows = self._db().execute("SELECT stage, seconds FROM stage_times WHERE study_uid=? AND generation=?",
                                  (study_uid, generation))
        return dict(sorted(((r[0], float(r[1])) for r in rows), key=lambda kv: stage_order(kv[0])))
