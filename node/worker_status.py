"""What a running worker reports about itself, through a small JSON file under the shared spool.

Each ``cspine-node worker`` (solo or threads pool) writes ``<spool>/run/workers/<hostname>.json`` every
``worker_status_interval_s`` seconds from the moment it consumes its queues: its Celery hostname, queues, pool,
torch device, heartbeat time, whether it is ready (``ready``: its models loaded and each warmed by one forward;
``warmup_s``: seconds per model), the model versions it has used (pipeline, model, version), and how many
radiographs each batched forward held (cumulative counts). A worker that knows its node name writes the file
once already while it loads (``ready`` false), so ``status`` and the health check can say it is warming up. The node's ``/metrics`` (``node.metrics``), ``cspine-node
status`` and ``cspine-node health --role worker`` (embedded broker) read these files, so one endpoint reports the
workers too, wherever they run, without each worker serving its own port.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
"""Upper bounds of the ``cspine_batch_size`` histogram (images per forward)."""


def status_dir(spool_root: Path | str) -> Path:
    return Path(spool_root) / "run" / "workers"


def status_path(spool_root: Path | str, hostname: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in hostname)
    return status_dir(spool_root) / f"{safe}.json"


class WorkerStatus:
    """The status of this worker process; thread-safe; ``start`` writes it periodically."""

    def __init__(self, spool_root: Path | str, *, device: str = "", queues: list[str] | None = None,
                 pool: str = "", interval_s: float = 10.0) -> None:
        self.spool_root = Path(spool_root)
        self.hostname = ""
        self.device = device
        self.queues = list(queues or [])
        self.pool = pool
        self.interval_s = max(0.5, float(interval_s))
        self.started = time.time()
        self._lock = threading.Lock()
        self._batches: Counter[int] = Counter()
        self._models: dict[tuple[str, str], str] = {}
        self._tasks = 0
        self.ready = False
        self.warmup_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped = False

    # -- updates from the task threads ------------------------------------------------------------------

    def record_batch(self, n_images: int) -> None:
        """One batched forward of ``n_images`` radiographs."""
        with self._lock:
            self._batches[int(n_images)] += 1

    def record_models(self, models: list[tuple[str, str, str]], *, analysis: bool = True) -> None:
        """One analysis done (``analysis``; False: the models loaded at start), with the ``(pipeline, model,
        version)`` of the algorithms it used (maybe none)."""
        with self._lock:
            for pipeline, model, version in models:
                self._models[(pipeline, model)] = version
            self._tasks += int(analysis)

    def record_ready(self, warmup_s: dict[str, float]) -> None:
        """Models loaded and warmed (seconds per model): the worker may take work."""
        with self._lock:
            self.warmup_s = dict(warmup_s)
            self.ready = True

    # -- the file ---------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "hostname": self.hostname, "pid": os.getpid(), "host": socket.gethostname(), "pool": self.pool,
                "queues": self.queues, "device": self.device, "started": self.started, "heartbeat": time.time(),
                "analyses": self._tasks, "stopped": self.stopped, "ready": self.ready, "warmup_s": self.warmup_s,
                "models": [{"pipeline": p, "model": m, "version": v} for (p, m), v in sorted(self._models.items())],
                "batch_sizes": {str(k): v for k, v in sorted(self._batches.items())},
            }

    def write(self) -> Path:
        path = status_path(self.spool_root, self.hostname or socket.gethostname())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)
        return path

    def start(self, hostname: str) -> None:
        """Write now and then every ``interval_s`` until ``stop``."""
        self.hostname = hostname
        self.write()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="worker-status", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.write()
            except OSError:  # a full or unmounted spool: the heartbeat goes stale and health says so
                pass

    def stop(self) -> None:
        """Stop writing; the file stays, marked stopped (its counts stay in the node's metrics)."""
        self._stop.set()
        self.stopped = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.hostname:
            try:
                self.write()
            except OSError:
                pass


def read_statuses(spool_root: Path | str) -> list[dict[str, Any]]:
    """Every worker status file under the spool (unreadable or half-written ones are skipped)."""
    out = []
    d = status_dir(spool_root)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def alive(status: dict[str, Any], interval_s: float, now: float | None = None) -> bool:
    """Not stopped, and a heartbeat younger than three intervals (and at least 30 s)."""
    now = time.time() if now is None else now
    return not status.get("stopped") and now - float(status.get("heartbeat", 0)) <= max(3 * interval_s, 30.0)
