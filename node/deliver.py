"""Delivery of result objects: one sender per destination kind, C-STORE (pynetdicom) and STOW-RS (dicomweb-client).

The outbox is persistent: ``node.spool`` keeps one row per (result object, destination) with its state
(``pending`` -> ``sent``; ``superseded`` when a newer analysis replaced it; ``failed`` when retries
ran out), attempt count and last error. ``node.tasks.deliver`` calls ``send_rows`` and retries with
backoff through Celery until the destination answers again; ``serve`` re-queues pending rows whose task
was lost (restart, crash). ``cspine-node status`` shows the last error per destination.

``SENDERS`` maps every ``DestinationKind`` to its ``Sender``; ``sender_for(kind)`` looks one up. A new kind of
destination is a new ``DestinationKind`` member and a sender registered here.

Each object is recorded as sent as soon as the destination acknowledges it: after its C-STORE success (DIMSE), or
from the response of its STOW-RS request (requests of at most ``STOW_BATCH`` objects). A delivery interrupted
midway (worker killed, destination gone) re-sends only what was not acknowledged.

TLS: a ``dimse`` destination with ``tls`` is reached over DICOM TLS (``node.tls.client_context``: the server
certificate checked against ``tls_ca_bundle`` and the host name, our client certificate for mutual TLS); a failed
handshake is named in the error ("server certificate not accepted: ...") and the rows stay pending. A ``stow``
destination with an ``https://`` URL checks the server against ``tls_ca_bundle`` (else the system's CAs) and
authenticates with ``username``/``password`` (basic) or ``token`` (bearer), on dicomweb-client's session.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from node import audit, tls
from node.logs import log
from node.settings import Destination, DestinationKind
from node.spool import OutboxRow, Spool

LOG = logging.getLogger("node.deliver")

# C-STORE statuses that mean "stored": success and the warning family (coercion, elements discarded).
_STORED = {0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}
STOW_BATCH = 8
"""Objects per STOW-RS request: each response is recorded before the next request (and memory holds one batch)."""

OnSent = Callable[[list[int]], None]
"""``on_sent(ids)``: record outbox rows as sent, called as soon as the destination acknowledged them."""


class DeliveryError(RuntimeError):
    """Some objects were not delivered; ``failed_ids`` are their outbox row ids."""

    def __init__(self, message: str, failed_ids: list[int]):
        super().__init__(message)
        self.failed_ids = failed_ids


@dataclass
class Attempt:
    """What one delivery attempt did: outbox row ids stored, ids not stored, and the last error (``""``: none)."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    error: str = ""


class Sender(Protocol):
    """Sends outbox rows to one kind of destination in one attempt; never raises for a delivery failure
    (it returns the failed ids and the error, which ``send_rows`` records and Celery retries). It calls ``on_sent``
    with the rows the destination acknowledged as soon as it knows, so that they are recorded one by one."""

    def send(self, dest: Destination, rows: list[OutboxRow], *, calling_aet: str,
             on_sent: OnSent | None = None) -> Attempt: ...


def send_rows(dest: Destination, rows: list[OutboxRow], spool: Spool, *, calling_aet: str = "CSPINE") -> None:
    """Send the outbox ``rows`` to ``dest``; each one the destination acknowledges is marked sent at once (so an
    interrupted delivery re-sends only the rest); raises ``DeliveryError`` for the rows not delivered."""
    recorded: set[int] = set()

    def on_sent(ids: list[int]) -> None:
        try:
            spool.mark_sent(ids)
        except (sqlite3.Error, OSError) as e:  # marked again below; at worst sent again later (at least once)
            log(LOG, "sent object not recorded yet", logging.WARNING, destination=dest.name, error=str(e))
            return
        recorded.update(ids)

    attempt = sender_for(dest.kind).send(dest, rows, calling_aet=calling_aet, on_sent=on_sent)
    audit.delivery(spool.root, dest, rows, attempt.sent, attempt.failed, attempt.error)
    rest = [i for i in attempt.sent if i not in recorded]
    if rest:
        spool.mark_sent(rest)
    if attempt.failed:
        raise DeliveryError(f"{dest.name}: {attempt.error}", attempt.failed)


