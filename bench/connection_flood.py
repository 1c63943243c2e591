"""Connection flood: silent and half-open TCP connections against the Storage SCP, C-ECHO latency meanwhile.

    .venv/bin/python bench/connection_flood.py [--connections 100] [--deadline 5] [--per-host 8] [--echoes 10]
                                               [--echo-tool pynetdicom|echoscu]

Starts an in-process ``StorageSCP`` on loopback (``allowed_hosts = ["127.0.0.1"]``), opens ``--connections`` raw
sockets from 127.0.0.2, 127.0.0.3, ... (``--per-host`` from each address, so none is refused at once), half of them
silent and half holding a partial A-ASSOCIATE-RQ (a PDU header declaring 256 bytes, then 2 bytes), then sends
``--echoes`` C-ECHOs from 127.0.0.1 (pynetdicom, or DCMTK ``echoscu``) while they are open, and reports the
C-ECHO latencies and when the node closed each socket (seconds after its connect). It then opens ``--per-host`` + 20
more from one address and reports how many were closed at once (the per-address cap). Target (issue 16): every
C-ECHO under 2 s, every socket closed within the deadline.
"""

from __future__ import annotations

import argparse
import json
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARTIAL_RQ = b"\x01\x00\x00\x00\x01\x00\x00\x01"


def _connect(port: int, source: str, payload: bytes = b"") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if payload:
        s.sendall(payload)
    return s


def _closed_at(socks: list[socket.socket], until: float) -> dict[int, float]:
    closed: dict[int, float] = {}
    index = {s: i for i, s in enumerate(socks)}
    while len(closed) < len(socks) and time.monotonic() < until:
        ready, _, _ = select.select([s for s in socks if index[s] not in closed], [], [], 0.05)
        for s in ready:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed[index[s]] = time.monotonic()
    return closed


def _echo(port: int, tool: str) -> float:
    t0 = time.monotonic()
    if tool == "echoscu":
        subprocess.run(["echoscu", "-aec", "CSPINE", "-to", "10", "127.0.0.1", str(port)], check=True, timeout=15)
    else:
        from node.scu import echo

        if echo("127.0.0.1", port, timeout_s=10) != 0:
            raise RuntimeError("C-ECHO failed")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--deadline", type=float, default=5.0)
    ap.add_argument("--per-host", type=int, default=8)
    ap.add_argument("--echoes", type=int, default=10)
    ap.add_argument("--echo-tool", choices=("pynetdicom", "echoscu"), default="pynetdicom")
    args = ap.parse_args()
    if args.echo_tool == "echoscu" and not shutil.which("echoscu"):
        sys.exit("echoscu (DCMTK) is not installed")

    from node.logs import setup_logging
    from node.scp import StorageSCP
    from node.settings import NodeSettings
    from node.spool import Spool

    setup_logging("ERROR", json_lines=False)
    with tempfile.TemporaryDirectory() as tmp:
        settings = NodeSettings(spool_dir=Path(tmp), host="127.0.0.1", port=0, metrics_port=None,
                                allowed_hosts=["127.0.0.1"], association_request_timeout_s=args.deadline,
                                max_pending_per_host=args.per_host)
        scp = StorageSCP(settings, Spool(settings.spool_dir))
        scp.start()
        socks, opened = [], []
        try:
            for i in range(args.connections):
                host = f"127.0.0.{2 + i // args.per_host}"
                socks.append(_connect(scp.port, host, PARTIAL_RQ if i % 2 else b""))
                opened.append(time.monotonic())
            for _ in range(40):  # the accept loop may lag the client's connect() by a little
                if scp.pending.count() >= args.connections:
                    break
                time.sleep(0.05)
            pending = scp.pending.count()
            echoes = [_echo(scp.port, args.echo_tool) for _ in range(args.echoes)]
            closed = _closed_at(socks, opened[-1] + args.deadline + 10.0)
            after = [closed[i] - opened[i] for i in closed]
            burst = [_connect(scp.port, "127.0.0.250") for _ in range(args.per_host + 20)]
            shut_at_once = len(_closed_at(burst, time.monotonic() + 1.0))
            report = {
                "connections": args.connections, "pending_seen_by_node": pending, "deadline_s": args.deadline,
                "echo_tool": args.echo_tool, "echo_s_max": round(max(echoes), 3),
                "echo_s_median": round(statistics.median(echoes), 3),
                "closed": len(closed), "closed_after_connect_s_min": round(min(after), 2) if after else None,
                "closed_after_connect_s_max": round(max(after), 2) if after else None,
                "burst_from_one_address": len(burst), "burst_closed_within_1s": shut_at_once,
                "expected_closed_at_once": len(burst) - args.per_host,
            }
            for s in burst:
                s.close()
        finally:
            for s in socks:
                s.close()
            scp.stop()
    print(json.dumps(report, indent=2))
    ok = report["echo_s_max"] < 2.0 and report["closed"] == args.connections and \
        (report["closed_after_connect_s_max"] or 0) <= args.deadline + 0.5
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
