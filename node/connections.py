"""Connections before their A-ASSOCIATE-RQ: a deadline, a cap per peer address, and the listening server.

Why this exists (pynetdicom 3, read from its source): every accepted TCP connection gets an acceptor thread at once,
and ``AE.maximum_associations`` is checked against *all* live acceptor threads, including connections that have not
sent (or not finished) their A-ASSOCIATE-RQ. A silent socket holds its thread until the ARTIM/ACSE timeout (30 s by
default); a socket that sends a PDU header and stalls blocks its DUL thread in a ``recv`` that has no timeout (the
accepted socket is blocking), so the ARTIM timer is never checked and the thread, and the slot, live for as long as
the peer keeps the connection open. Ten such sockets locked every sender out, before any AE-title or host check.

What the node does instead:

* ``PendingConnections`` tracks every accepted connection until its A-ASSOCIATE-RQ is complete (``settle``). A
  watchdog thread shuts down (``SHUT_RDWR``) every connection still pending after ``deadline_s``: that wakes a DUL
  thread blocked in ``recv`` (it reads EOF) and the peer sees the connection closed. ``AE.acse_timeout`` (the ARTIM
  timer) is set to the same deadline, so pynetdicom's own threads give up at the same time.
* At most ``max_per_host`` connections per peer IP address may be pending; more are closed at once in
  ``GuardedAssociationServer.verify_request``, before a thread is started for them.
* Accepted sockets get a read/write timeout (``network_timeout_s``), so a peer that stalls in the middle of a PDU
  after acceptance is aborted instead of holding its association for ever.
* Association slots are counted by ``node.scp`` among associations whose request is complete (``AssociationSlots``),
  not among raw connections; pynetdicom's own count is switched off (``UNLIMITED``).
* DICOM TLS: pynetdicom wraps an accepted socket in the accepting thread with the handshake on connect, so one
  client that never finishes its handshake would stall every new connection. ``GuardedAssociationServer`` wraps it
  without the handshake and runs the handshake in the connection's own thread, as a pending connection: under the
  deadline and the per-address cap. A failed handshake (no certificate, one from another CA, plain TCP) closes the
  connection and is reported to ``on_handshake_failed``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from node import metrics
from node.logs import log

LOG = logging.getLogger("node.connections")

UNLIMITED = 1_000_000
"""``AE.maximum_associations`` when the node counts slots itself (pynetdicom counts pending connections too)."""

LISTEN_BACKLOG = 128
"""``listen()`` backlog of the SCP socket (socketserver's default of 5 makes a burst of connects wait for SYN
retries, a second or more, while the backlog is full)."""

_LOG_EVERY_S = 10.0


class PendingConnections:
    """Connections accepted but whose A-ASSOCIATE-RQ is not complete yet, per peer IP address.

    ``admit`` (server thread) registers a connection or refuses it when its host already has ``max_per_host``
    pending; ``settle`` (the association's thread, when its request is complete) removes it; the watchdog
    (``start``) shuts down those older than ``deadline_s`` and forgets those already closed."""

    def __init__(self, deadline_s: float, max_per_host: int, *, sweep_s: float | None = None):
        self.deadline_s = float(deadline_s)
        self.max_per_host = int(max_per_host)
        self.sweep_s = sweep_s if sweep_s is not None else min(0.2, self.deadline_s / 10)
        self._pending: dict[socket.socket, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def admit(self, sock: socket.socket, host: str, now: float | None = None) -> bool:
        """Register a new connection from ``host``; False (close it) when the host is at its cap."""
        now = time.monotonic() if now is None else now
        with self._lock:
            n = sum(1 for h, _ in self._pending.values() if h == host)
            if n >= self.max_per_host:
                refused = True
            else:
                self._pending[sock] = (host, now)
                refused = False
        if refused:
            self._closed(host, "pending_cap", pending=n)
        return not refused

    def settle(self, sock: socket.socket | None) -> bool:
        """The connection's A-ASSOCIATE-RQ is complete (or it is being answered): no longer pending. False when it
        was not pending (the watchdog closed it already)."""
        if sock is None:
            return False
        with self._lock:
            return self._pending.pop(sock, None) is not None

    def count(self, host: str | None = None) -> int:
        with self._lock:
            return sum(1 for h, _ in self._pending.values() if host is None or h == host)

    def sweep(self, now: float | None = None) -> int:
        """Shut down the connections pending for ``deadline_s`` or longer; forget closed ones. Returns how many
        were shut down."""
        now = time.monotonic() if now is None else now
        expired: list[tuple[socket.socket, str]] = []
        with self._lock:
            for sock, (host, t0) in list(self._pending.items()):
                if sock.fileno() < 0:  # pynetdicom closed it already
                    del self._pending[sock]
                elif now - t0 >= self.deadline_s:
                    del self._pending[sock]
                    expired.append((sock, host))
        for sock, host in expired:
            with contextlib.suppress(OSError):  # the plain socket's shutdown, also under TLS (keeps its state)
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # wakes a blocked recv(); pynetdicom closes the fd
            self._closed(host, "deadline")
        return len(expired)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="connection-deadline", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        wait = self.sweep_s
        while not self._stop.wait(wait):
            try:
                self.sweep()
                with self._lock:
                    oldest = min((t0 for _, t0 in self._pending.values()), default=None)
                due = self.sweep_s if oldest is None else oldest + self.deadline_s - time.monotonic()
                wait = min(self.sweep_s, max(0.005, due))  # wake at the next deadline, or poll for closed sockets
            except Exception:  # noqa: BLE001 - the watchdog must outlive any surprise; logged
                LOG.exception("connection sweep failed")
                wait = self.sweep_s

    def _closed(self, host: str, reason: str, **fields: Any) -> None:
        """Count and log (at most once per host and reason every 10 s) a connection closed before its request."""
        metrics.CONNECTIONS_CLOSED.labels(reason).inc()
        key = (host, reason)
        now = time.monotonic()
        with self._lock:
            if now - self._last_log.get(key, -_LOG_EVERY_S) < _LOG_EVERY_S:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_log[key] = now
            suppressed = self._suppressed.pop(key, 0)
            if len(self._last_log) > 10_000:
                self._last_log.clear()
        log(LOG, "connection closed before its association request", logging.WARNING, peer=host, reason=reason,
            deadline_s=self.deadline_s, max_pending_per_host=self.max_per_host, also_closed_since_last_log=suppressed,
            **fields)


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the per-host cap checked before a thread starts, a socket timeout on
    accepted connections, a larger listen backlog, and the TLS handshake (``ssl_context``) in the connection's own
    thread. Built through ``AE.make_server(server_class=..., ssl_context=...)``."""

    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args: Any, pending: PendingConnections, socket_timeout_s: float | None,
                 on_handshake_failed: Callable[[str, str], None] | None = None, **kwargs: Any):
        self.pending = pending
        self.socket_timeout_s = socket_timeout_s
        self.on_handshake_failed = on_handshake_failed
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; under TLS wrap the socket *without* its handshake (``process_request_thread`` does it)."""
        client, address = self.socket.accept()
        if self.ssl_context:
            try:
                client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                client.close()
                raise
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Under TLS the handshake first (a pending connection: the watchdog's deadline closes one that stalls)."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError; ValueError: closed meanwhile
                if self.pending.settle(request) and self.on_handshake_failed is not None:
                    reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
                    if getattr(e, "verify_message", None):  # ssl.SSLCertVerificationError: which check failed
                        reason = f"{reason} ({e.verify_message})"
                    self.on_handshake_failed(str(client_address[0]), f"TLS handshake failed: {reason}")
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection unless its host is at its pending cap (socketserver then closes it at once)."""
        if not self.pending.admit(request, str(client_address[0])):
            return False
        if self.socket_timeout_s:
            request.settimeout(self.socket_timeout_s)
        return True


class AssociationSlots:
    """Associations whose A-ASSOCIATE-RQ is complete and not refused, counted against ``max_associations``.

    ``take`` reserves a slot when the request is complete (refused when all are taken); ``release`` frees it on
    rejection or close. Slots of association threads that ended without a close event are reclaimed."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self._held: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def take(self, assoc: threading.Thread) -> bool:
        with self._lock:
            for key in [k for k, t in self._held.items() if not t.is_alive()]:
                del self._held[key]
            if id(assoc) in self._held:
                return True
            if len(self._held) >= self.limit:
                return False
            self._held[id(assoc)] = assoc
            return True

    def release(self, assoc: threading.Thread) -> None:
        with self._lock:
            self._held.pop(id(assoc), None)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for t in self._held.values() if t.is_alive())
