"""The DICOM Storage SCP (C-STORE + C-ECHO) of the node, on pynetdicom.

Handlers are thin: *validate, persist, acknowledge*. The C-STORE handler takes the encoded dataset as
sent (no re-encoding), checks it (``validate_instance``), stores it durably in the spool, and only then
returns Success. Everything else (assembly, analysis, delivery) happens elsewhere.

Statuses returned (PS3.4 B.2.3):

* ``0x0000`` Success: the instance is on disk (fsync'd) and indexed; duplicates are Success too.
* ``0xA900`` Data Set does not match SOP Class: a required UID is missing or differs from the request.
* ``0xC210`` Cannot understand: the payload is not a parsable DICOM data set, or its pixel data is
  truncated / not properly encapsulated.
* ``0xA700`` Out of resources: the spool could not write the file or its index row (disk full, quota, I/O error,
  SQLite "database or disk is full" / "disk I/O error" / locked), or memory ran out. Senders retry these.
* ``0xC211`` Unable to process: an unexpected error in the node (logged with its traceback).

Bounded memory: a C-STORE data set is written to a file as it arrives (``STORE_RECV_CHUNKED_DATASET``; its writeback
starts as it grows, ``node.writeback``), checked without loading its long values, and moved into the spool; a PDU
longer than ``max_pdu`` or a data set longer than ``max_instance_bytes`` aborts the association (``node.pdu_limits``)
and the partial file is removed.

Association control: calling AE titles outside the allow-list are rejected by pynetdicom itself
(``AE.require_calling_aet``); peer addresses outside the allow-list (pynetdicom has no setting for them) are
rejected in the ``EVT_REQUESTED`` handler, before negotiation. Both answer A-ASSOCIATE-RJ (rejected permanent,
service user, "calling AE title not recognised"). Connections that have not completed their A-ASSOCIATE-RQ are
bounded by ``node.connections`` (a deadline, a cap per peer address); association slots (``max_associations``)
are counted in ``EVT_REQUESTED`` among complete requests only, and a request beyond them gets A-ASSOCIATE-RJ
(rejected transient, service provider, local limit exceeded). Every rejection is logged and counted in
``EVT_REJECTED`` / ``_rejected``, every acceptance in ``EVT_ACCEPTED``.

DICOM TLS (``node.tls``): a listener on ``tls_port`` beside the plain ``port``, or on ``port`` alone
(``tls_only``), with the node's certificate and, for mutual TLS, the CA bundle that signs the peers' certificates.
The handshake runs in the connection's own thread under the A-ASSOCIATE-RQ deadline (``node.connections``); a
failed handshake closes the connection before any DICOM byte is read and is logged as a rejection.

Accepted: CR, DX (for presentation/processing), MR, Enhanced MR and the Secondary Capture family, in
the uncompressed, deflated, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K and RLE
transfer syntaxes (decoders: pylibjpeg, pylibjpeg-libjpeg/openjpeg/rle, pyjpegls from PyPI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedMRImageStorage,
    EnhancedSRStorage,
    MRImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    SOPClass,
    Verification,
)

from node import audit, metrics, tls, writeback
from node.connections import UNLIMITED, AssociationSlots, GuardedAssociationServer, PendingConnections
from node.corrections import CorrectionsStore
from node.logs import log
from node.pdu_limits import WireLimits, limit_socket
from node.settings import NodeSettings
from node.spool import AssociationEnd, InstanceHeader, Spool, StoreOutcome, header_from_dataset
from pipelines.corrections import SR_SOP_CLASSES, UnreadableSR

LOG = logging.getLogger("node.scp")

STORAGE_SOP_CLASSES: tuple[SOPClass, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    MRImageStorage,
    EnhancedMRImageStorage,
    SecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    EnhancedSRStorage,
    ComprehensiveSRStorage,
    Comprehensive3DSRStorage,
    BasicTextSRStorage,
)
"""The storage SOP classes the SCP accepts (``.name`` gives each one's name). SRs are radiologists' corrections of
the node's results (``node.corrections``), never studies to analyse."""

SR_CLASS_UIDS = frozenset(SR_SOP_CLASSES)  # pipelines.corrections: the same four

TRANSFER_SYNTAXES: list[UID] = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K, RLELossless,
]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210
UNABLE_TO_PROCESS = 0xC211

