"""Bounded memory on the wire: limits on what a peer may send, checked as pynetdicom reads it.

pynetdicom 3 reads a PDU as a 6-byte header, then as many bytes as the header declares, into memory, whatever our
maximum PDU length: a P-DATA-TF PDU declaring ~4 GB grew the node's memory with every byte streamed. And it keeps
a DIMSE command set, and the data set of any message but a C-STORE request, in memory until the message is
complete. ``LimitedAssociationSocket`` checks each PDU header before its body is read and counts the data of every
message as it arrives:

* a P-DATA-TF PDU longer than ``max_pdu`` (the maximum length we announced in the A-ASSOCIATE-AC, PS3.8 9.3.3.3)
  or any other PDU longer than ``MAX_CONTROL_PDU``: A-ABORT (service provider, invalid PDU parameter value) and
  the connection is closed, before the body is read;
* a C-STORE data set beyond ``max_instance_bytes``, a command set beyond ``MAX_COMMAND_SET``, or the data set of
  another message beyond ``MAX_IN_MEMORY_DATA_SET``: A-ABORT (service user) as soon as the count passes the limit.
  (A status cannot answer a request whose data set is not complete; nothing of it is stored.)

C-STORE data sets themselves go to disk as they arrive (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``, set by
``node.scp``), so with these limits the memory of an association is about one PDU.

pynetdicom has no setting for its socket class: ``limit_socket`` (called from the SCP's ``EVT_CONN_OPEN`` handler,
before the association reads anything) turns the association's ``AssociationSocket`` into this subclass, which only
adds checks to ``recv``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pynetdicom.transport import AssociationSocket

from node.logs import log

LOG = logging.getLogger("node.pdu_limits")

P_DATA_TF = 0x04
MAX_CONTROL_PDU = 1 << 20
"""A-ASSOCIATE, A-RELEASE and A-ABORT PDUs longer than this (bytes) are refused (a request with the 128
presentation contexts DICOM allows and every transfer syntax is a few hundred kB at most)."""
MAX_COMMAND_SET = 64 << 10
"""A DIMSE command set longer than this (bytes) is refused (a C-STORE request's is about 200 bytes)."""
MAX_IN_MEMORY_DATA_SET = 1 << 20
"""Data sets of messages other than C-STORE requests (held in memory by pynetdicom; the node answers none of them
with data) longer than this (bytes) are refused."""
C_STORE_RQ = 0x0001
READ_CHUNK = 1 << 20
"""Bytes a PDU body is read in at most, per ``recv_into`` (``LimitedAssociationSocket._read_body``)."""

ABORT_SOURCE_SERVICE_USER = 0x00
ABORT_SOURCE_SERVICE_PROVIDER = 0x02
ABORT_REASON_NOT_SPECIFIED = 0x00
ABORT_REASON_INVALID_PDU_PARAMETER_VALUE = 0x06


def a_abort_pdu(source: int, reason: int) -> bytes:
    """An encoded A-ABORT PDU (PS3.8 9.3.8)."""
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, source, reason)


@dataclass(frozen=True)
class WireLimits:
    """The limits of one SCP (bytes; 0 = unlimited)."""

    max_pdu: int
    """Longest P-DATA-TF PDU (its length field), the maximum we announce."""
    max_instance_bytes: int
    """Longest C-STORE data set."""

    def pdu_limit(self, pdu_type: int) -> int:
        """The longest body of a PDU of ``pdu_type`` (0: unlimited)."""
        if pdu_type != P_DATA_TF:
            return MAX_CONTROL_PDU
        if self.max_pdu:
            return self.max_pdu
        return self.max_instance_bytes + MAX_COMMAND_SET if self.max_instance_bytes else 0


Refused = Callable[[str, str], None]
"""``on_refused(peer, reason)``: called once when a connection is aborted for a limit."""


