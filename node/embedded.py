"""The embedded worker child of ``cspine-node serve``: started first, released once the spool is recovered.

A worker needs seconds before it can take a study (import torch, load and warm its models and the encoder), the
receiving side about one (imports, spool recovery, the port). ``serve`` therefore starts the worker child before
it imports anything heavy (``spawn``), and the worker loads its models while the node recovers its spool and opens
its port. The worker must not take a task before the recovery is done (recovery settles the attempts of a worker
that died, re-queues unfinished studies): it waits for the release file ``<spool>/run/worker-release`` that
``release`` writes after ``Spool.recover``, then consumes. A restarted worker (the first one died) finds the file
and starts at once.

The child reads the same settings from ``<spool>/run/settings.json`` (mode 0600, without secrets: destination
headers and passwords reach it through its environment, ``NodeSettings.secret_env``) and dies with its parent
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of the node behaves like a crash of the whole machine.

This module imports only the standard library and ``node.settings``: ``serve`` imports it before the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.settings import CONFIG_ENV, NodeSettings

RELEASE_ENV = "CSPINE_WORKER_RELEASE_FILE"
"""Set by ``spawn`` in the child's environment: the file to wait for before consuming."""
RELEASE_TIMEOUT_S = 600.0


def release_file(spool_dir: Path | str) -> Path:
    return Path(spool_dir) / "run" / "worker-release"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_command(pool: str = "solo", concurrency: int = 1) -> list[str]:
    return [sys.executable, "-m", "node.cli", "worker", "--pool", pool, "--concurrency", str(concurrency)]


def spawn(settings: NodeSettings, *, wait_for_release: bool = True) -> subprocess.Popen:
    """Start the worker child with the node's settings. ``wait_for_release``: the child waits for ``release``
    before it consumes (a first start, before the spool is recovered); the release file of an earlier run is
    removed first."""
    run = Path(settings.spool_dir) / "run"
    run.mkdir(parents=True, exist_ok=True)
    marker = release_file(settings.spool_dir)
    if wait_for_release:
        marker.unlink(missing_ok=True)
    cfg = settings.to_json_file(run / "settings.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    env[CONFIG_ENV] = str(cfg)
    env[RELEASE_ENV] = str(marker)
    env.update(settings.secret_env())  # never in the file
    env.setdefault("PYTHONUNBUFFERED", "1")
    repo_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.Popen(worker_command(), env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509


def release(spool_dir: Path | str) -> None:
    """The spool is recovered: the worker child may consume."""
    marker = release_file(spool_dir)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()} {time.time():.3f}\n")
    os.replace(tmp, marker)


def wait_for_release(timeout_s: float = RELEASE_TIMEOUT_S) -> float:
    """In the worker child: wait until ``serve`` released it (no-op for a worker not started by ``spawn``).
    Returns the seconds waited; raises TimeoutError after ``timeout_s``."""
    name = os.environ.get(RELEASE_ENV)
    if not name:
        return 0.0
    t0 = time.monotonic()
    while not Path(name).exists():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"not released by the node within {timeout_s:.0f} s ({name})")
        time.sleep(0.02)
    return time.monotonic() - t0
