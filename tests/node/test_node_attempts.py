"""Analysis attempts in the spool index (``node.spool.attempts``): recorded before the analysis runs, worker deaths
counted, backoff, dead letter with the reason; the index of an older release gains the new columns."""

from __future__ import annotations

import sqlite3
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from node.spool import Spool, StudyState, header_from_dataset
from node.spool.attempts import AnalysisAbandoned, AnalysisDeferred, RetryPolicy, give_up_reason
from tests.node.nodetest_data import make_image

T0 = 1000.0
POLICY = RetryPolicy(max_attempts=4, backoff_max_s=120.0, running_for_s=600.0)


def _spool(tmp_path: Path) -> tuple[Spool, str]:
    sp = Spool(tmp_path / "spool", retry=POLICY)
    ds = make_image()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sp.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))), now=T0)
    return sp, str(ds.StudyInstanceUID)


def test_attempt_recorded_before_analysis_and_closed_by_finish(tmp_path: Path) -> None:
    sp, uid = _spool(tmp_path)
    study, gen = sp.begin_analysis(uid, now=T0 + 10, attempt_id="task-1")
    row = sp.study(uid)
    assert (row.state, row.attempts, row.attempt_id, gen) == (StudyState.ANALYZING, 1, "task-1", 1)
    assert sp.finish_analysis(uid, gen, [], [], skipped_reason="nothing", now=T0 + 11)
    row = sp.study(uid)
    assert row.attempt_id == "" and row.state == StudyState.SKIPPED
    assert sp.begin_analysis(uid, now=T0 + 12) is None  # up to date: no attempt opened
    assert sp.study(uid).attempts == 1


def test_task_delivered_again_after_its_worker_died_backs_off_then_dead_letters(tmp_path: Path) -> None:
    """Redis mode: the same task id comes back (reject_on_worker_lost) and finds its own attempt open."""
    sp, uid = _spool(tmp_path)
    now, waits = T0 + 10, []
    sp.mark_dispatched(uid, 1, "task-1", now=now)
    for attempt in range(1, 5):
        sp.begin_analysis(uid, now=now, attempt_id="task-1")  # the worker dies during this attempt
        assert sp.study(uid).attempts == attempt
        now += 1
        if attempt < 4:
            with pytest.raises(AnalysisDeferred, match="worker died during the previous attempt") as d:
                sp.begin_analysis(uid, now=now, attempt_id="task-1")
            waits.append(d.value.wait_s)
            row = sp.study(uid)
            assert row.worker_deaths == attempt and row.attempt_id == "" and row.retry_at == pytest.approx(now + d.value.wait_s)
            with pytest.raises(AnalysisDeferred, match="backing off"):  # too early
                sp.begin_analysis(uid, now=now + 0.1, attempt_id="task-1")
            now = row.retry_at
    with pytest.raises(AnalysisAbandoned, match="worker died 4 times during analysis"):
        sp.begin_analysis(uid, now=now, attempt_id="task-1")
    assert [0.8 <= w / 2**i <= 1.0 for i, w in enumerate(waits)] == [True] * 3  # 1, 2, 4 s with jitter
    row = sp.study(uid)
    assert row.state == StudyState.FAILED and row.reason == "worker died 4 times during analysis"
    (dl,) = sp.dead_letters()
    assert (dl["kind"], dl["error"], dl["generation"]) == ("analyze", "worker died 4 times during analysis", 1)
    assert sp.ready_studies(now + 1000, 0, 0) == []  # not dispatched again
    assert sp.counts()["dead_letters"] == {"analyze": 1}