class DimseSender:
    """C-STORE over one association per attempt, one presentation context per SOP class and transfer syntax (the
    files' own plus explicit/implicit VR little endian); a compressed file (the RLE Grad-CAM SEG) goes decompressed
    to a destination that accepts none of its syntax."""

    def send(self, dest: Destination, rows: list[OutboxRow], *, calling_aet: str,
             on_sent: OnSent | None = None) -> Attempt:
        return _send_dimse(dest, rows, calling_aet, on_sent or _ignore)


class StowSender:
    """STOW-RS in requests of ``STOW_BATCH`` rows (dicomweb-client); each response says which objects were stored
    (ReferencedSOPSequence) and which refused (FailedSOPSequence)."""

    def send(self, dest: Destination, rows: list[OutboxRow], *, calling_aet: str,
             on_sent: OnSent | None = None) -> Attempt:
        return _send_stow(dest, rows, on_sent or _ignore)


def _ignore(ids: list[int]) -> None:
    """``on_sent`` of a caller that records the attempt's ``sent`` at the end."""


def _send_dimse(dest: Destination, rows: list[OutboxRow], calling_aet: str, on_sent: OnSent) -> Attempt:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = dest.timeout_s
    ae.dimse_timeout = dest.timeout_s
    ae.network_timeout = dest.timeout_s
    syntaxes: dict[str, set[str]] = {}
    file_ts: dict[int, str] = {}
    for r in rows:
        ts = file_ts[r.id] = str(pydicom.dcmread(r.path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        syntaxes.setdefault(r.sop_class_uid, set()).update({ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian})
    for sop_class, ts in syntaxes.items():
        for syntax in sorted(ts):  # one context per syntax: a SEG in RLE and one uncompressed both find theirs
            ae.add_requested_context(sop_class, syntax)
    tls_args = None
    if dest.tls:
        try:
            ctx = tls.client_context(dest.tls_ca_bundle, dest.tls_certificate, dest.tls_private_key)
        except tls.TlsConfigError as e:
            return Attempt(failed=[r.id for r in rows], error=str(e))
        tls_args = (ctx, dest.tls_server_name or dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "destination unreachable or association aborted"
        if tls_args is not None and not assoc.is_rejected:
            why = tls.handshake_failure(dest.host, dest.port, tls_args[0], server_hostname=tls_args[1],
                                        timeout_s=dest.timeout_s) or why
        return Attempt(failed=[r.id for r in rows],
                       error=f"{why} ({dest.ae_title}@{dest.host}:{dest.port}{' TLS' if dest.tls else ''})")
    sent, failed, error = [], [], ""
    try:
        for r in rows:
            try:
                status = assoc.send_c_store(_as_accepted(assoc, r, file_ts[r.id]))
            except Exception as e:  # noqa: BLE001 - recorded and retried
                failed.append(r.id)
                error = f"{type(e).__name__}: {e}"
                continue
            code = int(status.Status) if status and "Status" in status else None
            if code in _STORED:
                sent.append(r.id)
                on_sent([r.id])
            else:
                failed.append(r.id)
                error = f"C-STORE status {'none (connection lost)' if code is None else f'0x{code:04X}'}"
            if not assoc.is_established:
                failed.extend(x.id for x in rows if x.id not in sent and x.id not in failed)
                error = error or "association lost"
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return Attempt(sent, failed, error)


def _as_accepted(assoc: Association, row: OutboxRow, ts: str) -> Path | pydicom.Dataset:
    """The file of ``row`` (transfer syntax ``ts``) as the association can carry it: the path when ``ts`` was
    accepted for its SOP class, else (a compressed object, e.g. an RLE SEG, at a destination that accepts only
    uncompressed syntaxes) the dataset decompressed."""
    path = Path(row.path)
    accepted = {str(c.transfer_syntax[0]) for c in assoc.accepted_contexts if c.abstract_syntax == row.sop_class_uid}
    if ts in accepted or not accepted & {ExplicitVRLittleEndian, ImplicitVRLittleEndian}:
        return path  # sent as it is (or refused by pynetdicom with its own error)
    ds = pydicom.dcmread(path)
    ds.decompress(generate_instance_uid=False)  # the same object, only re-encoded
    return ds


def _send_stow(dest: Destination, rows: list[OutboxRow], on_sent: OnSent) -> Attempt:
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    session = create_session_from_user_pass(dest.username, dest.password) if dest.username else create_session()
    if dest.token:
        session.headers["Authorization"] = f"Bearer {dest.token}"
    defaults: dict[str, object] = {"timeout": dest.timeout_s}
    if dest.tls_ca_bundle is not None:  # per request: requests lets REQUESTS_CA_BUNDLE override session.verify
        defaults["verify"] = str(dest.tls_ca_bundle)
    if dest.tls_certificate is not None:
        session.cert = (str(dest.tls_certificate), str(dest.tls_private_key)) if dest.tls_private_key \
            else str(dest.tls_certificate)
    session.request = _with_defaults(session.request, defaults)  # type: ignore[method-assign]
    client = DICOMwebClient(dest.url, headers=dest.headers or None, session=session)
    # No retries inside the client (its default session retries a refused connection for ~30 s, blocking the
    # worker): Celery retries the whole delivery with backoff instead.
    client.set_http_retry_params(retry=False)
    attempt = Attempt()
    for start in range(0, len(rows), STOW_BATCH):
        batch = rows[start:start + STOW_BATCH]
        try:
            response = client.store_instances([pydicom.dcmread(r.path) for r in batch])
        except Exception as e:  # noqa: BLE001 - HTTP errors, connection refused: this batch and the rest retried
            attempt.failed += [r.id for r in rows[start:]]
            attempt.error = f"STOW-RS {type(e).__name__}: {str(e)[:300]}"
            break
        stored, refused = stow_outcome(response, batch)
        if stored:
            on_sent(stored)
        attempt.sent += stored
        attempt.failed += refused
        if refused:
            attempt.error = f"STOW-RS refused {len(attempt.failed)} object(s)"
    return attempt


def stow_outcome(response: pydicom.Dataset, rows: list[OutboxRow]) -> tuple[list[int], list[int]]:
    """(stored, not stored) row ids of one STOW-RS request from its response (PS3.18 10.5.3): objects in its
    FailedSOPSequence are not stored; when it has a ReferencedSOPSequence, only the objects it lists are stored
    (one it leaves out is sent again); without one (an empty 200 OK), every object not failed is stored."""
    def uids(seq: str) -> set[str]:
        return {str(i.get("ReferencedSOPInstanceUID", "")) for i in (getattr(response, seq, None) or [])}

    referenced, failed = uids("ReferencedSOPSequence"), uids("FailedSOPSequence")
    stored = [r.id for r in rows if r.sop_instance_uid not in failed
              and (r.sop_instance_uid in referenced or not referenced)]
    return stored, [r.id for r in rows if r.id not in stored]


def _with_defaults(request, defaults: dict[str, object]):  # noqa: ANN001, ANN202 - wraps requests.Session.request
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        for k, v in defaults.items():
            kwargs.setdefault(k, v)
        return request(*args, **kwargs)

    return wrapped


SENDERS: dict[DestinationKind, Sender] = {
    DestinationKind.DIMSE: DimseSender(),
    DestinationKind.STOW: StowSender(),
}
"""The sender of each destination kind."""


def sender_for(kind: DestinationKind | str) -> Sender:
    """The sender of destinations of ``kind``; ``ValueError`` for a kind without one."""
    try:
        return SENDERS[DestinationKind(kind)]
    except (KeyError, ValueError):
        raise ValueError(f"no sender for destination kind {kind!r}; known: {', '.join(SENDERS)}") from None
