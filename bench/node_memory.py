"""Node memory while large instances arrive: the RSS of ``cspine-node serve``, read from /proc, while senders stream.

    .venv/bin/python bench/node_memory.py [--senders 10] [--mb 256] [--mode store|oversize|declared]
                                          [--max-instance-mb 1024] [--max-pdu 131072]

Starts ``cspine-node serve`` (no worker; its spool in a temporary folder) and samples its VmRSS every 20 ms while
``--senders`` concurrent senders each send one instance:

* ``store``: a real DX instance of ``--mb`` MB (pixels), sent by pynetdicom streaming from its file; every one must
  be stored (status 0x0000) with its bytes.
* ``oversize``: a C-STORE whose data set streams ``--mb`` MB past ``--max-instance-mb`` (raw PDUs): the node must
  abort each association once the data set passes the limit.
* ``declared``: a P-DATA-TF PDU header declaring ~4 GB, then ``--mb`` MB streamed: the node must abort each before
  reading the body.

Prints one JSON line: baseline, sampled peak and VmHWM (MB), the senders' outcomes, seconds. Target (issue 16):
node RSS under 300 MB while 10 senders stream 256 MB instances, and every oversize message refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20


def _instance_files(out: Path, n: int, mb: int) -> list[Path]:
    """``n`` distinct DX instances of about ``mb`` MB each (the pixels written once, then each file copied with its
    own UIDs: only the header differs)."""
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.node.nodetest_data import make_image, write_image

    cols = 4096
    rows = max(1, mb * MIB // (cols * 2))
    ds = make_image(rows=16, cols=16)
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = np.random.default_rng(0).integers(0, 4095, size=rows * cols, dtype=np.uint16).tobytes()
    study = generate_uid()
    paths = []
    for i in range(n):
        ds.StudyInstanceUID = study
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(write_image(out / f"big{i}.dcm", ds))
    return paths


def _store(port: int, path: Path, outcome: dict) -> None:
    from pynetdicom import _config

    from node.scu import store_files

    _config.STORE_SEND_CHUNKED_DATASET = True  # the sender streams from the file too
    try:
        outcome["status"] = store_files([path], "127.0.0.1", port, timeout_s=600)[0]
    except Exception as e:  # noqa: BLE001 - reported
        outcome["status"] = f"{type(e).__name__}: {e}"


def _raw(port: int, mode: str, mb: int, outcome: dict) -> None:
    from pydicom.uid import generate_uid

    from tests.node.nodetest_data import DX_PRESENTATION, make_image
    from tests.node.nodetest_raw import (
        RawAssociation,
        associate_rq,
        data_pdu,
        encode_dataset,
        open_c_store_rq,
    )

    raw = RawAssociation(port, timeout=60)
    if raw.open(associate_rq([DX_PRESENTATION])) != 0x02:
        outcome["status"] = "not accepted"
        return
    chunk = bytes(128 * 1024 - 6)
    sent = 0
    if mode == "declared":
        ok = raw.send(struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0))
    else:
        ds = make_image(rows=16, cols=16)
        ds.SOPInstanceUID = generate_uid()
        head = encode_dataset(ds)
        # The data set as encoded up to its Pixel Data, which then declares 4 GB.
        pixel = head.rfind(b"\xe0\x7f\x10\x00")
        head = head[:pixel] + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<L", 0xFFFFFFF0)
        ok = raw.send(open_c_store_rq(head, DX_PRESENTATION, ds.SOPInstanceUID))
    t0 = time.monotonic()
    while ok and sent < mb * MIB:
        ok = raw.send(data_pdu(chunk) if mode == "oversize" else chunk)
        sent += len(chunk) if ok else 0
    abort = None
    raw.sock.settimeout(10)
    while (pdu := raw.read_pdu()) is not None:
        if pdu[0] == 0x07:
            abort = (pdu[1][2], pdu[1][3])
            break
    raw.close()
    outcome.update(status="aborted" if abort else ("closed" if not ok else "not refused"), abort=abort,
                   mb_sent_before_refusal=round(sent / MIB, 1), seconds=round(time.monotonic() - t0, 2))


def _rss(pid: int) -> tuple[int, int]:
    from tests.node.nodetest_raw import rss_kib

    return rss_kib(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--senders", type=int, default=10)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--mode", choices=["store", "oversize", "declared"], default="store")
    ap.add_argument("--max-instance-mb", type=int, default=1024)
    ap.add_argument("--max-pdu", type=int, default=131072)
    args = ap.parse_args(argv)

    from tests.node.nodetest_proc import serve

    work = Path(tempfile.mkdtemp(prefix="cspine-memory-"))
    try:
        files = _instance_files(work / "in", args.senders, args.mb) if args.mode == "store" else []
        node = serve(work / "spool", work / "node.log", CSPINE_EMBEDDED_WORKER="false",
                     CSPINE_MAX_ASSOCIATIONS=str(max(10, args.senders + 2)),
                     CSPINE_MAX_INSTANCE_BYTES=str(args.max_instance_mb * MIB), CSPINE_MAX_PDU=str(args.max_pdu),
                     CSPINE_LOG_LEVEL="WARNING")
        try:
            time.sleep(1.0)
            base, _ = _rss(node.proc.pid)
            peak, stop = [base], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], _rss(node.proc.pid)[0])
                    stop.wait(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            outcomes: list[dict] = [{} for _ in range(args.senders)]
            t0 = time.monotonic()
            threads = [threading.Thread(target=_store, args=(node.port, files[i], outcomes[i])) if args.mode == "store"
                       else threading.Thread(target=_raw, args=(node.port, args.mode, args.mb, outcomes[i]))
                       for i in range(args.senders)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.monotonic() - t0
            stop.set()
            sampler.join()
            _, hwm = _rss(node.proc.pid)
            from node.scu import echo

            echo_ok = echo("127.0.0.1", node.port) == 0
        finally:
            node.stop()
        stored = identical = 0
        if args.mode == "store":
            from node.spool import Spool

            sp = Spool(work / "spool")
            rows = {r["sop_instance_uid"]: r for s in sp.studies() for r in sp.instance_rows(s.study_uid)}
            import pydicom

            for f in files:
                uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                if uid in rows:
                    stored += 1
                    with open(rows[uid]["path"], "rb") as a, open(f, "rb") as b:
                        a.seek(-MIB, 2)
                        b.seek(-MIB, 2)
                        identical += a.read() == b.read()
        print(json.dumps({
            "mode": args.mode, "senders": args.senders, "mb_each": args.mb, "max_instance_mb": args.max_instance_mb,
            "max_pdu": args.max_pdu, "rss_baseline_mb": round(base / 1024, 1),
            "rss_peak_sampled_mb": round(peak[0] / 1024, 1), "rss_peak_vmhwm_mb": round(hwm / 1024, 1),
            "seconds": round(seconds, 1), "echo_after": echo_ok, "stored": stored, "tail_identical": identical,
            "outcomes": outcomes,
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
