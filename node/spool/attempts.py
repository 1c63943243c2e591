"""Analysis attempts: recorded in the index *before* the analysis runs, so that a worker that dies mid-analysis
(kill -9, segfault, out of memory) leaves a trace and counts as an attempt.

Each study keeps, for its newest generation: ``attempts`` (begun), ``worker_deaths`` (attempts whose worker died),
``attempt_id`` (the attempt now open: the Celery task id, ``""`` when none is open), ``retry_at`` (no new attempt
before this POSIX time) and ``last_error``. A new instance (a new generation) resets them.

* ``Spool.begin_analysis`` opens an attempt (``attempts + 1``, ``attempt_id``) in the same transaction that marks
  the study *analyzing*. If an attempt is still open there, its worker died (the same task id delivered again after
  Celery's ``reject_on_worker_lost``, or an open attempt older than ``RetryPolicy.running_for_s``): the death is
  recorded, then the study waits ``RetryPolicy.delay_s`` (``AnalysisDeferred``) or, when its attempts are used up,
  becomes a dead letter (``AnalysisAbandoned``). An open attempt of another task that is younger than that is a
  duplicate dispatch: deferred, not counted.
* ``Spool.fail_attempt`` closes an attempt that raised: the same backoff or dead letter.
* ``Spool.recover(lost_attempts=True)`` (the embedded node, when its worker child died or at start-up) records
  the death of every open attempt at once, so the study is re-dispatched only after its backoff.

The dead letter says why: "worker died N times during analysis", or the last error.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass

from node.spool.states import DeadLetterKind, StudyState


def backoff(retries: int, cap: float) -> float:
    """Exponential backoff with jitter: ~1, 2, 4 ... s (``retries`` = 0, 1, 2 ...), at most ``cap`` s."""
    return min(cap, 2.0**retries) * random.uniform(0.8, 1.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how fast a study's analysis is tried again (``NodeSettings``: ``task_max_retries`` + 1
    attempts, ``task_retry_backoff_max_s``, ``task_time_limit_s``)."""

    max_attempts: int = 4
    """Attempts per generation, worker deaths included; then a dead letter."""
    backoff_max_s: float = 120.0
    running_for_s: float = 1800.0
    """An open attempt of another task younger than this is taken as still running; older, as dead."""

    def delay_s(self, failures: int) -> float:
        """The wait before the next attempt after ``failures`` failed attempts (s)."""
        return backoff(max(failures, 1) - 1, self.backoff_max_s)


class AnalysisDeferred(Exception):
    """No attempt now: try again in ``wait_s`` seconds (``reason`` says why)."""

    def __init__(self, wait_s: float, reason: str):
        super().__init__(f"{reason}; next attempt in {wait_s:.1f} s")
        self.wait_s = max(0.0, wait_s)
        self.reason = reason


class AnalysisAbandoned(Exception):
    """The study used up its attempts and is now a dead letter (``reason``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def give_up_reason(attempts: int, deaths: int, last_error: str) -> str:
    """The dead letter's text for a study that used up ``attempts`` (``deaths`` of them killed the worker)."""
    if deaths and deaths >= attempts:
        return f"worker died {deaths} times during analysis"
    if deaths:
        return f"analysis failed {attempts} times ({deaths} worker deaths); last error: {last_error}"
    return last_error or f"analysis failed {attempts} times"


def dead_letter(db: sqlite3.Connection, study_uid: str, generation: int, error: str, task_id: str, now: float) -> None:
    """Record an analysis dead letter and mark the study failed (unless that generation was analysed meanwhile)."""
    db.execute(
        "INSERT INTO dead_letters(kind, study_uid, generation, task_id, error, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (DeadLetterKind.ANALYZE.value, study_uid, generation, task_id, error[:4000], now),
    )
    db.execute(
        "UPDATE studies SET state=?, reason=?, analyzed_at=?, attempt_id='', retry_at=NULL"
        " WHERE study_uid=? AND analyzed_generation < ?",
        (StudyState.FAILED.value, error[:1000], now, study_uid, generation),
    )


def close_attempt(db: sqlite3.Connection, s: sqlite3.Row, policy: RetryPolicy, now: float, *, died: bool,
                  error: str = "") -> float | str:
    """Close the open attempt of study row ``s`` as failed (``died``: its worker died; else it raised ``error``).
    Returns the wait before the next attempt (s, ``retry_at`` set), or the dead letter's reason (written) when the
    attempts are used up."""
    deaths = int(s["worker_deaths"]) + (1 if died else 0)
    last_error = error or str(s["last_error"])
    attempts = int(s["attempts"])
    if attempts >= policy.max_attempts:
        db.execute("UPDATE studies SET worker_deaths=?, last_error=? WHERE study_uid=?",
                   (deaths, last_error[:1000], s["study_uid"]))
        reason = give_up_reason(attempts, deaths, last_error)
        dead_letter(db, s["study_uid"], int(s["generation"]), reason, str(s["attempt_id"]), now)
        return reason
    wait = policy.delay_s(attempts)
    db.execute(
        "UPDATE studies SET worker_deaths=?, last_error=?, attempt_id='', retry_at=?, state=? WHERE study_uid=?",
        (deaths, last_error[:1000], now + wait, StudyState.QUEUED.value, s["study_uid"]),
    )
    return wait
