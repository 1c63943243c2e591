"""Raw DICOM upper-layer traffic for the node's robustness tests and benches: PDUs encoded with pynetdicom's own
classes and sent on a plain socket, so a test can send what no well-behaved SCU would (oversize lengths, truncated
or malformed PDUs, C-STOREs with any bytes as their data set) and read exactly what the node answers."""

from __future__ import annotations

import socket
import struct
import time
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
A_RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def associate_rq(sop_classes: list[str | tuple[str, str]], *, transfer_syntax: str = ExplicitVRLittleEndian,
                 calling: str = "RAW", called: str = "CSPINE", max_pdu: int = 16384) -> bytes:
    """An encoded A-ASSOCIATE-RQ proposing Verification (context 1) and ``sop_classes`` (contexts 3, 5, ...) in
    ``transfer_syntax``, or each in its own syntax when given as ``(sop class, transfer syntax)``."""
    prim = A_ASSOCIATE()
    prim.application_context_name = APPLICATION_CONTEXT
    prim.calling_ae_title = calling
    prim.called_ae_title = called
    contexts = []
    for i, item in enumerate([(str(Verification), ImplicitVRLittleEndian), *sop_classes]):
        uid, ts = item if isinstance(item, tuple) else (item, transfer_syntax)
        cx = build_context(uid, [ts])
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    prim.presentation_context_definition_list = contexts
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_pdu
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.9999.1"
    prim.user_information = [ml, ic]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    return pdu.encode()


def p_data_pdus(message, context_id: int, max_pdu: int = 16384) -> bytes:  # noqa: ANN001 - a DIMSE message
    out = bytearray()
    for p_data in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        out += pdu.encode()
    return bytes(out)


def data_pdu(fragment: bytes, context_id: int = 3, *, last: bool = False, command: bool = False) -> bytes:
    """One P-DATA-TF PDU carrying one PDV: ``fragment`` of a data set (or of a command set)."""
    control = (0x02 if last else 0x00) | (0x01 if command else 0x00)
    return struct.pack(">BBLLBB", 0x04, 0, len(fragment) + 6, len(fragment) + 2, context_id, control) + fragment


def open_c_store_rq(dataset_head: bytes, sop_class: str, sop_instance: str, *, context_id: int = 3) -> bytes:
    """The PDUs of a C-STORE-RQ whose data set starts with ``dataset_head`` and is *not* finished: its last
    fragment is marked "not last", so that more (``data_pdu``) may follow."""
    pdus = bytearray(c_store_rq(dataset_head, sop_class, sop_instance, context_id=context_id))
    offset, last = 0, 0
    while offset < len(pdus):
        last = offset
        offset += 6 + struct.unpack(">L", pdus[offset + 2:offset + 6])[0]
    pdus[last + 11] &= 0xFD  # the one PDV of the final PDU: clear its "last fragment" bit
    return bytes(pdus)


def c_store_rq(dataset: bytes, sop_class: str, sop_instance: str, *, context_id: int = 3, message_id: int = 1,
               max_pdu: int = 16384) -> bytes:
    """P-DATA-TF PDUs of one C-STORE-RQ whose data set is ``dataset`` (encoded bytes, no file meta: sent as is)."""
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class
    req.AffectedSOPInstanceUID = sop_instance
    req.Priority = 2
    req.DataSet = BytesIO(dataset)
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    return p_data_pdus(msg, context_id, max_pdu)


def c_echo_rq(message_id: int = 1) -> bytes:
    req = C_ECHO()
    req.MessageID = message_id
    req.AffectedSOPClassUID = Verification
    msg = C_ECHO_RQ()
    msg.primitive_to_message(req)
    return p_data_pdus(msg, 1)


def encode_dataset(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """``ds`` without file meta, encoded in ``transfer_syntax`` (little endian)."""
    buf = BytesIO()
    ds = ds.copy()
    del ds.file_meta
    dcmwrite(buf, ds, implicit_vr=transfer_syntax == ImplicitVRLittleEndian, little_endian=True,
             enforce_file_format=False)
    return buf.getvalue()


class RawAssociation:
    """A plain socket speaking the upper layer by hand. ``open()`` sends the A-ASSOCIATE-RQ and reads the answer;
    ``read_pdu()`` returns ``(type, body)`` or None when the node closed the connection."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.accepted: dict[int, bool] = {}

    def send(self, data: bytes) -> bool:
        """Send; False when the node has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _read(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def read_pdu(self) -> tuple[int, bytes] | None:
        head = self._read(6)
        if head is None:
            return None
        pdu_type, _, length = struct.unpack(">BBL", head)
        body = self._read(length) if length else b""
        return None if body is None else (pdu_type, body)

    def open(self, rq: bytes) -> int:
        """Send the A-ASSOCIATE-RQ; the answer's PDU type (0x02 accepted: ``accepted`` maps context IDs)."""
        self.send(rq)
        pdu = self.read_pdu()
        if pdu is None:
            return 0
        if pdu[0] == 0x02:
            body, offset = pdu[1], 68
            while offset + 4 <= len(body):
                item_type, length = body[offset], struct.unpack(">H", body[offset + 2:offset + 4])[0]
                if item_type == 0x21:
                    self.accepted[body[offset + 4]] = body[offset + 6] == 0
                offset += 4 + length
        return pdu[0]

    def dimse_status(self, timeout: float = 30.0) -> int | None:
        """Read P-DATA-TF PDUs until a complete command set arrives; its (0000,0900) Status, or None when the node
        aborted or closed instead."""
        self.sock.settimeout(timeout)
        command = bytearray()
        while True:
            pdu = self.read_pdu()
            if pdu is None or pdu[0] != 0x04:
                return None
            body, offset = pdu[1], 0
            while offset + 6 <= len(body):
                length = struct.unpack(">L", body[offset:offset + 4])[0]
                control = body[offset + 5]
                if control & 1:
                    command += body[offset + 6:offset + 4 + length]
                    if control & 2:
                        return _status(bytes(command))
                offset += 4 + length

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _status(command: bytes) -> int | None:
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHL", command, offset)
        offset += 8
        if (group, element) == (0x0000, 0x0900):
            return int(struct.unpack_from("<H", command, offset)[0])
        offset += length
    return None


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc (Linux): its resident memory now and at its peak."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes ``sock`` within ``timeout`` s (reads and drops whatever arrives meanwhile)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False
