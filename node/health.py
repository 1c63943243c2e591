"""``cspine-node health --role node|worker``: the one health check of containers and Kubernetes probes.

Each check returns ``(ok, reason)``; the command prints ``ok: ...`` or ``unhealthy: ...`` (one line) and exits
0 or 1.

* node: the DICOM SCP answers a C-ECHO on 127.0.0.1 (calling AE: the first allowed one, so an allow-list does not
  refuse it; with ``tls_only`` over TLS, presenting the node's own certificate), the spool is writable (a file written, fsync'd and removed), and the broker is reachable (Redis: a
  connection; embedded: its queue folder is writable).
* worker: ready, i.e. its models loaded and warmed (the ``ready`` flag of its status file, ``node.worker_status``;
  a worker still loading is unhealthy, "warming up"), and alive: with Redis, the worker answers a Celery ``ping``
  addressed to its own node name (``--hostname``, default ``celery@<host name>``, Celery's default); with the
  embedded broker (no remote control) its status file has a fresh heartbeat.
"""

from __future__ import annotations

import os
import socket
import time
from enum import StrEnum
from pathlib import Path

from node.settings import NodeSettings, embedded_broker_dir


class Role(StrEnum):
    """What a health check checks (the ``--role`` of ``cspine-node health``)."""

    NODE = "node"
    """The receiving node: SCP, spool, broker."""
    WORKER = "worker"
    """A Celery worker."""


def _spool_writable(settings: NodeSettings) -> tuple[bool, str]:
    d = Path(settings.spool_dir) / "run"
    try:
        d.mkdir(parents=True, exist_ok=True)
        p = d / f".health-{socket.gethostname()}-{os.getpid()}"
        with open(p, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        p.unlink()
    except OSError as e:
        return False, f"spool {settings.spool_dir} not writable: {e}"
    return True, "spool writable"


def broker_reachable(settings: NodeSettings, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Redis: open a connection (one try); embedded: the broker's queue folder is writable."""
    if settings.embedded_broker:
        q = embedded_broker_dir(settings.spool_dir) / "queue"
        if q.is_dir() and os.access(q, os.W_OK):
            return True, "embedded broker folder writable"
        return False, f"embedded broker folder {q} missing or not writable"
    from kombu import Connection

    try:
        with Connection(settings.broker_url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - any failure is the reason
        return False, f"broker unreachable: {type(e).__name__}: {e}"
    return True, "broker reachable"


def check_node(settings: NodeSettings, timeout_s: float = 10.0) -> tuple[bool, str]:
    from node.scu import echo

    calling = (settings.allowed_calling_aets or ["HEALTHCHECK"])[0]
    try:
        tls_args = None
        if settings.tls_only:  # no plain listener: C-ECHO over TLS with the node's own certificate
            from node.tls import loopback_client_context

            assert settings.tls_certificate is not None and settings.tls_private_key is not None
            tls_args = (loopback_client_context(settings.tls_certificate, settings.tls_private_key), "127.0.0.1")
        status = echo("127.0.0.1", settings.port, called_aet=settings.ae_title, calling_aet=calling,
                      timeout_s=timeout_s, tls_args=tls_args)
    except Exception as e:  # noqa: BLE001 - refused, no listener, timeout
        return False, f"C-ECHO to {settings.ae_title}@127.0.0.1:{settings.port}: {type(e).__name__}: {e}"
    if status != 0:
        return False, f"C-ECHO to {settings.ae_title}@127.0.0.1:{settings.port} returned status 0x{status:04X}"
    ok, why = _spool_writable(settings)
    if not ok:
        return False, why
    ok, why = broker_reachable(settings, timeout_s)
    if not ok:
        return False, why
    return True, f"C-ECHO {settings.ae_title}@127.0.0.1:{settings.port} ok, spool writable, {why}"


def worker_nodename(hostname: str | None = None) -> str:
    """The Celery node name a worker started with ``--hostname hostname`` has (``%h`` expanded)."""
    from celery.utils.nodenames import default_nodename, host_format

    return host_format(default_nodename(hostname))


def check_worker(settings: NodeSettings, hostname: str | None = None, timeout_s: float = 10.0) -> tuple[bool, str]:
    from node.worker_status import alive, read_statuses

    name = worker_nodename(hostname)
    statuses = [s for s in read_statuses(settings.spool_dir) if s.get("hostname") == name]
    if statuses and not statuses[0].get("ready", True):  # files of older workers have no flag
        started = float(statuses[0].get("started", time.time()))
        return False, f"worker {name} warming up (loading models, {time.time() - started:.0f} s)"
    if settings.embedded_broker:
        if not statuses:
            return False, f"no status file of worker {name} under {settings.spool_dir}"
        st = statuses[0]
        age = time.time() - float(st.get("heartbeat", 0))
        if not alive(st, settings.worker_status_interval_s):
            return False, f"worker {name} {'stopped' if st.get('stopped') else 'heartbeat stale'} ({age:.0f} s old)"
        return True, f"worker {name} ready, heartbeat {age:.0f} s old"
    from node import tasks

    ok, why = broker_reachable(settings, timeout_s)
    if not ok:
        return False, why
    app = tasks.configure(settings)
    try:
        replies = app.control.ping(destination=[name], timeout=timeout_s, limit=1)
    except Exception as e:  # noqa: BLE001 - broker errors
        return False, f"Celery ping failed: {type(e).__name__}: {e}"
    if any(name in r for r in replies):
        return True, f"worker {name} ready, answered the Celery ping"
    return False, f"worker {name} did not answer the Celery ping within {timeout_s:g} s"


def check(role: Role | str, settings: NodeSettings, *, hostname: str | None = None,
          timeout_s: float = 10.0) -> tuple[bool, str]:
    """The health check of ``role`` (``hostname``: the worker's Celery node name, workers only)."""
    if Role(role) is Role.NODE:
        return check_node(settings, timeout_s=timeout_s)
    return check_worker(settings, hostname=hostname, timeout_s=timeout_s)
