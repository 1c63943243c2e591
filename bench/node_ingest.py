"""Benchmark: ingest throughput (MB/s) of the node's Storage SCP vs DCMTK ``storescp``, same files, same sender.

Generates ``--count`` large DX files (default 100 x 2500 x 2048 x 16 bit, about 10 MB each), then sends
them over loopback with DCMTK ``storescu`` (one association, max PDU 131072 on both sides) to

* ``cspine-node serve --no-worker`` (validate + atomic write + fsync file and directory + SQLite index
  commit with synchronous=FULL, before each Success), and
* ``storescp -od DIR`` (DCMTK's reference SCP; writes each file, no fsync),

alternating ``--rounds`` times, and prints MB/s for each. A number, not a test: run it by hand.

    .venv/bin/python bench/node_ingest.py [--count 100] [--rows 2500 --cols 2048] [--rounds 1]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.node.nodetest_data import make_image  # noqa: E402
from tests.node.nodetest_proc import serve  # noqa: E402
from tests.services import free_port  # noqa: E402


def make_files(out: Path, count: int, rows: int, cols: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    base = make_image(rows=8, cols=8)
    pixels = np.random.default_rng(0).integers(0, 4095, size=(rows, cols), dtype=np.uint16).tobytes()
    study = pydicom.uid.generate_uid()
    series = pydicom.uid.generate_uid()
    paths = []
    for i in range(count):
        ds = make_image(study, series_uid=series, rows=8, cols=8)
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = pixels
        ds.InstanceNumber = i + 1
        p = out / f"dx{i:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    del base
    return paths


def send(paths: list[Path], port: int, aec: str) -> float:
    t0 = time.perf_counter()
    run = subprocess.run(["storescu", "-aet", "BENCH", "-aec", aec, "-pdu", "131072", "127.0.0.1", str(port),
                          *map(str, paths)], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(f"storescu failed: {run.stderr[-2000:]}")
    return dt


def bench_node(paths: list[Path], work: Path) -> float:
    spool = work / "spool"
    node = serve(spool, work / "serve.log", CSPINE_STABLE_AGE_S="3600", CSPINE_EMBEDDED_WORKER="false",
                 CSPINE_LOG_LEVEL="WARNING")
    try:
        return send(paths, node.port, "CSPINE")
    finally:
        node.stop()
        shutil.rmtree(spool, ignore_errors=True)


def bench_storescp(paths: list[Path], work: Path) -> float:
    out = work / "storescp"
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(["storescp", "-od", str(out), "-pdu", "131072", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["echoscu", "127.0.0.1", str(port)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        return send(paths, port, "STORESCP")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rows", type=int, default=2500)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="where files go (default: a temporary folder, removed)")
    args = ap.parse_args()
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install dcmtk")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cspine-bench-"))
    try:
        paths = make_files(work / "files", args.count, args.rows, args.cols)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} DX files, {mb:.0f} MB in total ({mb / len(paths):.1f} MB each), loopback, storescu sender")
        for r in range(args.rounds):
            t_node = bench_node(paths, work)
            t_dcmtk = bench_storescp(paths, work)
            print(f"round {r + 1}: cspine-node SCP {mb / t_node:7.1f} MB/s ({t_node:.1f} s)   "
                  f"DCMTK storescp {mb / t_dcmtk:7.1f} MB/s ({t_dcmtk:.1f} s)   ratio {t_dcmtk / t_node:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
