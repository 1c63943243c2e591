"""An append-only audit trail: who connected, what was stored, what was analysed, where results went.

IHE ATNA-style events (DICOM PS3.15 A.5: Event ID, Event Action, Event Outcome; the codes of CID 400/401), one JSON
object per line in ``<spool>/audit/audit-YYYYMMDD.jsonl`` (UTC day). Every process of the node (the SCP, each worker)
appends to the same file: the file is opened ``O_APPEND`` (mode 0600, folder 0700), each event is one ``write`` of
one line (the kernel appends it whole) followed by ``fsync``, so an event that was recorded survives a crash, like
the instance it describes. ``record`` never raises: an audit failure is logged, it does not refuse a C-STORE (the
spool's own failures do that).

No patient data: an event carries only UIDs (study, series, SOP instance), AE titles, IP addresses, the TLS
certificate subject of the peer, destination names, counts and reasons; ``record`` refuses any other field name.

Events (``AuditEvent``) and their ATNA codes:

=====================  ==========================================  ==========================  ======  =========
event                  Event ID (DCM)                              Event Type (DCM)            action  outcome
=====================  ==========================================  ==========================  ======  =========
association_accepted   110114 User Authentication                  110122 Login                E       0
association_refused    110114 User Authentication                  110122 Login                E       4
access_refused         110113 Security Alert                       110126 Node Authentication  E       4
instance_stored        110104 DICOM Instances Transferred          (none)                      C / U   0
study_analysed         110103 DICOM Instances Accessed             (none)                      R       0
results_delivered      110104 DICOM Instances Transferred          (none)                      R       0
delivery_failed        110104 DICOM Instances Transferred          (none)                      R       4 / 8
=====================  ==========================================  ==========================  ======  =========
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from node import tls
from node.logs import log

if TYPE_CHECKING:
    from node.settings import Destination

LOG = logging.getLogger("node.audit")

AUDIT_DIR = "audit"
"""The trail's folder under the spool."""


class AuditEvent(StrEnum):
    """What happened (the ``event`` of a line)."""

    ASSOCIATION_ACCEPTED = "association_accepted"
    ASSOCIATION_REFUSED = "association_refused"
    """Refused for a reason that is not about identity (local limit of associations)."""
    ACCESS_REFUSED = "access_refused"
    """Refused for identity: TLS handshake failed (no or foreign certificate, plain TCP on a TLS port), calling AE
    title or peer address not allowed."""
    INSTANCE_STORED = "instance_stored"
    STUDY_ANALYSED = "study_analysed"
    RESULTS_DELIVERED = "results_delivered"
    DELIVERY_FAILED = "delivery_failed"


