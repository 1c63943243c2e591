"""Fuzzing kept as a test (``tests.node.nodetest_fuzz``): a seeded, bounded run of mutated C-STOREs and malformed
upper-layer traffic against the in-process Storage SCP. Every C-STORE gets a documented status, a C-ECHO is
answered after every batch, every instance acknowledged with Success is in the spool with its bytes, and nothing is
left behind (partial files, association threads). ``bench/fuzz_node.py`` runs thousands of cases by hand."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pytest

from node.scp import StorageSCP
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_fuzz import FuzzRun

CASES = 400
SEED = 16


@pytest.mark.timeout(240)
def test_fuzz_store_and_upper_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received = tmp_path / "received"
    received.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(received))  # pynetdicom's data set files, as ``serve`` does
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="0.0.0.0", port=0, metrics_port=None,
                            network_timeout_s=3, dimse_timeout_s=3, association_request_timeout_s=2,
                            max_associations=50)
    spool = Spool(settings.spool_dir)
    scp = StorageSCP(settings, spool)
    threads_before = threading.active_count()
    scp.start()
    try:
        t0 = time.monotonic()
        run = FuzzRun(scp.port, SEED).run(CASES)
        seconds = time.monotonic() - t0
        run.verify_spool(spool)
        assert run.failures == [], run.failures[:20]
        stores = {k: v for k, v in run.stats.items() if k.startswith("store:")}
        wires = sum(v for k, v in run.stats.items() if k.startswith("wire:"))
        assert sum(stores.values()) + wires == CASES
        # The mutations reach every outcome: stored, refused as not matching, refused as not understood.
        assert all(stores.get(f"store:0x{s:04X}", 0) > 5 for s in (0x0000, 0xA900, 0xC210)), stores
        assert len(run.acked) == stores["store:0x0000"] and len(run.echo_s) >= CASES // 25
        assert max(run.echo_s) < 5.0, run.echo_s
        deadline = time.monotonic() + 15  # fuzz connections end by themselves (timeouts of 2-3 s)
        while (list(received.iterdir()) or threading.active_count() > threads_before + 5) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(received.iterdir()) == [], "no partial data set file is left"
        assert threading.active_count() <= threads_before + 5, threading.active_count()
        print(f"fuzz: {CASES} cases in {seconds:.1f} s, {dict(sorted(run.stats.items()))}")
    finally:
        scp.stop()
