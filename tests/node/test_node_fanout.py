"""Deliveries to several destinations at once (``node.fanout``): the first attempt runs in parallel inside the
worker that analysed the study; a destination that fails keeps its rows pending and gets its own delivery task
(own retries), the others are done."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from node import fanout, tasks
from node.deliver import SENDERS, Attempt
from node.settings import Destination, DestinationKind, NodeSettings
from node.spool import Spool


class _Sender:
    """Acknowledges every row, or fails them all; with a ``barrier``, only once every destination is being sent
    to at the same moment (a sequential delivery breaks the barrier)."""

    def __init__(self, fail: bool = False, barrier: threading.Barrier | None = None) -> None:
        self.fail, self.barrier = fail, barrier

    def send(self, dest: Destination, rows: list, *, calling_aet: str, on_sent=None) -> Attempt:  # noqa: ANN001
        if self.barrier is not None:
            self.barrier.wait()
        if self.fail:
            return Attempt(failed=[r.id for r in rows], error="destination unreachable (test)")
        return Attempt(sent=[r.id for r in rows])


def _queued_study(sp: Spool, destinations: list[str]) -> str:
    study = "1.2.826.0.1.3680043.10.511.99.1"
    sp._db().execute("INSERT INTO studies(study_uid, state, generation, first_received_at, last_received_at)"
                     " VALUES (?, 'analyzing', 1, 1, 1)", (study,))
    sp.finish_analysis(study, 1, [(f"1.2.3.{i}", "1.2.840.10008.5.1.4.1.1.88.34", Path(f"/x{i}")) for i in range(3)],
                       destinations)
    return study


def test_first_attempt_goes_to_every_destination_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, destinations=[
        Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=1),
        Destination(name="archive", kind="stow", url="http://127.0.0.1:1/dicom-web"),
        Destination(name="backup", kind="stow", url="http://127.0.0.2:1/dicom-web")])
    together = threading.Barrier(3, timeout=10)
    monkeypatch.setitem(SENDERS, DestinationKind.DIMSE, _Sender(barrier=together))
    monkeypatch.setitem(SENDERS, DestinationKind.STOW, _Sender(barrier=together))
    sp = Spool(settings.spool_dir)
    study = _queued_study(sp, ["pacs", "archive", "backup"])
    assert fanout.attempt_all(sp, settings, study, ["pacs", "archive", "backup"]) == {}
    assert not together.broken
    assert {r.state for r in sp.outbox(study)} == {"sent"} and len(sp.outbox(study)) == 9
    assert set(sp.study_stages(study, 1)) == {"deliver:pacs", "deliver:archive", "deliver:backup"}


def test_an_attempt_given_uids_sends_only_those_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``only`` (the first objects of one hand-out, ``node.first.FirstObjects``): the other pending rows stay
    pending for the next attempt."""
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, destinations=[
        Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=1),
        Destination(name="archive", kind="stow", url="http://127.0.0.1:1/dicom-web")])
    monkeypatch.setitem(SENDERS, DestinationKind.DIMSE, _Sender())
    monkeypatch.setitem(SENDERS, DestinationKind.STOW, _Sender())
    sp = Spool(settings.spool_dir)
    study = _queued_study(sp, ["pacs", "archive"])
    assert fanout.attempt_all(sp, settings, study, ["pacs", "archive"], only={"1.2.3.0", "1.2.3.2"}) == {}
    for name in ("pacs", "archive"):
        assert [r.sop_instance_uid for r in sp.pending_outbox(study, name)] == ["1.2.3.1"]
    assert fanout.attempt(sp, settings, study, "pacs", only=set()) == (0, None)  # nothing of these: nothing sent
    assert fanout.attempt(sp, settings, study, "pacs") == (1, None)


def test_a_failing_destination_gets_its_own_task_and_the_others_are_done(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, deliver_backoff_max_s=30, destinations=[
        Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=1),
        Destination(name="archive", kind="stow", url="http://127.0.0.1:1/dicom-web")])
    monkeypatch.setitem(SENDERS, DestinationKind.DIMSE, _Sender(fail=True))
    monkeypatch.setitem(SENDERS, DestinationKind.STOW, _Sender())
    monkeypatch.setattr(tasks, "_state", {**tasks._state, "spool": Spool(settings.spool_dir), "status": None})
    sp = tasks._state["spool"]
    study = _queued_study(sp, ["pacs", "archive"])
    queued = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown=None: queued.append((args, countdown)))
    tasks._deliver_results(settings, study, ["pacs", "archive"])
    assert [a for a, _ in queued] == [(study, "pacs")] and 0 < queued[0][1] <= 2  # backoff of a first failure
    rows = {r.destination: r for r in sp.outbox(study)}
    assert rows["archive"].state == "sent"
    assert rows["pacs"].state == "pending" and rows["pacs"].attempts == 1 and "unreachable" in rows["pacs"].last_error


def test_a_worker_that_does_not_deliver_queues_every_destination(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, analyze_queue="cspine.gpu",
                            destinations=[Destination(name="archive", kind="stow", url="http://127.0.0.1:1/x")])
    status = type("S", (), {"queues": ["cspine.gpu"]})()
    monkeypatch.setattr(tasks, "_state", {**tasks._state, "spool": Spool(settings.spool_dir), "status": status})
    queued = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown=None: queued.append((args, countdown)))
    tasks._deliver_results(settings, "1.2.3", ["archive"])
    assert queued == [(("1.2.3", "archive"), None)]
