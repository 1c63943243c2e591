"""Workers: device and queue settings, Celery routing to the configured queue (real Redis, real worker processes),
``cspine-node health``, the workers' status files and the metrics built from them (scraped from ``/metrics``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from io import BytesIO
from pathlib import Path

import pydantic
import pydicom
import pytest
import requests

from node.settings import NodeSettings
from node.spool import Spool, header_from_dataset
from tests.node.nodetest_data import make_image
from tests.node.nodetest_proc import NodeProcess, serve, wait_for
from tests.services import Redis, free_port

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    e.update(env)
    e["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=timeout)


def _store_ct(spool: Spool) -> str:
    """A CT chest instance in the spool: a real study that the pipelines skip quickly (no model needed)."""
    ds = make_image(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2", body_part="CHEST", view="")
    b = BytesIO()
    ds.save_as(b, enforce_file_format=True)
    spool.store(b.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(b.getvalue()))))
    return str(ds.StudyInstanceUID)


# -- settings --------------------------------------------------------------------------------------------


def test_worker_settings_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from node.tasks import ANALYZE_TASK, DELIVER_TASK, celery_config

    for k in [k for k in os.environ if k.startswith("CSPINE_")]:
        monkeypatch.delenv(k)
    s = NodeSettings()
    assert (s.device, s.analyze_queue, s.deliver_queue) == ("auto", "cspine", "cspine")
    assert s.consumed_queues == ["cspine"]
    cfg = tmp_path / "node.toml"
    cfg.write_text('device = "cuda:1"\nanalyze_queue = "cspine.gpu"\nbatch_max_images = 16\nbatch_wait_ms = 5\n')
    monkeypatch.setenv("CSPINE_CONFIG", str(cfg))
    s = NodeSettings()
    assert (s.device, s.analyze_queue, s.batch_max_images, s.batch_wait_ms) == ("cuda:1", "cspine.gpu", 16, 5.0)
    assert s.consumed_queues == ["cspine.gpu", "cspine"]
    monkeypatch.setenv("CSPINE_DEVICE", "CPU")  # env over file; the old CSPINE_DEVICE name still works
    monkeypatch.setenv("CSPINE_WORKER_QUEUES", '["cspine.gpu"]')
    s = NodeSettings()
    assert s.device == "cpu" and s.consumed_queues == ["cspine.gpu"]
    for bad in ("gpu", "cuda:x", "tpu"):
        monkeypatch.setenv("CSPINE_DEVICE", bad)
        with pytest.raises(pydantic.ValidationError, match="device must be"):
            NodeSettings()
    monkeypatch.setenv("CSPINE_DEVICE", "cpu")
    monkeypatch.setenv("CSPINE_ANALYZE_QUEUE", "a,b")
    with pytest.raises(pydantic.ValidationError, match="queue name"):
        NodeSettings()
    conf = celery_config(NodeSettings(analyze_queue="gpuq", deliver_queue="outq", broker_url="redis://x:6379/0"))
    assert conf["task_routes"][ANALYZE_TASK] == {"queue": "gpuq"} and conf["task_routes"][DELIVER_TASK] == {"queue": "outq"}
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]  # Flower sees the tasks


# -- routing with Redis -------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_tasks_go_to_the_configured_queue_and_only_its_workers_take_them(tmp_path: Path, redis_server: Redis) -> None:
    """Analyses go to ``analyze_queue``, deliveries to ``deliver_queue``; a worker started with ``--queues Q``
    takes the tasks of Q and none of another queue. Before any worker runs, the queue lengths (LLEN) show them."""
    from node import tasks
    from node.dispatch import CeleryDispatcher
    from node.metrics import queue_lengths

    tag = uuid.uuid4().hex[:8]
    qa, qg = f"deliver-{tag}", f"gpu-{tag}"
    spool_dir = tmp_path / "spool"
    env = {"CSPINE_SPOOL_DIR": str(spool_dir), "CSPINE_BROKER_URL": redis_server.url, "CSPINE_ANALYZE_QUEUE": qg,
           "CSPINE_DELIVER_QUEUE": qa, "CSPINE_LOG_JSON": "true", "CSPINE_LOG_LEVEL": "INFO",
           "CSPINE_WORKER_STATUS_INTERVAL_S": "1", "OMP_NUM_THREADS": "1"}
    s = NodeSettings(spool_dir=spool_dir, broker_url=redis_server.url, analyze_queue=qg, deliver_queue=qa)
    study_uid = _store_ct(Spool(spool_dir))
    tasks.configure(s)
    d = CeleryDispatcher()
    analyze_id = d.analyze(study_uid, 1)
    deliver_id = d.deliver(study_uid, "pacs")
    assert queue_lengths(s.broker_url, str(spool_dir), [qg, qa]) == {qg: 1, qa: 1}

    workers = {
        "deliver": NodeProcess(["worker", "--queues", qa, "--hostname", f"d{tag}@%h"], env, tmp_path / "d.log"),
        "gpu": NodeProcess(["worker", "--pool", "threads", "--concurrency", "2", "--queues", qg, "--hostname",
                            f"g{tag}@%h"], env, tmp_path / "g.log"),
    }
    try:
        wait_for(lambda: queue_lengths(s.broker_url, str(spool_dir), [qg, qa]) == {qg: 0, qa: 0}, 120,
                 "both queues drained")
        wait_for(lambda: "study not analysed" in workers["gpu"].log(), 60, "the analysis to run")
        for name, w in workers.items():
            assert w.proc.poll() is None, f"{name} worker exited:\n{w.log()}"
        logs = {k: w.log_path.read_text(errors="replace") for k, w in workers.items()}
        assert analyze_id in logs["gpu"] and analyze_id not in logs["deliver"]
        assert deliver_id in logs["deliver"] and deliver_id not in logs["gpu"]

        # Health: each worker answers a Celery ping addressed to its own node name; another name gets none.
        ok = _cli("health", "--role", "worker", "--hostname", f"g{tag}@%h", env=env)
        assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stdout + ok.stderr
        none = _cli("health", "--role", "worker", "--hostname", f"nobody{tag}@%h", "--timeout", "2", env=env)
        assert none.returncode == 1 and none.stdout.startswith("unhealthy: ")
        assert len(none.stdout.strip().splitlines()) == 1

        # The workers' status files: queues, pool, device; the analysing worker recorded its analysis.
        from node.worker_status import read_statuses

        def statuses() -> dict:
            by = {st["hostname"].split("@")[0]: st for st in read_statuses(spool_dir)}
            return by if by.get(f"g{tag}", {}).get("analyses", 0) >= 1 and f"d{tag}" in by else {}

        by_name = wait_for(statuses, 30, "both status files, the analysis recorded")
        assert by_name[f"g{tag}"]["queues"] == [qg] and by_name[f"g{tag}"]["pool"] == "threads"
        assert by_name[f"d{tag}"]["queues"] == [qa] and by_name[f"d{tag}"]["analyses"] == 0
        status = json.loads(_cli("status", "--json", env=env).stdout)
        assert status["celery_queues"] == {qg: 0, qa: 0}
        assert {w["hostname"].split("@")[0] for w in status["workers"] if w["alive"]} == {f"g{tag}", f"d{tag}"}
    finally:
        for w in workers.values():
            w.stop()
    dead = _cli("health", "--role", "worker", "--hostname", f"g{tag}@%h", "--timeout", "2", env=env)
    assert dead.returncode == 1, dead.stdout


# -- metrics from the spool, the broker and the status files -------------------------------------------


def test_metrics_queue_length_batches_models_and_delivery_latency(tmp_path: Path) -> None:
    """The embedded broker's queue length is its message files; batch sizes and model versions come from the
    workers' status files; delivery latency from the outbox."""
    from node import tasks
    from node.dispatch import CeleryDispatcher
    from node.metrics import SpoolCollector
    from node.worker_status import WorkerStatus

    spool_dir = tmp_path / "spool"
    s = NodeSettings(spool_dir=spool_dir, analyze_queue="cspine.gpu")
    sp = Spool(spool_dir)
    uid = _store_ct(sp)
    tasks.configure(s)
    CeleryDispatcher().analyze(uid, 1)
    CeleryDispatcher().analyze(uid, 1)
    CeleryDispatcher().deliver(uid, "pacs")

    ws = WorkerStatus(spool_dir, device="cuda", queues=["cspine.gpu"], pool="threads")
    for n in (3, 1, 8):
        ws.record_batch(n)
    ws.record_models([("xray", "cspine-xray-keypoints", "1.1.0")])
    ws.start("gpu1@host")
    ws.stop()  # a stopped worker's counts stay, but it is no longer alive
    live = WorkerStatus(spool_dir, device="cpu", queues=["cspine", "cspine.gpu"], pool="solo")
    live.record_batch(2)
    live.record_models([("mri", "cspine-mri", "1.0.0")])
    live.start("cpu1@host")
    try:
        now = time.time()
        db = sp._db()
        for dest, created, sent in (("pacs", now - 10, now - 7), ("pacs", now - 10, now - 6), ("archive", now - 10, None)):
            db.execute("INSERT INTO outbox(study_uid, generation, destination, sop_instance_uid, sop_class_uid, path,"
                       " state, created_at, updated_at, sent_at) VALUES (?,1,?,?,?,?,?,?,?,?)",
                       (uid, dest, uuid.uuid4().hex, "1.2", "/x", "sent" if sent else "pending", created, now, sent))
        db.commit()
        fams = {f.name: f for f in SpoolCollector(str(spool_dir), queues=["cspine", "cspine.gpu"]).collect()}
    finally:
        live.stop()
    ql = {smp.labels["queue"]: smp.value for smp in fams["cspine_celery_queue_length"].samples}
    assert ql == {"cspine.gpu": 2, "cspine": 1}
    bs = {(smp.name, smp.labels.get("le")): smp.value for smp in fams["cspine_batch_size"].samples}
    assert bs[("cspine_batch_size_count", None)] == 4 and bs[("cspine_batch_size_sum", None)] == 14
    assert bs[("cspine_batch_size_bucket", "2")] == 2 and bs[("cspine_batch_size_bucket", "4")] == 3
    models = {(smp.labels["pipeline"], smp.labels["version"]) for smp in fams["cspine_model_info"].samples}
    assert models == {("mri", "1.0.0")}  # the stopped GPU worker's model is no longer listed
    workers = {smp.labels["device"]: smp.value for smp in fams["cspine_workers"].samples}
    assert workers == {"cpu": 1}
    dl = {(smp.name, smp.labels.get("le")): smp.value for smp in fams["cspine_delivery_latency_seconds"].samples}
    assert dl[("cspine_delivery_latency_seconds_count", None)] == 1  # pacs complete; archive still pending
    assert dl[("cspine_delivery_latency_seconds_sum", None)] == pytest.approx(4.0, abs=0.01)
    assert dl[("cspine_delivery_latency_seconds_bucket", "2.0")] == 0 and dl[("cspine_delivery_latency_seconds_bucket", "5.0")] == 1


