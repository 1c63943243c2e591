"""Fuzz ``cspine-node serve`` by hand: thousands of mutated C-STOREs and malformed upper-layer exchanges.

    .venv/bin/python bench/fuzz_node.py [--cases 3000] [--seed 1] [--seeds 1] [--batch 25] [--wire-share 0.5]

Starts ``cspine-node serve`` (no worker; its spool in a temporary folder; network timeouts of 3 s so that
half-sent exchanges end quickly) and runs ``tests.node.nodetest_fuzz.FuzzRun`` against it, ``--seeds`` runs from
``--seed`` on. The rules, as in ``tests/node/test_node_fuzz.py`` (which runs 400 cases in CI): every C-STORE gets a
documented status (0x0000, 0xA900, 0xC210), a C-ECHO from an allowed peer is answered after every ``--batch``
cases, and every instance acknowledged with Success is in the spool with the bytes sent. Also reported: the node's
RSS (now and peak, from /proc), its threads, files left in ``<spool>/tmp``, and the C-ECHO latencies.

Prints one JSON line per seed; exits 1 when a rule broke (the first failures are listed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--wire-share", type=float, default=0.5)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # pydicom warns about every invalid value the fuzzer makes

    from node.spool import Spool
    from tests.node.nodetest_fuzz import FuzzRun
    from tests.node.nodetest_proc import serve
    from tests.node.nodetest_raw import rss_kib

    broken = False
    for seed in range(args.seed, args.seed + args.seeds):
        work = Path(tempfile.mkdtemp(prefix="cspine-fuzz-"))
        try:
            node = serve(work / "spool", work / "node.log", CSPINE_EMBEDDED_WORKER="false", CSPINE_HOST="0.0.0.0",
                         CSPINE_NETWORK_TIMEOUT_S="3", CSPINE_DIMSE_TIMEOUT_S="3",
                         CSPINE_ASSOCIATION_REQUEST_TIMEOUT_S="2", CSPINE_MAX_ASSOCIATIONS="50",
                         CSPINE_LOG_LEVEL="WARNING")
            try:
                rss0, _ = rss_kib(node.proc.pid)
                t0 = time.monotonic()
                run = FuzzRun(node.port, seed).run(args.cases, batch=args.batch, wire_share=args.wire_share)
                seconds = time.monotonic() - t0
                time.sleep(5.0)  # fuzz connections end by themselves (2-3 s timeouts)
                alive = node.proc.poll() is None
                rss, hwm = rss_kib(node.proc.pid) if alive else (0, 0)
                threads = len(os.listdir(f"/proc/{node.proc.pid}/task")) if alive else 0
            finally:
                node.stop()
            spool = Spool(work / "spool")
            run.verify_spool(spool)
            spool.close()
            left = sorted(p.name for p in (work / "spool" / "tmp").iterdir())
            if not alive:
                run.failures.append("the node process died")
            if left:
                run.failures.append(f"{len(left)} file(s) left in <spool>/tmp")
            echo = sorted(run.echo_s)
            print(json.dumps({
                "seed": seed, "cases": args.cases, "seconds": round(seconds, 1), "failures": len(run.failures),
                "first_failures": run.failures[:10], "acknowledged_and_verified": len(run.acked),
                "echo_checkpoints": len(echo), "echo_max_s": round(echo[-1], 3) if echo else None,
                "echo_median_s": round(echo[len(echo) // 2], 3) if echo else None,
                "rss_mb": {"start": round(rss0 / 1024, 1), "end": round(rss / 1024, 1), "peak": round(hwm / 1024, 1)},
                "threads_at_end": threads, "stats": dict(sorted(run.stats.items())),
            }), flush=True)
            broken = broken or bool(run.failures)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