def test_embedded_node_records_deaths_in_recover_and_dispatches_after_backoff(tmp_path: Path) -> None:
    sp, uid = _spool(tmp_path)
    now = T0 + 10
    sp.mark_dispatched(uid, 1, "task-1", now=now)
    for attempt in range(1, 5):
        assert sp.ready_studies(now, 0, 0) == []
        sp.begin_analysis(uid, now=now, attempt_id=f"task-{attempt}")
        now += 2  # the worker child dies; the node notices
        report = sp.recover(now=now, lost_attempts=True)
        assert report["worker_deaths"] == 1
        row = sp.study(uid)
        if attempt == 4:
            break
        assert row.state == StudyState.RECEIVING and row.retry_at > now and row.worker_deaths == attempt
        assert sp.ready_studies(now, 0, 0) == [], "not before its backoff"
        now = row.retry_at
        assert sp.ready_studies(now, 0, 0) == [(uid, 1)]
        sp.mark_dispatched(uid, 1, f"task-{attempt + 1}", now=now)
    assert row.state == StudyState.FAILED and row.reason == "worker died 4 times during analysis"
    assert sp.recover(now=now + 1, lost_attempts=True)["studies_requeued"] == 0
    assert sp.ready_studies(now + 1000, 0, 0) == []


def test_failed_attempts_back_off_and_end_with_the_last_error(tmp_path: Path) -> None:
    sp, uid = _spool(tmp_path)
    now = T0 + 10
    sp.begin_analysis(uid, now=now, attempt_id="t")
    sp.recover(now=now + 1, lost_attempts=True)  # one death ...
    now = sp.study(uid).retry_at
    for _ in range(3):  # ... then three exceptions
        sp.begin_analysis(uid, now=now, attempt_id="t")
        outcome = sp.fail_attempt(uid, "t", "RuntimeError: boom", now=now + 1)
        now = sp.study(uid).retry_at or now
    assert isinstance(outcome, AnalysisAbandoned)
    assert outcome.reason == "analysis failed 4 times (1 worker deaths); last error: RuntimeError: boom"
    assert sp.study(uid).state == StudyState.FAILED
    assert sp.fail_attempt(uid, "t", "late", now=now) is None  # no attempt open any more
    assert give_up_reason(4, 0, "ValueError: x") == "ValueError: x"


def test_duplicate_dispatch_is_deferred_not_counted_and_new_generation_resets(tmp_path: Path) -> None:
    sp, uid = _spool(tmp_path)
    sp.begin_analysis(uid, now=T0 + 10, attempt_id="task-1")
    with pytest.raises(AnalysisDeferred, match="another task is analysing"):
        sp.begin_analysis(uid, now=T0 + 20, attempt_id="task-2")
    assert (sp.study(uid).attempts, sp.study(uid).worker_deaths) == (1, 0)
    # An open attempt older than running_for_s is dead, whoever asks.
    with pytest.raises(AnalysisDeferred, match="worker died"):
        sp.begin_analysis(uid, now=T0 + 10 + POLICY.running_for_s, attempt_id="task-2")
    assert sp.study(uid).worker_deaths == 1
    ds = make_image(uid)  # a late instance: a new generation, new attempts
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sp.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))), now=T0 + 700)
    row = sp.study(uid)
    assert (row.generation, row.attempts, row.worker_deaths, row.retry_at, row.attempt_id) == (2, 0, 0, None, "")


def test_index_of_an_older_release_gains_the_attempt_columns(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    db = sqlite3.connect(root / "index.sqlite3")
    db.execute("CREATE TABLE studies (study_uid TEXT PRIMARY KEY, state TEXT NOT NULL, generation INTEGER NOT NULL"
               " DEFAULT 0, dispatched_generation INTEGER NOT NULL DEFAULT 0, analyzed_generation INTEGER NOT NULL"
               " DEFAULT 0, n_instances INTEGER NOT NULL DEFAULT 0, first_received_at REAL NOT NULL, last_received_at"
               " REAL NOT NULL, ready_at REAL, dispatched_at REAL, analysis_started_at REAL, analyzed_at REAL, task_id"
               " TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '', summary TEXT NOT NULL DEFAULT '')")
    db.execute("INSERT INTO studies(study_uid, state, generation, first_received_at, last_received_at)"
               " VALUES ('1.2.3', 'receiving', 1, 1, 1)")
    db.commit()
    db.close()
    sp = Spool(root)
    row = sp.study("1.2.3")
    assert (row.attempts, row.worker_deaths, row.attempt_id, row.retry_at, row.last_error) == (0, 0, "", None, "")
    Spool(root)  # idempotent
