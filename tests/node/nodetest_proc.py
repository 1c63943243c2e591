"""Run ``cspine-node serve`` / ``worker`` as real subprocesses for the node's integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """A ``cspine-node`` subprocess whose output goes to a log file; ``port`` from its ``serving`` line.
    ``module``: the entry point (``node.cli``, or a test wrapper of it)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, *, module: str = "node.cli"):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
        full_env.update(env)
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                                     stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        self.serving: dict = {}
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            if not self._ready.is_set() and line.startswith(b"{"):
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("event") == "serving":
                    self.serving = msg
                    self._ready.set()

    def wait_serving(self, timeout: float = 120.0) -> NodeProcess:
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"cspine-node did not start within {timeout} s; log:\n{self.log()}")
        return self

    @property
    def port(self) -> int:
        return int(self.serving["port"])

    def kill9(self) -> None:
        """SIGKILL the process group (the node and its embedded worker), like a power cut."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def serve(spool: Path, log_path: Path, *, port: int = 0, module: str = "node.cli", **env: str) -> NodeProcess:
    """Start ``cspine-node serve`` on loopback with its spool at ``spool``; extra ``CSPINE_*`` env via ``env``."""
    e = {"CSPINE_SPOOL_DIR": str(spool), "CSPINE_HOST": "127.0.0.1", "CSPINE_PORT": str(port),
         "CSPINE_METRICS_PORT": "0", **env}
    return NodeProcess(["serve"], e, log_path, module=module).wait_serving()


def worker(spool: Path, log_path: Path, **env: str) -> NodeProcess:
    e = {"CSPINE_SPOOL_DIR": str(spool), **env}
    return NodeProcess(["worker", "--pool", "solo"], e, log_path)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