class LimitedAssociationSocket(AssociationSocket):
    """An ``AssociationSocket`` whose ``recv`` refuses PDUs and messages over ``WireLimits`` (see the module)."""

    limits: WireLimits
    on_refused: Refused | None

    def _start_limits(self, limits: WireLimits, on_refused: Refused | None) -> None:
        self.limits = limits
        self.on_refused = on_refused
        self._body_of: int | None = None  # the PDU type whose body the next recv reads
        self._command = bytearray()
        self._data_bytes = 0
        self._is_store = False
        self._refused = False

    def recv(self, nr_bytes: int) -> bytearray:
        """The DUL reads each PDU as ``recv(6)`` (type, reserved, length) then ``recv(length)``."""
        if self._refused:
            return bytearray()
        if self._body_of is None:
            data = super().recv(nr_bytes)
            if nr_bytes == 6 and len(data) == 6:
                self._body_of = data[0]
            return data
        pdu_type, self._body_of = self._body_of, None
        limit = self.limits.pdu_limit(pdu_type)
        if limit and nr_bytes > limit:
            return self._refuse(f"PDU of type 0x{pdu_type:02X} declares {nr_bytes} bytes, more than {limit}",
                                ABORT_SOURCE_SERVICE_PROVIDER, ABORT_REASON_INVALID_PDU_PARAMETER_VALUE)
        data = self._read_body(nr_bytes)
        if pdu_type == P_DATA_TF and len(data) == nr_bytes:
            problem = self._count(data)
            if problem:
                return self._refuse(problem, ABORT_SOURCE_SERVICE_USER, ABORT_REASON_NOT_SPECIFIED)
        return data

    def _read_body(self, nr_bytes: int) -> bytearray:
        """``nr_bytes`` from the socket (fewer if the peer closes), as ``AssociationSocket.recv`` reads them, but with
        ``recv_into`` up to ``READ_CHUNK`` bytes at a time instead of ``recv(4096)`` calls each appended to a growing
        array (about 2 500 calls per 10 MB data set, the SCP's largest cost per instance). Memory grows only with
        the bytes that arrived: a body longer than ``READ_CHUNK`` is read through one ``READ_CHUNK`` buffer."""
        sock = cast(socket.socket, self.socket)
        if nr_bytes <= READ_CHUNK:
            out = bytearray(nr_bytes)
            view, got = memoryview(out), 0
            while got < nr_bytes:
                n = sock.recv_into(view[got:])
                if not n:
                    break
                got += n
            view.release()
            del out[got:]  # the peer closed early: what came
            return out
        out, buf = bytearray(), bytearray(READ_CHUNK)
        view = memoryview(buf)
        while len(out) < nr_bytes:
            n = sock.recv_into(view, min(READ_CHUNK, nr_bytes - len(out)))
            if not n:
                break
            out += view[:n]
        view.release()
        return out

    def _count(self, body: bytearray) -> str:
        """Add the PDVs of one P-DATA-TF body to the message under way; a reason when a limit is passed."""
        offset = 0
        while offset + 6 <= len(body):
            item_length = int.from_bytes(body[offset:offset + 4], "big")
            control = body[offset + 5]
            start, end = offset + 6, min(offset + 4 + item_length, len(body))
            offset += 4 + item_length
            if control & 0x01:  # command fragment
                self._command.extend(body[start:end])
                if len(self._command) > MAX_COMMAND_SET:
                    return f"DIMSE command set longer than {MAX_COMMAND_SET} bytes"
                if control & 0x02:  # the last one: which message is it?
                    self._is_store = command_field(bytes(self._command)) == C_STORE_RQ
                    self._command.clear()
                    self._data_bytes = 0
            else:
                self._data_bytes += max(end - start, 0)  # counted, not copied
                limit = self.limits.max_instance_bytes if self._is_store else MAX_IN_MEMORY_DATA_SET
                if limit and self._data_bytes > limit:
                    what = "C-STORE data set" if self._is_store else "data set"
                    return f"{what} longer than {limit} bytes"
                if control & 0x02:
                    self._data_bytes = 0
        return ""

    def _refuse(self, why: str, source: int, reason: int) -> bytearray:
        """Abort: send A-ABORT, close the connection; the DUL then sees a short PDU and ends the association."""
        self._refused = True
        peer = ""
        with contextlib.suppress(OSError, AttributeError):
            peer = str(self.socket.getpeername()[0])  # type: ignore[union-attr]
        log(LOG, "association aborted: over a size limit", logging.WARNING, peer=peer, reason=why)
        if self.on_refused is not None:
            self.on_refused(peer, why)
        with contextlib.suppress(OSError, AttributeError):
            self.socket.sendall(a_abort_pdu(source, reason))  # type: ignore[union-attr]
        with contextlib.suppress(OSError, AttributeError):
            self.socket.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        return bytearray()


def command_field(command: bytes) -> int | None:
    """(0000,0100) Command Field of an encoded command set (implicit VR little endian), or None."""
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHL", command, offset)
        offset += 8
        if (group, element) == (0x0000, 0x0100) and length == 2 and offset + 2 <= len(command):
            return int(struct.unpack_from("<H", command, offset)[0])
        offset += length
    return None


def limit_socket(assoc: object, limits: WireLimits, on_refused: Refused | None = None) -> None:
    """Make the association's socket a ``LimitedAssociationSocket`` (before it reads anything: ``EVT_CONN_OPEN``)."""
    sock = getattr(getattr(assoc, "dul", None), "socket", None)
    if isinstance(sock, AssociationSocket) and not isinstance(sock, LimitedAssociationSocket):
        sock.__class__ = LimitedAssociationSocket
        sock._start_limits(limits, on_refused)
