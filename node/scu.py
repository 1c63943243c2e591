"""A small C-STORE / C-ECHO client (pynetdicom) used by ``demo``, the tests and the benchmarks."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification


class AssociationFailed(ConnectionError):
    """The peer rejected or aborted the association, or could not be reached."""


def store_files(
    paths: Iterable[Path], host: str, port: int, *, called_aet: str = "CSPINE", calling_aet: str = "CSPINE-SCU",
    max_pdu: int = 131072, timeout_s: float = 60.0, tls_args: tuple[ssl.SSLContext, str] | None = None,
) -> list[int]:
    """Send files in one association; returns the C-STORE status of each (``-1`` when none came back).
    ``tls_args``: ``(client context, server host name)`` for DICOM TLS."""
    paths = [Path(p) for p in paths]
    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    contexts: dict[str, set[str]] = {}
    for p in paths:
        meta = pydicom.dcmread(p, stop_before_pixels=True).file_meta
        contexts.setdefault(str(meta.MediaStorageSOPClassUID), set()).update(
            {str(meta.TransferSyntaxUID), ExplicitVRLittleEndian, ImplicitVRLittleEndian})
    for sop_class, syntaxes in contexts.items():
        for ts in sorted(syntaxes):  # one context per syntax, so the file's own syntax is always accepted
            ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(host, port, ae_title=called_aet, tls_args=tls_args)
    if not assoc.is_established:
        raise AssociationFailed(f"association with {called_aet}@{host}:{port} "
                                f"{'rejected' if assoc.is_rejected else 'failed'}")
    statuses = []
    try:
        for p in paths:
            status = assoc.send_c_store(p)
            statuses.append(int(status.Status) if status and "Status" in status else -1)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(host: str, port: int, *, called_aet: str = "CSPINE", calling_aet: str = "CSPINE-SCU",
         timeout_s: float = 30.0, tls_args: tuple[ssl.SSLContext, str] | None = None) -> int:
    """C-ECHO (over DICOM TLS with ``tls_args``); returns the status (0 = success). Raises ``AssociationFailed``
    when refused."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_aet, tls_args=tls_args)
    if not assoc.is_established:
        raise AssociationFailed(f"association with {called_aet}@{host}:{port} "
                                f"{'rejected' if assoc.is_rejected else 'failed'}")
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status and "Status" in status else -1
    finally:
        assoc.release()