class Outcome(IntEnum):
    """ATNA Event Outcome Indicator."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8


_CODES: dict[AuditEvent, tuple[tuple[str, str], tuple[str, str] | None, str]] = {
    AuditEvent.ASSOCIATION_ACCEPTED: (("110114", "User Authentication"), ("110122", "Login"), "E"),
    AuditEvent.ASSOCIATION_REFUSED: (("110114", "User Authentication"), ("110122", "Login"), "E"),
    AuditEvent.ACCESS_REFUSED: (("110113", "Security Alert"), ("110126", "Node Authentication"), "E"),
    AuditEvent.INSTANCE_STORED: (("110104", "DICOM Instances Transferred"), None, "C"),
    AuditEvent.STUDY_ANALYSED: (("110103", "DICOM Instances Accessed"), None, "R"),
    AuditEvent.RESULTS_DELIVERED: (("110104", "DICOM Instances Transferred"), None, "R"),
    AuditEvent.DELIVERY_FAILED: (("110104", "DICOM Instances Transferred"), None, "R"),
}

FIELDS = frozenset({
    "peer_aet", "peer_ip", "tls_subject", "tls_version", "called_aet", "listener", "study_uid", "series_uid",
    "sop_instance_uid", "sop_class_uid", "sop_instance_uids", "stored", "generation", "objects", "pipelines",
    "skipped", "destination", "destination_kind", "count", "failed", "reason", "action",
})
"""The only fields an event may carry (no patient attribute can be added by mistake)."""


def audit_path(directory: Path, when: float | None = None) -> Path:
    """The file of the UTC day of ``when`` (default now)."""
    return Path(directory) / time.strftime("audit-%Y%m%d.jsonl", time.gmtime(when))


class AuditTrail:
    """Appends events to ``<directory>/audit-YYYYMMDD.jsonl``; thread-safe, shareable between processes."""

    def __init__(self, directory: Path, *, node_aet: str = ""):
        self.directory = Path(directory)
        self.node_aet = node_aet
        self._lock = threading.Lock()
        self._host = socket.gethostname()

    def record(self, event: AuditEvent, outcome: Outcome = Outcome.SUCCESS, **fields: Any) -> bool:
        """Append one event (fsync'd). ``fields``: only names in ``FIELDS``, empty values dropped. Returns False
        (and logs) when it could not be written."""
        unknown = set(fields) - FIELDS
        if unknown:
            raise ValueError(f"audit fields not allowed: {sorted(unknown)}")
        (event_id, event_name), event_type, action = _CODES[AuditEvent(event)]
        now = time.time()
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z",
            "event": str(event), "event_id": event_id, "event_name": event_name,
            "event_type": list(event_type) if event_type else None,
            "action": fields.pop("action", action), "outcome": int(outcome),
            "source": {"ae_title": self.node_aet, "host": self._host, "pid": os.getpid()},
        }
        line.update({k: v for k, v in fields.items() if v not in (None, "", [], {})})
        data = (json.dumps(line, default=str, separators=(",", ":")) + "\n").encode()
        try:
            with self._lock:
                self._append(data, audit_path(self.directory, now))
        except OSError as e:
            log(LOG, "audit event not recorded", logging.ERROR, audit_event=str(event),
                error=f"{type(e).__name__}: {e}")
            return False
        return True

    def _append(self, data: bytes, path: Path) -> None:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:  # one write for a line on a local file system; a short write is finished, never rewritten
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


_TRAILS: dict[Path, AuditTrail] = {}
_TRAILS_LOCK = threading.Lock()


def trail(spool_root: Path, node_aet: str = "") -> AuditTrail:
    """The audit trail of the spool at ``spool_root`` (one object per spool and process)."""
    key = Path(spool_root).resolve()
    with _TRAILS_LOCK:
        t = _TRAILS.get(key)
        if t is None:
            t = _TRAILS[key] = AuditTrail(key / AUDIT_DIR, node_aet=node_aet)
        elif node_aet and not t.node_aet:
            t.node_aet = node_aet
        return t


def peer_fields(assoc: Any) -> dict[str, str]:
    """Who is on the other side of a pynetdicom association: calling AE title, IP address, and under TLS the
    subject of the certificate it presented and the TLS version."""
    rq = assoc.requestor
    sock = assoc.dul.socket.socket if getattr(assoc.dul, "socket", None) is not None else None
    aet = str(rq.ae_title or getattr(rq.primitive, "calling_ae_title", "") or "").strip()
    return {"peer_aet": aet, "peer_ip": str(rq.address), "tls_subject": tls.peer_subject(sock),
            "tls_version": tls.tls_version(sock)}


def analysis(spool_root: Path, node_aet: str, study_uid: str, report: dict[str, Any] | None = None,
             failure: str = "") -> bool:
    """``study_analysed`` for a ``node.tasks.run_analysis`` report (success), or with ``failure`` (a dead letter)."""
    t = trail(spool_root, node_aet)
    if failure:
        return t.record(AuditEvent.STUDY_ANALYSED, Outcome.SERIOUS_FAILURE, study_uid=study_uid, reason=failure)
    report = report or {}
    return t.record(AuditEvent.STUDY_ANALYSED, study_uid=study_uid, generation=report.get("generation"),
                    objects=report.get("objects", 0), pipelines=sorted({m[0] for m in report.get("models", [])}),
                    skipped=len(report.get("skipped", [])))


def delivery(spool_root: Path, dest: Destination, rows: list[Any], sent: list[int], failed: list[int],
             error: str = "") -> None:
    """``results_delivered`` for the outbox rows stored by a destination, ``delivery_failed`` for the others (never
    raises: a failure here is logged and does not fail the delivery)."""
    try:
        t = trail(spool_root)
        by_id = {r.id: r for r in rows}
        peer = dest.host or (urlsplit(dest.url).hostname or "")
        for ids, event, outcome in ((sent, AuditEvent.RESULTS_DELIVERED, Outcome.SUCCESS),
                                    (failed, AuditEvent.DELIVERY_FAILED, Outcome.MINOR_FAILURE)):
            chosen = [by_id[i] for i in ids if i in by_id]
            if not chosen:
                continue
            studies = sorted({r.study_uid for r in chosen})
            t.record(event, outcome, destination=dest.name, destination_kind=str(dest.kind), peer_aet=dest.ae_title,
                     peer_ip=peer, study_uid=studies[0] if len(studies) == 1 else ",".join(studies),
                     count=len(chosen), sop_instance_uids=[r.sop_instance_uid for r in chosen],
                     reason=error if event is AuditEvent.DELIVERY_FAILED else "")
    except Exception:  # noqa: BLE001 - the audit must not fail a delivery; logged with its traceback
        LOG.exception("delivery audit event not recorded", extra={"destination": dest.name})


def read_events(directory: Path) -> list[dict[str, Any]]:
    """Every event of every day under ``directory`` (oldest file first), for tests and tools."""
    out: list[dict[str, Any]] = []
    for p in sorted(Path(directory).glob("audit-*.jsonl")):
        out.extend(json.loads(x) for x in p.read_text().splitlines() if x.strip())
    return out
