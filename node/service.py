"""The running node (``cspine-node serve``): SCP + assembler + (embedded) worker + metrics, with recovery.

Start-up order: (``serve`` starts the embedded worker child first, ``node.embedded``: it loads its models meanwhile
and waits to be released); open the spool and ``recover`` it (partial files removed, associations of the dead
process closed, complete-but-unindexed files indexed, unfinished studies re-queued); configure Celery; start the
embedded worker child when there is no broker URL (unless ``serve`` did) and release it; re-queue pending
deliveries; then listen.
The assembler thread dispatches ready studies and watches the embedded worker (restarting it, and
re-queuing its unfinished studies, if it dies). The worker is this node's child, so an analysis attempt still open
when it died (or when the node starts) died with it: it counts as an attempt, and its study is re-dispatched after
its backoff or becomes a dead letter ("worker died N times during analysis", ``node.spool.attempts``).

The embedded worker is a child process (``python -m node.cli worker --pool solo``, ``node.embedded``) that reads the
same settings from ``<spool>/run/settings.json`` (mode 0600, without secrets: destination headers and passwords
reach it through its environment, ``NodeSettings.secret_env``) and dies with its parent (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the node behaves like a crash of the whole machine and recovery is exercised as such.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time

from node import broker, embedded, tasks
from node.assembly import Assembler
from node.corrections import CorrectionsWorker
from node.dispatch import CeleryDispatcher, Dispatcher
from node.logs import log
from node.metrics import serve_metrics
from node.scp import StorageSCP
from node.settings import NodeSettings
from node.spool import Spool

LOG = logging.getLogger("node.service")


class Node:
    """Everything ``serve`` runs, startable in-process (tests, demo) or from the CLI."""

    def __init__(self, settings: NodeSettings, dispatcher: Dispatcher | None = None,
                 start_worker: bool | None = None, worker: subprocess.Popen | None = None):
        """``worker``: the embedded worker child already started by ``serve`` (``node.embedded.spawn``), waiting
        for this node to recover its spool."""
        self.settings = settings
        self.spool = Spool(settings.spool_dir, retry=tasks.retry_policy(settings))
        self.dispatcher = dispatcher or CeleryDispatcher()
        self.start_worker = settings.embedded_broker and settings.embedded_worker if start_worker is None else start_worker
        self.scp = StorageSCP(settings, self.spool)
        self.assembler = Assembler(self.spool, settings, self.dispatcher)
        self.corrections = CorrectionsWorker(self.scp.corrections)  # SRs that correct results (node.corrections)
        self.worker: subprocess.Popen | None = worker
        if worker is not None:
            self.start_worker = True
        self._stop = threading.Event()
        self._wake = self.scp.released
        """Set by the SCP when an association's end is recorded (and by ``stop``): the assembler ticks at once."""
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.scp.port

    def start(self) -> Node:
        report = self.spool.recover(lost_attempts=self.start_worker)
        if self.settings.embedded_broker:  # a message half written by a node that died: its study is re-queued
            report["broker_parts_removed"] = broker.remove_stale_parts(self.spool.broker_dir / "queue")
        log(LOG, "spool recovered", spool=str(self.spool.root), **report)
        tasks.configure(self.settings)
        if self.start_worker:
            if self.worker is None:
                self._start_worker(wait_for_release=True)
            else:
                log(LOG, "embedded worker started", pid=self.worker.pid, started="before recovery")
            embedded.release(self.spool.root)  # recovered: the worker may consume
        self.assembler.sweep_outbox(0.0)
        self.scp.start()
        if self.settings.metrics_port:
            try:
                serve_metrics(str(self.spool.root), self.settings.metrics_port, self.settings.metrics_host,
                              self.settings)
            except OSError as e:
                log(LOG, "metrics port unavailable", logging.WARNING, port=self.settings.metrics_port, error=str(e))
        self._thread = threading.Thread(target=self._loop, name="assembler", daemon=True)
        self._thread.start()
        self.corrections.start()
        return self

    def _start_worker(self, *, wait_for_release: bool) -> None:
        self.worker = embedded.spawn(self.settings, wait_for_release=wait_for_release)
        log(LOG, "embedded worker started", pid=self.worker.pid)

    def _loop(self) -> None:
        last_sweep = time.time()
        while not self._stop.is_set():
            try:
                self.assembler.tick()
                if time.time() - last_sweep >= self.settings.deliver_sweep_s:
                    last_sweep = time.time()
                    self.assembler.sweep_outbox(self.assembler.stale_after_s())
                if self.worker is not None and self.worker.poll() is not None and not self._stop.is_set():
                    report = self.spool.requeue_unfinished(lost_attempts=True)
                    log(LOG, "embedded worker died; restarting", logging.ERROR, returncode=self.worker.returncode,
                        analyses_lost=report["worker_deaths"])
                    self._start_worker(wait_for_release=False)
                    self.assembler.sweep_outbox(0.0)
            except Exception:  # noqa: BLE001 - keep the node alive; logged
                LOG.exception("assembler loop error")
            try:
                wait = self.assembler.wait_s(self.settings.assembly_interval_s)  # wake when a study is due
            except Exception:  # noqa: BLE001 - an index error: the plain interval
                wait = self.settings.assembly_interval_s
            self._wake.wait(wait)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.scp.stop()
        self.corrections.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(timeout=10)

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM, then stop."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.is_set():
            stop.wait(1.0)
        log(LOG, "stopping")
        self.stop()
