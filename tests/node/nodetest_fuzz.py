"""A seeded mutation fuzzer for the node's Storage SCP, shared by ``tests/node/test_node_fuzz.py`` (hundreds of cases
in CI) and ``bench/fuzz_node.py`` (thousands, by hand).

* **C-STORE data sets** (``store_case``): a valid small DX (explicit VR little endian, or RLE-encapsulated Pixel
  Data) is encoded once; each case gives it a new SOP Instance UID and one or more mutations at the byte level
  (wrong VRs, truncated values and data sets, huge or undefined lengths, missing UIDs, flipped bytes, junk elements,
  bad Pixel Data and fragment items) and sends it as the data set of a C-STORE on a raw association. The answer
  must be a documented status (``ALLOWED_STATUSES``); an abort or no answer is a failure.
* **Upper layer** (``wire_case``): malformed PDUs on raw sockets, before and after association (random bytes,
  mutated or truncated A-ASSOCIATE-RQs, unknown PDU types, wrong lengths, bad PDVs, garbage command sets, data
  before a command, PDUs out of order). The node may answer with any PDU or close; it must not hang or die.
* **Liveness**: ``checkpoint`` (a C-ECHO from 127.0.0.1) after every batch; fuzz connections come from 127.0.0.2 ...
  so that the per-address pending cap never refuses the checkpoint.
* **No loss**: every instance acknowledged with Success is kept (``acked``); ``verify_spool`` checks that the spool
  holds each with exactly the bytes sent (the stored file is the file meta + the data set as received).
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from tests.node.nodetest_data import DX_PRESENTATION, make_image
from tests.node.nodetest_raw import (
    A_RELEASE_RQ,
    RawAssociation,
    associate_rq,
    c_echo_rq,
    c_store_rq,
    data_pdu,
    encode_dataset,
)

ALLOWED_STATUSES = {0x0000, 0xA900, 0xC210}
"""What a malformed C-STORE may get: Success (the mutation left a valid instance), 0xA900 (UIDs missing or not
matching), 0xC210 (not parsable, bad Pixel Data). 0xA700 (out of resources) and 0xC211 (an unexpected error in the
node) are documented too, but here they would mean a bug: the fuzz fails on them."""

STUDY_UID = "1.2.826.0.1.3680043.8.498.77.1"
UID_PLACEHOLDER = "1.2.826.0.1.3680043.8.498.99.900000000000"
CONTEXTS = [(DX_PRESENTATION, ExplicitVRLittleEndian), (DX_PRESENTATION, RLELossless)]
"""Presentation contexts of every fuzz association: 3 (native pixels) and 5 (encapsulated)."""

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_VRS = [b"AE", b"AS", b"CS", b"DA", b"DS", b"IS", b"LO", b"OB", b"OW", b"PN", b"SH", b"SQ", b"UI", b"UL", b"UN",
        b"US", b"UT", b"FD", b"SS", b"ZZ", b"\x00\x00"]
_UID_TAGS = {(0x0008, 0x0016), (0x0008, 0x0018), (0x0020, 0x000D), (0x0020, 0x000E)}


def _base(encapsulated: bool) -> bytes:
    ds = make_image(STUDY_UID, sop_uid=UID_PLACEHOLDER, series_uid=STUDY_UID + ".1", rows=32, cols=32)
    if encapsulated:
        ds.file_meta.TransferSyntaxUID = RLELossless
        rng = np.random.default_rng(1)
        ds.PixelData = encapsulate([rng.integers(0, 255, 300, dtype=np.uint8).tobytes()])
        ds["PixelData"].VR = "OB"
    return encode_dataset(ds)


def elements(data: bytes) -> list[tuple[int, int, int, int, int, bool]]:
    """Top-level elements of an explicit VR little endian data set (no sequences in the bases):
    ``(offset, group, element, length offset, value offset, long length)`` up to where parsing stops."""
    out, offset = [], 0
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4:offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(data):
                break
            length = struct.unpack_from("<L", data, offset + 8)[0]
            out.append((offset, group, element, offset + 8, offset + 12, True))
            if length == 0xFFFFFFFF:
                break
            offset += 12 + length
        else:
            length = struct.unpack_from("<H", data, offset + 6)[0]
            out.append((offset, group, element, offset + 6, offset + 8, False))
            offset += 8 + length
    return out


def _end(data: bytes, el: tuple[int, int, int, int, int, bool]) -> int:
    """Offset just after element ``el``."""
    _, _, _, length_at, value_at, long_length = el
    length = struct.unpack_from("<L" if long_length else "<H", data, length_at)[0]
    return value_at + (0 if length == 0xFFFFFFFF else length)


def mutate(rng: random.Random, data: bytes, encapsulated: bool) -> tuple[str, bytes]:
    """One mutation of an encoded data set: ``(its name, the mutated bytes)``."""
    els = elements(data)
    if len(els) < 2:  # an earlier mutation left (almost) nothing to work on
        return "garbage", bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    el = rng.choice(els)
    kind = rng.choice(["vr", "truncate", "length", "drop_uid", "flip", "junk", "pixel", "dims", "empty", "swap",
                       "duplicate", "undefined"] + (["items"] * 3 if encapsulated else []))
    b = bytearray(data)
    pixel = next((e for e in els if (e[1], e[2]) == (0x7FE0, 0x0010)), None)
    if kind in ("pixel", "items") and pixel is None:  # an earlier mutation took the Pixel Data away
        kind = "truncate"
    if kind == "vr":
        b[el[0] + 4:el[0] + 6] = rng.choice(_VRS)
    elif kind == "truncate":
        b = b[:rng.randrange(0, len(b))]
    elif kind == "length":
        fmt = "<L" if el[5] else "<H"
        top = 0xFFFFFFFF if el[5] else 0xFFFF
        struct.pack_into(fmt, b, el[3], rng.choice([top, top - 1, top // 2, rng.randrange(0, top), 0,
                                                    len(data) * 4]))
    elif kind == "drop_uid":
        uid = next((e for e in els if (e[1], e[2]) in _UID_TAGS and rng.random() < 0.5), els[0])
        del b[uid[0]:_end(data, uid)]
    elif kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "junk":
        vr = rng.choice(_VRS)
        value = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 8, 64])))
        head = struct.pack("<HH", rng.choice([0x0009, 0x0011, 0x0029, 0x7FE1, rng.randrange(0x10000)]),
                           rng.randrange(0x10000)) + vr
        head += struct.pack("<HL", 0, len(value)) if vr in _LONG_VRS else struct.pack("<H", len(value))
        b[el[0]:el[0]] = head + value
    elif kind == "pixel" and pixel is not None:
        if pixel[5] and not encapsulated:
            length = struct.unpack_from("<L", b, pixel[3])[0]
            cut = rng.randrange(0, max(length, 1))
            struct.pack_into("<L", b, pixel[3], cut)
            b = b[:pixel[4] + cut]
        else:
            b = b[:pixel[4] + rng.randrange(0, 40)]
    elif kind == "dims":
        dim = next((e for e in els if (e[1], e[2]) in {(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0100)}
                    and rng.random() < 0.5), None)
        if dim is not None:
            struct.pack_into("<H", b, dim[4], rng.choice([0, 1, 0xFFFF, 4096]))
    elif kind == "empty":
        b = bytearray(rng.choice([b"", b"\x00" * 8, bytes(rng.randrange(256) for _ in range(64))]))
    elif kind == "swap" and len(els) > 3:
        i = rng.randrange(1, len(els) - 1)
        a, c = els[i], els[i + 1]
        first, second = bytes(b[a[0]:c[0]]), bytes(b[c[0]:_end(data, c)])
        b[a[0]:_end(data, c)] = second + first
    elif kind == "duplicate":
        b[el[0]:el[0]] = b[el[0]:_end(data, el)]
    elif kind == "undefined":
        if el[5]:
            struct.pack_into("<L", b, el[3], 0xFFFFFFFF)
        else:
            b[el[0] + 4:el[0] + 6] = b"UN"
            b[el[0] + 6:el[0] + 8] = b"\x00\x00\xff\xff\xff\xff"
    elif kind == "items" and pixel is not None:
        items = bytearray()
        for _ in range(rng.randint(0, 4)):
            tag = rng.choice([b"\xfe\xff\x00\xe0"] * 4 + [b"\xfe\xff\xdd\xe0", b"\x00\x00\x00\x00"])
            n = rng.choice([0, 4, 100, 0xFFFFFFFF, rng.randrange(0, 1 << 31)])
            payload = bytes(rng.randrange(256) for _ in range(min(n, rng.choice([0, 4, 100]))))
            items += tag + struct.pack("<L", n) + payload
        if rng.random() < 0.7:
            items += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        b = b[:pixel[4]] + items
    return kind, bytes(b)


@dataclass
class FuzzRun:
    """One seeded run against the SCP on ``port``; ``stats`` counts what happened, ``failures`` lists what broke a
    rule (empty: passed)."""

    port: int
    seed: int
    host: str = "127.0.0.1"
    acked: dict[str, bytes] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    echo_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.bases = [_base(False), _base(True)]
        self._n = 0
        self._source = 0

    def _connect(self) -> RawAssociation:
        self._source = self._source % 40 + 1  # 127.0.0.2 ... 127.0.0.41
        raw = RawAssociation.__new__(RawAssociation)
        raw.sock = socket.socket()
        raw.sock.settimeout(10)
        raw.sock.bind((f"127.0.0.{self._source + 1}", 0))
        raw.sock.connect((self.host, self.port))
        raw.accepted = {}
        return raw

    def _uid(self) -> str:
        self._n += 1
        return f"1.2.826.0.1.3680043.8.498.99.9{self.seed % 10**5:05d}{self._n:06d}"  # as long as the placeholder

    def store_case(self) -> None:
        """One mutated C-STORE on its own association; its status must be allowed."""
        encapsulated = self.rng.random() < 0.3
        uid = self._uid()
        data = self.bases[encapsulated].replace(UID_PLACEHOLDER.encode(), uid.encode())
        names = []
        for _ in range(1 if self.rng.random() < 0.8 else self.rng.randint(2, 3)):
            if self.rng.random() < 0.15:  # some cases stay valid: Success, checked for loss at the end
                names.append("none")
                continue
            name, data = mutate(self.rng, data, encapsulated)
            names.append(name)
        label = "+".join(names)
        raw = self._connect()
        try:
            if raw.open(associate_rq(CONTEXTS)) != 0x02 or not raw.accepted.get(3) or not raw.accepted.get(5):
                self.failures.append(f"store {label}: association not accepted")
                return
            context = 5 if encapsulated else 3
            # An empty data set still needs its (empty, last) fragment, which pynetdicom's encoder leaves out.
            raw.send(c_store_rq(data, DX_PRESENTATION, uid, context_id=context)
                     + (b"" if data else data_pdu(b"", context, last=True)))
            status = raw.dimse_status(timeout=15)
            raw.send(A_RELEASE_RQ)
        finally:
            raw.close()
        self.stats[f"store:{'none' if status is None else f'0x{status:04X}'}"] += 1
        if status not in ALLOWED_STATUSES:
            self.failures.append(f"store {label} ({uid}): status {status if status is None else hex(status)}")
        elif status == 0x0000:
            self.acked[uid] = data

    def wire_case(self) -> None:
        """One malformed upper-layer exchange; the node may answer or close, within a few seconds."""
        rng = self.rng
        rq = associate_rq(CONTEXTS)
        kind = rng.choice(["random", "rq_flip", "rq_truncate", "rq_length", "rq_item", "unknown_type", "pdata_first",
                           "release_first", "pdv_length", "pdv_context", "command_garbage", "data_first",
                           "control_bits", "abort", "ac_from_peer", "second_rq", "release_then_data", "echo_ok"])
        raw = self._connect()
        try:
            after = kind in {"pdv_length", "pdv_context", "command_garbage", "data_first", "control_bits", "abort",
                             "ac_from_peer", "second_rq", "release_then_data", "echo_ok"}
            if after and (raw.open(rq) != 0x02):
                self.failures.append(f"wire {kind}: association not accepted")
                return
            payload = self._wire_payload(kind, rq)
            raw.send(payload)
            answered = self._drain(raw, 0.3 if not after else 1.0)
            if kind == "echo_ok" and 0x04 not in answered:
                self.failures.append("wire echo_ok: no C-ECHO answer on a fuzzed connection")
        finally:
            raw.close()
        self.stats[f"wire:{kind}"] += 1

    def _wire_payload(self, kind: str, rq: bytes) -> bytes:
        rng = self.rng
        b = bytearray(rq)
        if kind == "random":
            return bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        if kind == "rq_flip":
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            return bytes(b)
        if kind == "rq_truncate":
            return bytes(b[:rng.randrange(1, len(b))])
        if kind == "rq_length":
            struct.pack_into(">L", b, 2, rng.choice([0, 1, 4, len(b) - 12, len(b) + 100, rng.randrange(1 << 20)]))
            return bytes(b)
        if kind == "rq_item":  # an item length inside the variable part
            offset = 74
            while offset + 4 <= len(b) and rng.random() < 0.6:
                offset += 4 + struct.unpack_from(">H", b, offset + 2)[0]
            if offset + 4 <= len(b):
                struct.pack_into(">H", b, offset + 2, rng.choice([0, 1, 0xFFFF, rng.randrange(0x10000)]))
            return bytes(b)
        if kind == "unknown_type":
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
            return struct.pack(">BBL", rng.choice([0x00, 0x08, 0x09, 0x7F, 0xFF]), 0, len(body)) + body
        if kind == "pdata_first":
            return c_echo_rq()
        if kind == "release_first":
            return A_RELEASE_RQ
        if kind == "pdv_length":
            body = struct.pack(">LBB", rng.choice([0, 1, 2, 500, 0xFFFFFFFF]), 1, 0x03) + b"\x00" * 16
            return struct.pack(">BBL", 0x04, 0, len(body)) + body
        if kind == "pdv_context":
            return data_pdu(c_echo_rq()[12:], rng.choice([0, 2, 99, 255]), last=True, command=True)
        if kind == "command_garbage":
            return data_pdu(bytes(rng.randrange(256) for _ in range(rng.randint(0, 120))), 1, last=True,
                            command=True)
        if kind == "data_first":
            return data_pdu(b"\x08\x00\x16\x00UI\x04\x001.2\x00", 3, last=True)
        if kind == "control_bits":
            echo = bytearray(c_echo_rq())
            echo[11] = rng.choice([0x00, 0x02, 0xFC, 0xFF])
            return bytes(echo)
        if kind == "abort":
            return b"\x07\x00\x00\x00\x00\x04\x00\x00" + bytes([rng.randrange(3), rng.randrange(7)])
        if kind == "ac_from_peer":
            return bytes([0x02]) + bytes(b[1:])
        if kind == "second_rq":
            return bytes(b)
        if kind == "release_then_data":
            return A_RELEASE_RQ + c_echo_rq()
        return c_echo_rq()  # echo_ok: a well-formed request on a fuzz connection

    @staticmethod
    def _drain(raw: RawAssociation, seconds: float) -> list[int]:
        """PDU types received until the node closes or ``seconds`` pass."""
        types: list[int] = []
        raw.sock.settimeout(seconds)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                pdu = raw.read_pdu()
            except (TimeoutError, OSError):
                break
            if pdu is None:
                break
            types.append(pdu[0])
            if pdu[0] in (0x03, 0x06, 0x07):  # rejected, released, aborted
                break
        return types

    def checkpoint(self, timeout: float = 10.0) -> bool:
        """A C-ECHO from 127.0.0.1 on a fresh association; records its latency. False (and a failure) when it
        does not succeed within ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                raw = RawAssociation(self.port, self.host, timeout=timeout)
                try:
                    if raw.open(associate_rq(CONTEXTS)) == 0x02:
                        raw.send(c_echo_rq())
                        if raw.dimse_status(timeout=timeout) == 0x0000:
                            raw.send(A_RELEASE_RQ)
                            self.echo_s.append(time.monotonic() - t0)
                            return True
                finally:
                    raw.close()
            except OSError:
                pass
            time.sleep(0.2)
        self.failures.append(f"liveness: no C-ECHO answered within {timeout:.0f} s")
        return False

    def run(self, cases: int, *, batch: int = 25, wire_share: float = 0.5) -> FuzzRun:
        """``cases`` cases (``wire_share`` of them upper-layer), a checkpoint after every ``batch``."""
        for i in range(cases):
            if self.rng.random() < wire_share:
                self.wire_case()
            else:
                self.store_case()
            if (i + 1) % batch == 0 or i == cases - 1:
                self.checkpoint()
        return self

    def verify_spool(self, spool) -> list[str]:  # noqa: ANN001 - node.spool.Spool
        """Every acknowledged instance is in the spool with the bytes sent; returns the problems (also added to
        ``failures``)."""
        problems = []
        # Any study: a mutation may have changed the Study Instance UID into another valid one.
        rows = {r["sop_instance_uid"]: r for st in spool.studies() for r in spool.instance_rows(st.study_uid)}
        for uid, data in self.acked.items():
            row = rows.get(uid)
            if row is None:
                problems.append(f"lost: {uid} was acknowledged but is not in the spool")
            elif not Path(row["path"]).read_bytes().endswith(data):
                problems.append(f"altered: {uid} is stored with other bytes than those acknowledged")
        self.failures += problems
        return problems
