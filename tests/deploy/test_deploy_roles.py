"""Process-level smoke test of the compose roles: Redis, Orthanc (demo PACS), ``cspine-node serve`` and two
``cspine-node worker`` processes, started as local processes with the environments that
deploy/docker-compose.yml gives them (service names and container ports replaced by loopback ports).

Docker does not run on these machines, so this is how the compose wiring is exercised for real: Orthanc runs
with the wiring of deploy/compose/orthanc.json (DICOMweb root, the node's modality entry) and its auto-routing
script autoroute.lua; the node and the workers run with the compose env (Redis broker, Orthanc destinations,
AE allow-list), and the images' health checks (``cspine-node health``: C-ECHO to the SCP, Celery ping of each worker's node name) run against them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import require_binary
from tests.deploy.deploy_files import (
    AUTOROUTE_LUA,
    ROOT,
    compose,
    healthcheck_argv,
    localize_env,
    orthanc_config,
    service_env,
)
from tests.node.nodetest_proc import NodeProcess, wait_for
from tests.services import (
    ORTHANC_BIN,
    ORTHANC_DICOMWEB_PLUGIN,
    REDIS_BIN,
    Orthanc,
    Redis,
    free_port,
    start_orthanc,
    start_redis,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WORKERS = ("worker-cpu", "worker-gpu")


@dataclass
class Roles:
    """The running roles of the compose file, on loopback."""

    redis: Redis
    orthanc: Orthanc
    node: NodeProcess
    workers: dict[str, NodeProcess]
    env: dict[str, dict[str, str]]
    metrics_port: int
    spool: Path
    work: Path
    logs: dict[str, Path] = field(default_factory=dict)

    def logs_tail(self) -> str:
        return "\n".join(f"--- {name} ---\n{p.read_text(errors='replace')[-3000:]}" for name, p in self.logs.items()
                         if p.exists())


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def start_roles(work: Path, *, stable_age_s: str | None = None) -> Roles:
    """Start Redis, Orthanc, the node and both workers as the compose file describes them."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = orthanc_config()
    node_port, metrics_port, orthanc_http, orthanc_dicom = _free_ports(4)
    redis = start_redis(work / "redis")
    started: list = [redis]
    try:
        modalities = {name: (m["AET"], "127.0.0.1", node_port) for name, m in cfg["DicomModalities"].items()}
        orthanc = start_orthanc(
            work / "orthanc", aet=cfg["DicomAet"], modalities=modalities, http_port=orthanc_http,
            dicom_port=orthanc_dicom,
            extra_config={"DicomWeb": cfg["DicomWeb"], "LuaScripts": [str(AUTOROUTE_LUA)],
                          "DicomCheckCalledAet": cfg["DicomCheckCalledAet"],
                          "OverwriteInstances": cfg["OverwriteInstances"]})
        started.append(orthanc)
        ports = {("redis", 6379): redis.port, ("orthanc", cfg["DicomPort"]): orthanc_dicom,
                 ("orthanc", cfg["HttpPort"]): orthanc_http}
        spool = work / "spool"
        common = {"CSPINE_SPOOL_DIR": str(spool), "CSPINE_LOG_JSON": "true", "OMP_NUM_THREADS": "1"}
        env = {"node": localize_env(service_env("node"), ports, {
            **common, "CSPINE_HOST": "127.0.0.1", "CSPINE_PORT": str(node_port), "CSPINE_METRICS_HOST": "127.0.0.1",
            "CSPINE_METRICS_PORT": str(metrics_port), **({"CSPINE_STABLE_AGE_S": stable_age_s} if stable_age_s else {})})}
        model = {k: os.environ[k] for k in ("CSPINE_MODELS",) if k in os.environ}  # other weights to try
        for w in WORKERS:  # no GPU on these machines: the GPU worker's role runs on the CPU here
            env[w] = localize_env(service_env(w), ports, {**common, "CSPINE_DEVICE": "cpu", **model})
        logs = {name: work / f"{name}.log" for name in ("node", *WORKERS)}
        node = NodeProcess(compose()["services"]["node"]["command"], env["node"], logs["node"]).wait_serving(120)
        started.append(node)
        workers = {}
        for w in WORKERS:
            workers[w] = NodeProcess(compose()["services"][w]["command"], env[w], logs[w])
            started.append(workers[w])
        logs["orthanc"] = orthanc.log_path
        return Roles(redis, orthanc, node, workers, env, metrics_port, spool, work, logs)
    except BaseException:
        for s in reversed(started):
            s.stop()
        raise


def stop_roles(roles: Roles) -> None:
    for w in roles.workers.values():
        w.stop()
    roles.node.stop()
    roles.orthanc.stop()
    roles.redis.stop()


def run_health_check(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run an image's ``cspine-node health ...`` check with a role's environment (``python -m node.cli``)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "node.cli", *argv[1:]], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def cli(args: list[str], env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "node.cli", *args], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True).stdout


def wait_workers_ready(roles: Roles, timeout: float = 120.0) -> None:
    checks = {w: healthcheck_argv(compose()["services"][w]["healthcheck"]["test"]) for w in WORKERS}

    def ready() -> bool:
        for w, proc in roles.workers.items():
            if proc.proc.poll() is not None:
                raise AssertionError(f"{w} exited with {proc.proc.returncode}:\n{roles.logs_tail()}")
        return all(run_health_check(checks[w], roles.env[w]).returncode == 0 for w in WORKERS)

    wait_for(ready, timeout, "the workers to answer the Celery ping health check", interval=2.0)


