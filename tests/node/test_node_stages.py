"""Per-stage timing of every study (``node.spool.stages``): receive, stability and queue recorded when the analysis
begins, the pipelines, encoding and storing by the worker, each delivery; read back by ``status`` (median, p95)
and ``/metrics`` (``cspine_stage_seconds``); an index made before the table existed gains it."""

from __future__ import annotations

import sqlite3
import time
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pydicom

from node import fanout, tasks
from node.metrics import SpoolCollector
from node.settings import NodeSettings
from node.spool import Spool, header_from_dataset
from node.spool.stages import stage_order
from node.status import collect, render
from tests.node.nodetest_data import make_image

T0 = 1000.0


def _store(sp: Spool, study_uid: str | None, now: float, seed: int) -> str:
    ds = make_image(study_uid, seed=seed)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sp.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))), now=now)
    return str(ds.StudyInstanceUID)


def test_dispatch_stages_of_each_batch(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    uid = _store(sp, None, T0, 1)
    _store(sp, uid, T0 + 1.5, 2)
    sp.mark_dispatched(uid, 2, "t1", now=T0 + 3.0)
    assert sp.begin_analysis(uid, now=T0 + 3.25) is not None
    assert sp.study_stages(uid, 2) == {"receive": 1.5, "stability": 1.5, "queue": 0.25}
    sp.finish_analysis(uid, 2, [], [], now=T0 + 4)
    # a late instance starts a new batch: its own receive time, not since the first instance of the study
    _store(sp, uid, T0 + 10, 3)
    sp.mark_dispatched(uid, 3, "t2", now=T0 + 10.5)
    sp.begin_analysis(uid, now=T0 + 11)
    assert sp.study_stages(uid, 3) == {"receive": 0.0, "stability": 0.5, "queue": 0.5}
    assert sp.stage_times()["queue"] == [0.25, 0.5]


def test_worker_and_delivery_stages_in_log_status_and_metrics(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    spool_dir = tmp_path / "spool"
    sp = Spool(spool_dir)
    uid = _store(sp, None, T0, 1)
    sp.mark_dispatched(uid, 1, "t1", now=T0 + 1)

    def analyze(study, history):  # noqa: ANN001, ANN202 - what pipelines.analyze returns, reduced
        return SimpleNamespace(objects=[], patient_objects=[], results=[], skipped=[], warnings=[],
                               timings={"pipeline:xray": 0.7, "encode": 0.6})

    logged = []
    monkeypatch.setattr(tasks, "log", lambda logger, event, *a, **kw: logged.append((event, kw)))
    monkeypatch.setattr(fanout, "log", lambda logger, event, *a, **kw: logged.append((event, kw)))
    tasks.run_analysis(sp, ["pacs"], uid, analyze, patient_window_days=0)
    stages = sp.study_stages(uid, 1)
    assert {"receive", "stability", "queue", "pipeline:xray", "encode", "store"} <= set(stages)
    assert stages["pipeline:xray"] == 0.7 and stages["encode"] == 0.6
    finished = next(kw for event, kw in logged if event.startswith("analysis"))
    assert finished["stages"]["encode"] == 0.6 and "queue" in finished["stages"]

    rows = [SimpleNamespace(generation=1, created_at=time.time() - 2.0)]
    fanout.record_delivery(sp, uid, "pacs", rows)
    assert 1.9 < sp.study_stages(uid, 1)["deliver:pacs"] < 10
    assert next(kw for event, kw in logged if event == "delivered")["stages"]["deliver:pacs"] > 1.9

    info = collect(NodeSettings(spool_dir=spool_dir, metrics_port=None))
    assert list(info["stages_s"]) == sorted(info["stages_s"], key=stage_order)
    assert info["stages_s"]["encode"] == {"count": 1, "p50": 0.6, "p95": 0.6, "max": 0.6}
    text = render(info)
    assert "stage times (median / p95 / max, s" in text and "deliver:pacs" in text
    fams = {f.name: f for f in SpoolCollector(str(spool_dir)).collect()}
    samples = {(s.name, s.labels.get("stage"), s.labels.get("le")): s.value for s in fams["cspine_stage_seconds"].samples}
    assert samples[("cspine_stage_seconds_count", "encode", None)] == 1
    assert samples[("cspine_stage_seconds_bucket", "encode", "0.5")] == 0
    assert samples[("cspine_stage_seconds_bucket", "encode", "1.0")] == 1


def test_index_of_an_older_release_gains_the_stage_table(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    db = sqlite3.connect(root / "index.sqlite3")
    db.execute("CREATE TABLE studies (study_uid TEXT PRIMARY KEY, state TEXT NOT NULL, generation INTEGER NOT NULL"
               " DEFAULT 0, dispatched_generation INTEGER NOT NULL DEFAULT 0, analyzed_generation INTEGER NOT NULL"
               " DEFAULT 0, n_instances INTEGER NOT NULL DEFAULT 0, first_received_at REAL NOT NULL, last_received_at"
               " REAL NOT NULL, ready_at REAL, dispatched_at REAL, analysis_started_at REAL, analyzed_at REAL, task_id"
               " TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '', summary TEXT NOT NULL DEFAULT '')")
    db.execute("INSERT INTO studies(study_uid, state, generation, first_received_at, last_received_at, dispatched_at)"
               " VALUES ('1.2.3', 'queued', 1, 1, 1, 2)")
    db.commit()
    db.close()
    sp = Spool(root)
    assert sp.study("1.2.3").batch_started_at is None and sp.stage_times() == {}
    sp.begin_analysis("1.2.3", now=5.0)  # no batch start known: receive is left out
    assert sp.study_stages("1.2.3", 1) == {"stability": 1.0, "queue": 3.0}