# -- the embedded node: health of both roles and the /metrics endpoint ------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_health_and_metrics_of_an_embedded_node(tmp_path: Path) -> None:
    metrics_port = free_port()
    spool_dir = tmp_path / "spool"
    env = {"CSPINE_SPOOL_DIR": str(spool_dir), "CSPINE_WORKER_STATUS_INTERVAL_S": "1"}
    node = serve(spool_dir, tmp_path / "node.log", CSPINE_METRICS_PORT=str(metrics_port),
                 CSPINE_METRICS_HOST="127.0.0.1", CSPINE_WORKER_STATUS_INTERVAL_S="1", CSPINE_DEVICE="cpu")
    env["CSPINE_PORT"] = str(node.port)
    try:
        ok = _cli("health", "--role", "node", env=env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("ok: C-ECHO") and len(ok.stdout.strip().splitlines()) == 1
        # The embedded worker (no remote control): its status file's heartbeat.
        wait_for(lambda: _cli("health", "--role", "worker", env=env).returncode == 0, 120, "the embedded worker")
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        for needed in ('cspine_celery_queue_length{queue="cspine"} 0.0', 'cspine_workers{device="cpu"} 1.0',
                       "cspine_batch_size_count", "cspine_delivery_latency_seconds_count", "# TYPE cspine_model_info"):
            assert needed in text, needed
        shown = _cli("status", "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics", env=env).stdout
        assert "celery queues (analysis -> cspine, delivery -> cspine): cspine 0" in shown
        assert "device cpu, pool solo, queues cspine" in shown
        assert "cspine_celery_queue_length{queue=cspine} 0" in shown
    finally:
        node.stop()
    down = _cli("health", "--role", "node", "--timeout", "2", env=env)
    assert down.returncode == 1 and down.stdout.startswith("unhealthy: C-ECHO"), down.stdout
    stopped = _cli("health", "--role", "worker", env=env)
    assert stopped.returncode == 1 and "stopped" in stopped.stdout, stopped.stdout
    # A spool that cannot be written makes the node unhealthy even before the C-ECHO matters.
    from node.health import _spool_writable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    ok, why = _spool_writable(NodeSettings(spool_dir=blocker))
    assert not ok and "not writable" in why