def xray_weights_missing() -> str:
    """Why the X-ray model cannot run (empty when it can): the shipped weights, or the keypoint weights named in
    ``CSPINE_MODELS``."""
    from models.xray_keypoints import DEFAULT_WEIGHTS
    from node.settings import NodeSettings

    path = NodeSettings().model("keypoints").weights or DEFAULT_WEIGHTS
    return "" if path.is_file() else f"no trained X-ray weights at {path}"


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    require_binary(REDIS_BIN, ORTHANC_BIN)
    if not ORTHANC_DICOMWEB_PLUGIN.exists():
        pytest.skip(f"{ORTHANC_DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb)")
    r = start_roles(tmp_path_factory.mktemp("roles"))
    try:
        yield r
    finally:
        stop_roles(r)


def test_deploy_roles_health_checks(roles: Roles) -> None:
    """The images' health checks pass against the running roles: C-ECHO to the SCP, Celery ping of the workers."""
    import dockerfile

    cmds = dockerfile.parse_file(str(ROOT / "deploy" / "Dockerfile"))
    node_check = healthcheck_argv(list([c for c in cmds if c.cmd == "HEALTHCHECK"][-1].value))
    result = run_health_check(node_check, roles.env["node"])
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.startswith("ok: ")
    wait_workers_ready(roles)
    # A worker name that does not run gets no ping reply.
    absent = run_health_check([*healthcheck_argv(compose()["services"]["worker-cpu"]["healthcheck"]["test"])[:-1],
                               "nobody@nowhere", "--timeout", "2"], roles.env["worker-cpu"])
    assert absent.returncode == 1 and absent.stdout.startswith("unhealthy: "), absent.stdout
    # And a check that must fail does fail: the node refuses a C-ECHO from an AE title it does not allow.
    refused = run_health_check(node_check, {**roles.env["node"], "CSPINE_ALLOWED_CALLING_AETS": '["NOT-ALLOWED"]',
                                            "CSPINE_PORT": str(roles.node.port)})
    assert refused.returncode != 0
    metrics = requests.get(f"http://127.0.0.1:{roles.metrics_port}/metrics", timeout=10).text
    assert "cspine_queue_depth" in metrics


def test_deploy_roles_orthanc_to_node_to_orthanc(roles: Roles) -> None:
    """A study uploaded to the demo PACS is routed to the node, analysed by a worker, and the results are
    stored back in the PACS (C-STORE and STOW-RS), visible by QIDO-RS."""
    from dicomweb_client.api import DICOMwebClient

    from tests.node.nodetest_data import phantom_study_files

    missing = xray_weights_missing()
    wait_workers_ready(roles)
    studies = [phantom_study_files(roles.work / f"phantom{seed}", seed) for seed in (0, 1)]
    for _, paths in studies:
        for p in paths:
            roles.orthanc.upload(p)  # autoroute.lua forwards DX images to the node (modality "cspine")

    def received() -> bool:
        info = json.loads(cli(["status", "--json"], roles.env["node"]))
        uids = {s["study_uid"] for s in info["recent_studies"]}
        return all(uid in uids for uid, _ in studies)

    wait_for(received, 60, "Orthanc to forward both studies to the node")
    if missing:
        pytest.skip(f"{missing} (set CSPINE_MODELS to try other keypoint weights); routing to the node was checked")

    client = DICOMwebClient(roles.orthanc.dicomweb_url)

    def results_in_orthanc() -> dict[str, set[str]]:
        found = {}
        for uid, _ in studies:
            modalities = {s["00080060"]["Value"][0] for s in client.search_for_series(study_instance_uid=uid)}
            if "SR" not in modalities:
                return {}
            found[uid] = modalities
        return found

    try:
        found = wait_for(results_in_orthanc, 150, "the SR of both studies in Orthanc (QIDO-RS)", interval=2.0)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{roles.logs_tail()}") from None
    for uid, modalities in found.items():
        assert {"DX", "SR"} <= modalities, (uid, modalities)

    # Both destinations (C-STORE to the PACS, STOW-RS to its DICOMweb root) delivered everything.
    def delivered() -> dict:
        info = json.loads(cli(["status", "--json"], roles.env["node"]))
        d = info["destinations"]
        ok = all(d.get(n, {}).get("sent", 0) > 0 and not d.get(n, {}).get("pending") for n in ("pacs", "archive"))
        return info if ok else {}

    info = wait_for(delivered, 60, "deliveries to both destinations")
    assert info["dead_letters"] == []
    assert info["studies"].get("done", 0) >= 2
    # Routing: the analyses went to the GPU queue (either worker may take them: the CPU worker is the fallback
    # consumer), the deliveries to the delivery queue, which only the CPU worker consumes.
    logs = {w: roles.logs[w].read_text(errors="replace") for w in WORKERS}
    ran = {w: logs[w].count("analysis finished") for w in WORKERS}
    assert sum(ran.values()) >= 2, ran
    assert '"event": "delivered"' in logs["worker-cpu"]
    assert '"event": "delivered"' not in logs["worker-gpu"], "the GPU worker took a delivery task"

    # The node's /metrics and `cspine-node status --metrics-url` show the same figures.
    text = cli(["status", "--metrics-url", f"http://127.0.0.1:{roles.metrics_port}/metrics"], roles.env["node"])
    assert "cspine_studies_analysed_total" in text
    metrics = requests.get(f"http://127.0.0.1:{roles.metrics_port}/metrics", timeout=10).text
    analysed = [line for line in metrics.splitlines() if line.startswith("cspine_studies_analysed_total ")]
    assert analysed and float(analysed[0].split()[1]) >= 2