SPOOL_FAILURES: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, MemoryError)
"""What storing raises when resources run out: the file (``OSError``: ENOSPC, EDQUOT, EIO), the index
(``sqlite3``: "database or disk is full", "disk I/O error", "database is locked") or memory. All answer 0xA700."""

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4): result, source, diagnostic.
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
SOURCE_SERVICE_PROVIDER_PRESENTATION = 0x03
CALLING_AET_NOT_RECOGNISED = 0x03
LOCAL_LIMIT_EXCEEDED = 0x02


class InvalidInstance(ValueError):
    """A C-STORE payload the node refuses; ``status`` is the DIMSE status to return."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _expected_native_bytes(ds: pydicom.Dataset) -> int:
    rows, cols = int(ds.Rows), int(ds.Columns)
    spp = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.BitsAllocated)
    total_bits = rows * cols * spp * frames * bits
    return (total_bits + 7) // 8


_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD)
DEFER_BYTES = 256 << 10
"""Values longer than this are not read when a received file is checked (its Pixel Data is walked, not loaded)."""


def _fragments(buffer: BinaryIO) -> tuple[int, bool]:
    """Number of fragments of encapsulated Pixel Data read from ``buffer`` at its first item, and whether any is
    non-empty; after the Basic Offset Table (an item that is always there, empty or not, and is not a fragment).
    Walks the item headers only (seeks over the data), up to the sequence delimiter or the end."""
    n, nonempty, first = 0, False, True
    while True:
        head = buffer.read(8)
        if len(head) < 8 or head[:4] == _SEQUENCE_DELIMITER:
            if first:
                raise ValueError("encapsulated Pixel Data without a Basic Offset Table item")
            return n, nonempty
        if head[:4] != _ITEM:
            raise ValueError(f"encapsulated Pixel Data: item tag {head[:4].hex()} where an item was expected")
        length = int.from_bytes(head[4:], "little")
        if length == 0xFFFFFFFF:
            raise ValueError("encapsulated Pixel Data: an item of undefined length")
        if length:
            buffer.seek(length - 1, 1)
            if len(buffer.read(1)) != 1:
                raise ValueError("encapsulated Pixel Data: an item runs past the end of the data")
        if not first:
            n += 1
            nonempty = nonempty or length > 0
        first = False


def _pixel_problem(ds: pydicom.Dataset, source: bytes | Path) -> str:
    """Why the Pixel Data of ``ds`` (read from ``source``) is not usable, or ``""``. A value not read (deferred, a
    received file) is checked from its offset and length in the file, without loading it."""
    elem = ds.get_item("PixelData", keep_deferred=True)
    if elem is None:
        return "image without (complete) Pixel Data"
    value = elem.value
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        if value is not None:
            n, nonempty = _fragments(BytesIO(value))
        else:
            with open(source, "rb") as f:  # type: ignore[arg-type]  # deferred: only from a file
                f.seek(int(elem.value_tell))
                n, nonempty = _fragments(f)
        if not nonempty:
            return "encapsulated Pixel Data without fragments"
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return f"encapsulated Pixel Data: {n} fragment(s) for {frames} frames" if n < frames else ""
    if value is not None:
        length = len(value)
    else:  # deferred: as long as declared, if the file holds that much
        available = Path(source).stat().st_size - int(elem.value_tell)  # type: ignore[arg-type]
        length = min(int(elem.length), max(available, 0))
    expected = _expected_native_bytes(ds)
    return f"Pixel Data truncated ({length} < {expected} bytes)" if length < expected else ""


def validate_instance(data: bytes | Path, sop_class_uid: str, sop_instance_uid: str) -> InstanceHeader:
    """Parse a received Part 10 byte string or file and check it; returns the index header or raises
    ``InvalidInstance`` with the status to send back. A file is read without its long values (``DEFER_BYTES``):
    memory stays small whatever the instance's size."""
    try:
        if isinstance(data, Path):
            ds = pydicom.dcmread(data, defer_size=DEFER_BYTES)
        else:
            ds = pydicom.dcmread(BytesIO(data))
        header = header_from_dataset(ds)
    except (InvalidInstance, MemoryError):
        raise
    except ValueError as e:
        raise InvalidInstance(DOES_NOT_MATCH_SOP_CLASS, f"data set: {e}") from e
    except Exception as e:  # noqa: BLE001 - any parse error of foreign bytes is "cannot understand"
        raise InvalidInstance(CANNOT_UNDERSTAND, f"not a parsable DICOM data set ({type(e).__name__})") from e
    if header.sop_class_uid != str(sop_class_uid):
        raise InvalidInstance(DOES_NOT_MATCH_SOP_CLASS, "SOPClassUID differs from the C-STORE request")
    if header.sop_instance_uid != str(sop_instance_uid):
        raise InvalidInstance(DOES_NOT_MATCH_SOP_CLASS, "SOPInstanceUID differs from the C-STORE request")
    if header.sop_class_uid in SR_CLASS_UIDS:
        return header  # a structured report has no pixels (its content is read by ``node.corrections``)
    try:
        problem = _pixel_problem(ds, data)
        if problem:
            raise InvalidInstance(CANNOT_UNDERSTAND, problem)
    except (InvalidInstance, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001
        raise InvalidInstance(CANNOT_UNDERSTAND, f"pixel data: {type(e).__name__}: {e}") from e
    return header


class StorageSCP:
    """The node's DICOM listener. ``start()`` returns at once; ``port`` is the bound port."""

    def __init__(self, settings: NodeSettings, spool: Spool):
        self.settings = settings
        self.spool = spool
        self.corrections = CorrectionsStore(settings, spool)
        self.audit = audit.trail(spool.root, settings.ae_title)
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = settings.max_pdu
        self.ae.maximum_associations = UNLIMITED  # pynetdicom counts raw connections; ``slots`` counts requests
        self.ae.network_timeout = settings.network_timeout_s
        self.ae.dimse_timeout = settings.dimse_timeout_s
        self.ae.acse_timeout = settings.association_request_timeout_s  # the ARTIM timer too
        self.pending = PendingConnections(settings.association_request_timeout_s, settings.max_pending_per_host)
        self.slots = AssociationSlots(settings.max_associations)
        self.released = threading.Event()  # set once an association's end is recorded (``Node`` ticks at once)
        self.ae.require_called_aet = False
        self.ae.require_calling_aet = list(settings.allowed_calling_aets)
        self.ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        # Bounded memory (module docstring): data sets to files as they arrive, PDUs and messages within ``limits``
        writeback.receive_to_files()
        self.limits = WireLimits(max_pdu=settings.max_pdu, max_instance_bytes=settings.max_instance_bytes)
        self._servers: list[Any] = []
        self._assoc_ids: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port of ``settings.port`` (plain TCP, or TLS with ``tls_only``)."""
        if not self._servers:
            raise RuntimeError("SCP not started")
        return int(self._servers[0].server_address[1])

    @property
    def tls_port(self) -> int | None:
        """The bound port of the TLS listener (None: no TLS)."""
        found = [s for s in self._servers if s.ssl_context is not None]
        return int(found[0].server_address[1]) if found else None

    def _listeners(self) -> list[tuple[int, Any]]:
        """``(port, ssl context or None)`` of each listener: plain ``port`` unless ``tls_only``; TLS on ``tls_port``
        (or on ``port`` with ``tls_only``)."""
        s = self.settings
        out: list[tuple[int, Any]] = [] if s.tls_only else [(s.port, None)]
        if s.tls_enabled:
            assert s.tls_certificate is not None and s.tls_private_key is not None  # the settings checked it
            ctx = tls.server_context(s.tls_certificate, s.tls_private_key, s.tls_ca_bundle,
                                     require_peer_certificate=s.tls_require_peer_certificate)
            out.append((s.port if s.tls_only else int(s.tls_port or 0), ctx))
        return out

    def start(self) -> None:
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_CONN_CLOSE, self._on_close),
            (evt.EVT_CONN_OPEN, self._on_open),
        ]
        for port, ctx in self._listeners():
            server = self.ae.make_server(
                (self.settings.host, port), evt_handlers=handlers, server_class=GuardedAssociationServer,
                ssl_context=ctx, pending=self.pending, socket_timeout_s=self.settings.network_timeout_s,
                on_handshake_failed=self._handshake_failed)
            self.ae._servers.append(server)  # what AE.start_server does; AssociationServer.shutdown removes it
            threading.Thread(target=server.serve_forever, name="scp-accept" + ("-tls" if ctx else ""),
                             daemon=True).start()
            self._servers.append(server)
        self.pending.start()
        log(LOG, "scp listening", ae_title=self.settings.ae_title, host=self.settings.host,
            port=None if self.settings.tls_only else self.port, tls_port=self.tls_port,
            mutual_tls=self.settings.tls_require_peer_certificate if self.settings.tls_enabled else None)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
        self._servers = []
        self.pending.stop()

    # -- handlers ----------------------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        """The A-ASSOCIATE-RQ is complete: the connection is no longer pending. Then the peer address allow-list
        (the calling AE title allow-list is pynetdicom's ``require_calling_aet``) and an association slot.
        A reject sent here skips negotiation (pynetdicom checks ``is_rejected`` after this event)."""
        self.pending.settle(event.assoc.dul.socket.socket if event.assoc.dul.socket else None)
        rq = event.assoc.requestor
        peer = str(rq.address)
        calling = str(rq.primitive.calling_ae_title).strip()  # ae_title is only filled in by negotiation
        if self.settings.allowed_hosts and peer not in self.settings.allowed_hosts:
            self._rejected(calling, peer, "peer host not allowed", access=True)
            event.assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, CALLING_AET_NOT_RECOGNISED)
            event.assoc.kill()
        elif not self.slots.take(event.assoc):
            self._rejected(calling, peer, f"local limit exceeded ({self.slots.limit} associations)")
            event.assoc.acse.send_reject(REJECTED_TRANSIENT, SOURCE_SERVICE_PROVIDER_PRESENTATION,
                                         LOCAL_LIMIT_EXCEEDED)
            event.assoc.kill()

    def _on_accepted(self, event: evt.Event) -> None:
        metrics.ASSOCIATIONS.labels("accepted").inc()
        self.audit.record(audit.AuditEvent.ASSOCIATION_ACCEPTED, **audit.peer_fields(event.assoc))

    def _on_rejected(self, event: evt.Event) -> None:
        """A rejection by pynetdicom's negotiation (calling AE title not allowed): its slot is freed."""
        self.slots.release(event.assoc)
        rj = event.assoc.acceptor.primitive
        access = (rj.result_source, rj.diagnostic) == (SOURCE_SERVICE_USER, CALLING_AET_NOT_RECOGNISED)
        why = "calling AE title not allowed" if access else rj.reason_str
        rq = event.assoc.requestor
        self._rejected(str(rq.ae_title).strip(), str(rq.address), why, access=access)

    def _handshake_failed(self, peer: str, why: str) -> None:
        """A TLS handshake failed (no certificate, one from another CA, plain TCP): the connection is closed."""
        self._rejected("", peer, why, access=True)

    def _rejected(self, calling: str, peer: str, why: str, *, access: bool = False) -> None:
        """Count, log and audit a refusal (``access``: for who the peer is, else for the node's limits)."""
        metrics.ASSOCIATIONS.labels("rejected").inc()
        log(LOG, "association rejected", logging.WARNING, calling_aet=calling, peer=peer, reason=why)
        self.audit.record(audit.AuditEvent.ACCESS_REFUSED if access else audit.AuditEvent.ASSOCIATION_REFUSED,
                          audit.Outcome.MINOR_FAILURE, peer_aet=calling, peer_ip=peer, reason=why)

    def _assoc_id(self, event: evt.Event) -> str:
        key = id(event.assoc)
        with self._lock:
            aid = self._assoc_ids.get(key)
        if aid is not None:
            return aid
        aid = uuid.uuid4().hex
        rq = event.assoc.requestor
        self.spool.open_association(aid, str(rq.ae_title).strip(), str(rq.address))  # may fail: retried next time
        with self._lock:
            return self._assoc_ids.setdefault(key, aid)

    def _on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _on_open(self, event: evt.Event) -> None:
        """Before the connection reads anything: hold it to the size limits."""
        limit_socket(event.assoc, self.limits, self._over_limit)

    @staticmethod
    def _over_limit(peer: str, why: str) -> None:
        metrics.INSTANCES_REJECTED.labels("over a size limit (aborted)").inc()

    def _on_store(self, event: evt.Event) -> int:
        t0 = time.perf_counter()
        req = event.request
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            try:
                data: bytes | Path = Path(event.dataset_path)  # received to a file (STORE_RECV_CHUNKED_DATASET)
            except AttributeError:
                data = event.encoded_dataset()
            size = data.stat().st_size if isinstance(data, Path) else len(data)
            header = validate_instance(data, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID)
        except InvalidInstance as e:
            metrics.INSTANCES_REJECTED.labels(e.reason.split(" (")[0][:40]).inc()
            log(LOG, "instance refused", logging.WARNING, calling_aet=calling, status=f"0x{e.status:04X}",
                reason=e.reason, sop_instance_uid=str(req.AffectedSOPInstanceUID))
            return e.status
        except MemoryError:
            metrics.INSTANCES_REJECTED.labels("out of memory").inc()
            log(LOG, "out of memory reading an instance", logging.ERROR, sop_instance_uid=str(req.AffectedSOPInstanceUID))
            return OUT_OF_RESOURCES
        try:
            if header.sop_class_uid in SR_CLASS_UIDS:
                return self._on_sr(event, data, header, calling)
            outcome = self.spool.store(data, header, assoc_id=self._assoc_id(event), calling_aet=calling)
        except SPOOL_FAILURES as e:
            metrics.INSTANCES_REJECTED.labels("spool write failed").inc()
            log(LOG, "spool write failed", logging.ERROR, error=f"{type(e).__name__}: {e}",
                sop_instance_uid=header.sop_instance_uid)
            return OUT_OF_RESOURCES
        except Exception:  # noqa: BLE001 - a bug must not look like a refused payload; logged with its traceback
            metrics.INSTANCES_REJECTED.labels("unexpected error").inc()
            LOG.exception("unexpected error storing an instance", extra={"sop_instance_uid": header.sop_instance_uid})
            return UNABLE_TO_PROCESS
        metrics.INSTANCES_RECEIVED.labels(outcome.value).inc()
        if outcome is not StoreOutcome.DUPLICATE:
            metrics.BYTES_RECEIVED.inc(size)
        self.audit.record(audit.AuditEvent.INSTANCE_STORED, action="U" if outcome is StoreOutcome.REPLACED else "C",
                          stored=outcome.value, study_uid=header.study_uid, series_uid=header.series_uid,
                          sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
                          **audit.peer_fields(event.assoc))
        metrics.STORE_SECONDS.observe(time.perf_counter() - t0)
        LOG.debug("instance stored", extra={"study_uid": header.study_uid, "sop_instance_uid": header.sop_instance_uid,
                                            "outcome": outcome.value, "bytes": size})
        return SUCCESS

    def _on_sr(self, event: evt.Event, data: bytes | Path, header: InstanceHeader, calling: str) -> int:
        """An SR (``node.corrections``): a correction is fsync'd into the corrections inbox before Success, the node's
        own SR and SRs of studies it never had are acknowledged, not kept; unreadable content is refused (0xC210)."""
        try:
            kind = self.corrections.receive(data, header.sop_instance_uid)
        except UnreadableSR as e:
            metrics.INSTANCES_REJECTED.labels("unreadable SR").inc()
            log(LOG, "instance refused", logging.WARNING, calling_aet=calling, status=f"0x{CANNOT_UNDERSTAND:04X}",
                reason=f"SR: {e}", sop_instance_uid=header.sop_instance_uid)
            return CANNOT_UNDERSTAND
        metrics.INSTANCES_RECEIVED.labels(f"sr {kind.value}").inc()
        self.audit.record(audit.AuditEvent.INSTANCE_STORED, action="C", stored=f"sr {kind.value}",
                          study_uid=header.study_uid, series_uid=header.series_uid,
                          sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
                          **audit.peer_fields(event.assoc))
        log(LOG, "SR received", kind=kind.value, study_uid=header.study_uid, sop_instance_uid=header.sop_instance_uid)
        return SUCCESS

    @staticmethod
    def _discard_partial(event: evt.Event) -> None:
        """Remove the file of a C-STORE data set that was still arriving when the connection ended (aborted, over a
        limit, peer gone): pynetdicom removes only the files of complete requests."""
        message = getattr(getattr(event.assoc, "dimse", None), "message", None)
        partial = getattr(message, "_data_set_file", None)
        if partial is not None:
            with contextlib.suppress(OSError):
                partial.close()
                os.unlink(partial.name)

    def _on_close(self, event: evt.Event) -> None:
        self._discard_partial(event)
        self.slots.release(event.assoc)
        with self._lock:
            aid = self._assoc_ids.pop(id(event.assoc), None)
        if aid is None:
            return
        how = AssociationEnd.RELEASED if event.assoc.is_released else AssociationEnd.ABORTED
        try:
            self.spool.close_association(aid, how)
        except SPOOL_FAILURES as e:  # the study then waits open_association_age_s instead of stable_age_s
            log(LOG, "association close not recorded", logging.ERROR, assoc_id=aid, error=f"{type(e).__name__}: {e}")
            return
        log(LOG, "association closed", assoc_id=aid, how=how.value)
        self.released.set()
