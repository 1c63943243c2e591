"""A worker is ready only after its models are loaded and warmed: its status file says so, and
``health --role worker`` is unhealthy ("warming up") until then."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from node import tasks
from node.health import check_worker, worker_nodename
from node.settings import NodeSettings
from node.worker_status import read_statuses
from pipelines.interfaces import KeypointPrediction, ModelSet
from pipelines.results import AlgorithmInfo


class _SlowKeypoints:
    """A keypoint model whose first forward waits until the test lets it go."""

    algorithm = AlgorithmInfo("fake-keypoints", "1")

    def __init__(self) -> None:
        self.called = threading.Event()
        self.release = threading.Event()

    def predict(self, image: np.ndarray) -> KeypointPrediction:
        self.called.set()
        assert self.release.wait(30)
        return KeypointPrediction(np.zeros((30, 2)), np.ones(30))


def test_health_says_ready_only_after_the_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.registry

    model = _SlowKeypoints()
    monkeypatch.setattr(models.registry, "build_models", lambda *a, **k: ModelSet(keypoints=model))
    monkeypatch.setattr(tasks, "_state", {**tasks._state})  # this process's worker state, restored after the test
    settings = NodeSettings(spool_dir=tmp_path / "spool", device="cpu", metrics_port=None)
    name = worker_nodename("w1@host")
    worker = threading.Thread(target=tasks.configure_worker, args=(settings,),
                              kwargs={"queues": ["cspine"], "pool": "solo", "hostname": name})
    worker.start()
    try:
        assert model.called.wait(30)
        ok, why = check_worker(settings, hostname="w1@host")
        assert not ok and "warming up" in why, why
        (st,) = read_statuses(settings.spool_dir)
        assert st["hostname"] == name and st["ready"] is False
    finally:
        model.release.set()
        worker.join(30)
    (st,) = read_statuses(settings.spool_dir)
    assert st["ready"] is True and set(st["warmup_s"]) == {"keypoints", "encode"}
    ok, why = check_worker(settings, hostname="w1@host")
    assert ok and "ready" in why, why
    assert tasks.worker_models().keypoints is model


def test_worker_sets_its_torch_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import models.registry

    monkeypatch.setattr(models.registry, "build_models", lambda *a, **k: ModelSet())
    monkeypatch.setattr(tasks, "_state", {**tasks._state})
    before = torch.get_num_threads()
    try:
        for threads, expected in ((1, 1), (2, 2), (0, 2)):  # 0: left as it is
            tasks.configure_worker(NodeSettings(spool_dir=tmp_path / "spool", device="cpu", metrics_port=None,
                                                torch_threads=threads), queues=["cspine"], pool="solo")
            assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_the_collector_is_on_again_once_ready_and_a_failed_encoding_warm_up_does_not_stop_the_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """``cspine-node worker`` turns the cyclic garbage collector off while it loads; ``configure_worker`` turns it
    on again once the worker is ready. The encoder's warm-up runs in a thread: its error is logged, and the worker
    is ready all the same (without an ``encode`` warm-up time)."""
    import gc

    import models.registry
    import pipelines.dicom_out.warmup

    def broken() -> float:
        raise RuntimeError("no fonts (test)")

    monkeypatch.setattr(models.registry, "build_models", lambda *a, **k: ModelSet())
    monkeypatch.setattr(pipelines.dicom_out.warmup, "warm_up", broken)
    monkeypatch.setattr(tasks, "_state", {**tasks._state})
    gc.disable()
    try:
        status = tasks.configure_worker(NodeSettings(spool_dir=tmp_path / "spool", device="cpu", metrics_port=None),
                                        queues=["cspine"], pool="solo")
        assert gc.isenabled()
    finally:
        gc.enable()
    assert status.ready and "encode" not in status.warmup_s
    assert any("encoding warm-up failed" in r.getMessage() or "no fonts (test)" in str(r.__dict__)
               for r in caplog.records)
