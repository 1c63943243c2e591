"""A study that kills the worker (SIGKILL mid-analysis, like the OOM killer) ends as a dead letter: every death
counts as an attempt, the study is tried again with growing gaps, and after ``task_max_retries`` + 1 attempts it
is a dead letter "worker died N times during analysis" that ``cspine-node status`` shows; other studies are still
analysed. Real processes: ``serve`` with its embedded worker, and Redis with a prefork worker
(``reject_on_worker_lost`` delivers the task again). The killing hook is ``tests.node.poison_worker`` (test only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from node.scu import store_files
from node.spool import Spool, StudyState
from tests.node.nodetest_data import make_image, write_image
from tests.node.nodetest_proc import ROOT, NodeProcess, serve, wait_for
from tests.node.poison_worker import POISON_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_RETRIES = 3  # 4 attempts
NO_MODELS = json.dumps({m: {"enabled": False} for m in
                        ("keypoints", "curvature", "upper_cervical", "cord_compression", "mri", "neck_pain")})
REASON = f"worker died {MAX_RETRIES + 1} times during analysis"


def _studies(tmp_path: Path) -> tuple[str, str, list[Path]]:
    poison = make_image(seed=1)
    ct = make_image(body_part="CHEST", view="PA", seed=2)  # a chest radiograph: routed nowhere, quickly
    files = [write_image(tmp_path / "in" / "poison.dcm", poison), write_image(tmp_path / "in" / "ct.dcm", ct)]
    (tmp_path / "poison.txt").write_text(f"{poison.StudyInstanceUID}\n")
    return str(poison.StudyInstanceUID), str(ct.StudyInstanceUID), files


def _env(tmp_path: Path) -> dict[str, str]:
    return {"CSPINE_STABLE_AGE_S": "0.3", "CSPINE_ASSEMBLY_INTERVAL_S": "0.1", "CSPINE_TASK_MAX_RETRIES": str(MAX_RETRIES),
            "CSPINE_MODELS": NO_MODELS, "CSPINE_DEVICE": "cpu", "CSPINE_LOG_JSON": "true", "OMP_NUM_THREADS": "1",
            POISON_ENV: str(tmp_path / "poison.txt")}


def _deaths(tmp_path: Path) -> list[float]:
    p = tmp_path / "poison.txt.deaths"
    return [float(line.split()[0]) for line in p.read_text().splitlines()] if p.exists() else []


def _dead_letter(spool_dir: Path, study_uid: str) -> dict | None:
    sp = Spool(spool_dir)
    try:
        return next((d for d in sp.dead_letters() if d["study_uid"] == study_uid), None)
    finally:
        sp.close()


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _ts(e: dict) -> float:
    return datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _status_text(spool_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    env.update({"CSPINE_SPOOL_DIR": str(spool_dir), "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "node.cli", "status"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60).stdout


def _assert_ended(spool_dir: Path, poison: str, ct: str, deaths: list[float]) -> None:
    assert len(deaths) == MAX_RETRIES + 1, deaths
    dl = _dead_letter(spool_dir, poison)
    assert dl is not None and dl["error"] == REASON and dl["kind"] == "analyze"
    sp = Spool(spool_dir)
    try:
        row = sp.study(poison)
        assert (row.state, row.attempts, row.worker_deaths, row.reason) == (StudyState.FAILED, 4, 4, REASON)
        assert sp.study(ct).state == StudyState.SKIPPED, "the worker still analyses other studies"
    finally:
        sp.close()
    shown = _status_text(spool_dir)
    assert "dead letters: 1" in shown and f"analyze {poison} gen 1 : {REASON}" in shown, shown
    assert f"{poison} failed (1 instances, gen 1, 4 attempts, 4 worker deaths) - {REASON}" in shown, shown


@pytest.mark.timeout(300)
def test_poison_study_embedded_worker(tmp_path: Path) -> None:
    poison, ct, files = _studies(tmp_path)
    spool_dir = tmp_path / "spool"
    log = tmp_path / "node.log"
    node = serve(spool_dir, log, module="tests.node.poison_worker", **_env(tmp_path))
    try:
        assert store_files(files, "127.0.0.1", node.port) == [0, 0]
        wait_for(lambda: _dead_letter(spool_dir, poison), 240, "the poison study's dead letter")
        time.sleep(3.0)  # nothing more happens to it
        events = _events(log)
    finally:
        node.stop()
    deaths = _deaths(tmp_path)
    _assert_ended(spool_dir, poison, ct, deaths)
    dispatched = [e for e in events if e.get("event") == "study dispatched" and e.get("study_uid") == poison]
    died = [e for e in events if e.get("event") == "embedded worker died; restarting"]
    assert len(dispatched) == MAX_RETRIES + 1 and len(died) == MAX_RETRIES + 1, (dispatched, died)
    assert all(e.get("analyses_lost") == 1 for e in died)
    # From each death to the next dispatch: the backoff, 1, 2, 4 s (x 0.8..1.0 jitter, + one assembler tick).
    waits = [_ts(dispatched[i + 1]) - _ts(died[i]) for i in range(MAX_RETRIES)]
    for i, w in enumerate(waits):
        assert 0.8 * 2**i - 0.05 <= w <= 2**i + 1.0, waits
    assert waits == sorted(waits), waits


@pytest.mark.timeout(300)
def test_poison_study_redis_prefork_worker(tmp_path: Path, redis_server) -> None:  # noqa: ANN001
    poison, ct, files = _studies(tmp_path)
    spool_dir = tmp_path / "spool"
    env = {**_env(tmp_path), "CSPINE_BROKER_URL": redis_server.url,
           "CSPINE_ANALYZE_QUEUE": f"poison-{os.getpid()}-{time.time_ns()}"}
    env["CSPINE_DELIVER_QUEUE"] = env["CSPINE_ANALYZE_QUEUE"]
    node = serve(spool_dir, tmp_path / "node.log", **env)
    worker = NodeProcess(["worker", "--pool", "prefork", "--concurrency", "1"],
                         {"CSPINE_SPOOL_DIR": str(spool_dir), **env}, tmp_path / "worker.log",
                         module="tests.node.poison_worker")
    try:
        assert store_files(files, "127.0.0.1", node.port) == [0, 0]
        wait_for(lambda: _dead_letter(spool_dir, poison), 240, "the poison study's dead letter")
        time.sleep(3.0)
        assert worker.proc.poll() is None, "the prefork worker's main process survives its children"
        events = _events(tmp_path / "worker.log")
    finally:
        worker.stop()
        node.stop()
    deaths = _deaths(tmp_path)
    _assert_ended(spool_dir, poison, ct, deaths)
    deferred = [e for e in events if e.get("event") == "analysis deferred" and e.get("study_uid") == poison]
    assert [e["reason"] for e in deferred] == ["the worker died during the previous attempt"] * MAX_RETRIES
    # Each redelivery after a death waits the backoff (1, 2, 4 s x 0.8..1.0) before the next attempt. (The time
    # from a death to its redelivery is Celery's: the prefork pool notices a lost child after 0 to ~5 s.)
    waits = [float(e["wait_s"]) for e in deferred]
    for i, w in enumerate(waits):
        assert 0.8 * 2**i - 0.1 <= w <= 2**i + 0.1, waits
        assert deaths[i + 1] >= _ts(deferred[i]) + w - 0.1, (deaths, waits)
    assert waits == sorted(waits), waits
