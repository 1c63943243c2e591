"""``cspine-node demo``: the whole node on one machine in one command.

Starts the embedded node (embedded broker + worker, temporary spool unless ``--spool``), generates a
phantom lateral cervical study (neutral, flexion, extension; ``pipelines.xray.phantom``), sends it to
the node by C-STORE, waits until the study is analysed, and prints the summary and where the result
objects were written (the spool's outbox). No destinations are configured, so nothing leaves the machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def run_demo(spool: Path | None = None, seed: int = 0, timeout_s: float = 600.0, port: int = 0) -> int:
    from node.logs import setup_logging
    from node.scu import store_files
    from node.service import Node
    from node.settings import NodeSettings
    from pipelines.xray.phantom import generate_study, write_study

    work = Path(tempfile.mkdtemp(prefix="cspine-demo-"))
    spool = Path(spool) if spool else work / "spool"
    settings = NodeSettings(spool_dir=spool, host="127.0.0.1", port=port, stable_age_s=2.0, metrics_port=None,
                            destinations=[], log_json=False, log_level="WARNING")
    setup_logging(settings.log_level, settings.log_json)
    node = Node(settings).start()
    try:
        print(f"node {settings.ae_title} listening on 127.0.0.1:{node.port}, spool {node.spool.root}")
        phantom = generate_study(seed)
        paths = write_study(phantom, work / "phantom")
        print(f"phantom study {phantom.study_uid}: {len(paths)} DX files in {paths[0].parent}")
        t0 = time.monotonic()
        statuses = store_files(paths, "127.0.0.1", node.port, called_aet=settings.ae_title, calling_aet="DEMO")
        print("C-STORE statuses: " + ", ".join(f"0x{s:04X}" for s in statuses))
        deadline = time.monotonic() + timeout_s
        row = None
        while time.monotonic() < deadline:
            row = node.spool.study(phantom.study_uid)
            if row is not None and row.state in {"done", "skipped", "failed"} and row.analyzed_generation >= row.generation:
                break
            if row is not None and row.state == "failed":
                break
            time.sleep(0.5)
        if row is not None and row.state == "failed":
            print(f"analysis failed (dead letter): {row.reason}")
            return 1
        if row is None or row.state not in {"done", "skipped"}:
            print(f"study not analysed within {timeout_s:.0f} s (state: {row.state if row else 'unknown'})")
            return 1
        print(f"analysed in {time.monotonic() - t0:.1f} s after the C-STORE began")
        print(row.summary or f"not analysed: {row.reason}")
        out = node.spool.outbox_path(phantom.study_uid, row.analyzed_generation, "x").parent
        print(f"result objects in {out}:")
        for f in sorted(out.iterdir()):
            print(f"  {f.name}")
        return 0
    finally:
        node.stop()
