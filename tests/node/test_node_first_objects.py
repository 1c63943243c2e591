"""The SR and SEGs of an analysis go out first (``node.tasks.FirstObjects``, ``Spool.queue_first``): written and
queued as soon as they are encoded and sent while the worker encodes the rest, so the radiologist's key results
reach the PACS before the report is rendered. Every object is still delivered exactly once; the first objects of
an attempt that died are superseded by the next attempt, and the stale-delivery sweep leaves an unfinished
analysis's rows to that analysis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.presentation import build_context

from node import fanout, tasks
from node.settings import Destination, NodeSettings
from node.spool import OutboxState, Spool, header_from_dataset
from tests.node.nodetest_data import make_image, phantom_study_files
from tests.services import free_port

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _analysing(sp: Spool) -> tuple[str, int]:
    src = make_image()
    buf = BytesIO()
    src.save_as(buf, enforce_file_format=True)
    sp.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))))
    _, gen = sp.begin_analysis(src.StudyInstanceUID, attempt_id="attempt-1")
    return str(src.StudyInstanceUID), gen


def _objs(prefix: str, n: int) -> list[tuple[str, str, Path]]:
    return [(f"{prefix}.{i}", SR_CLASS, Path(f"/nowhere/{prefix}{i}")) for i in range(n)]


def test_first_objects_are_queued_once_and_ahead_of_the_rest(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    study, gen = _analysing(sp)
    first, rest = _objs("1.2.3", 2), _objs("1.2.4", 3)
    assert sp.queue_first(study, gen, first, ["pacs", "archive"], attempt_id="attempt-1")
    assert sp.stale_outbox(0.0, now=time.time() + 1) == []  # the analysis is running: not the sweep's
    assert sp.finish_analysis(study, gen, first + rest, ["pacs", "archive"], queued_first={u for u, _, _ in first})
    for dest in ("pacs", "archive"):
        rows = sp.pending_outbox(study, dest)
        assert [r.sop_instance_uid for r in rows] == [u for u, _, _ in first + rest]
    assert sorted(sp.stale_outbox(0.0, now=time.time() + 1)) == [(study, "archive"), (study, "pacs")]


def test_a_dead_attempts_first_objects_are_superseded_by_the_next_attempt(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    study, gen = _analysing(sp)
    dead = _objs("1.2.5", 2)
    assert sp.queue_first(study, gen, dead, ["pacs"], attempt_id="attempt-1")
    sp.mark_sent([sp.pending_outbox(study, "pacs")[0].id])  # one of them reached the PACS before the worker died
    assert not sp.queue_first(study, gen, _objs("1.2.9", 1), ["pacs"], attempt_id="someone-else")
    sp.requeue_unfinished(lost_attempts=True)  # the worker died with its attempt open
    _, gen2 = sp.begin_analysis(study, time.time() + 600, attempt_id="attempt-2")  # the retry, after its backoff
    assert gen2 == gen
    assert not sp.queue_first(study, gen, _objs("1.2.9", 1), ["pacs"], attempt_id="attempt-1")  # not its own
    again, rest = _objs("1.2.6", 2), _objs("1.2.7", 1)
    assert sp.queue_first(study, gen, again, ["pacs"], attempt_id="attempt-2")
    assert sp.finish_analysis(study, gen, again + rest, ["pacs"], queued_first={u for u, _, _ in again})
    states = {r.sop_instance_uid: r.state for r in sp.outbox(study)}
    assert states == {"1.2.5.0": OutboxState.SENT, "1.2.5.1": OutboxState.SUPERSEDED,
                      "1.2.6.0": OutboxState.PENDING, "1.2.6.1": OutboxState.PENDING, "1.2.7.0": OutboxState.PENDING}


def test_finish_without_first_objects_supersedes_a_dead_attempts_rows(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    study, gen = _analysing(sp)
    assert sp.queue_first(study, gen, _objs("1.2.5", 2), ["pacs"], attempt_id="attempt-1")
    assert sp.finish_analysis(study, gen, _objs("1.2.8", 2), ["pacs"])  # e.g. a worker that does not deliver
    assert [r.sop_instance_uid for r in sp.pending_outbox(study, "pacs")] == ["1.2.8.0", "1.2.8.1"]


class _Pacs:
    """A C-STORE SCP (pynetdicom) recording what it stored, per association, and when the SR and a SEG are in."""

    def __init__(self) -> None:
        self.associations: list[list[tuple[str, str]]] = []
        self._of: dict[int, list[tuple[str, str]]] = {}  # by association: the SR and the SEGs come on two at once
        self._lock = threading.Lock()
        self.key_results_in = threading.Event()
        ae = AE(ae_title="PACS")
        contexts = [build_context(c.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
                    for c in AllStoragePresentationContexts]
        ae.supported_contexts = contexts
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_REQUESTED, self._open), (evt.EVT_C_STORE, self._store)])

    def _open(self, event: evt.Event) -> None:
        with self._lock:
            self._of[id(event.assoc)] = []
            self.associations.append(self._of[id(event.assoc)])

    def _store(self, event: evt.Event) -> int:
        ds = event.dataset
        with self._lock:
            self._of[id(event.assoc)].append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
            classes = {c for a in self.associations for c, _ in a}
        if {SR_CLASS, SEG_CLASS} <= classes:
            self.key_results_in.set()
        return 0x0000

    def stored(self) -> list[tuple[str, str]]:
        return [x for a in self.associations for x in a]


@pytest.fixture
def pacs() -> Iterator[_Pacs]:
    p = _Pacs()
    yield p
    p.server.shutdown()


def test_sr_and_seg_reach_the_pacs_while_the_report_is_still_being_rendered(
        tmp_path: Path, pacs: _Pacs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real worker path (``run_analysis`` with the shipped models, a phantom study, a real DIMSE peer): the
    report renderer waits until the PACS holds the SR and a SEG, so the test fails if they are sent only after the
    whole encoding. Then the rest is delivered as after every analysis; each object arrives exactly once."""
    import pipelines.dicom_out as dicom_out
    from models.registry import build_models

    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, destinations=[
        Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=pacs.port, timeout_s=30)])
    sp = Spool(settings.spool_dir)
    study_uid, files = phantom_study_files(tmp_path / "in", seed=5, shape=(640, 576))
    for f in files:
        data = f.read_bytes()
        sp.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data))))
    models = build_models(settings.model)
    monkeypatch.setattr(tasks, "worker_models", lambda: models)
    render, waited = dicom_out.render, []

    def render_after_key_results(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        waited.append(pacs.key_results_in.wait(60))
        return render(*args, **kwargs)

    monkeypatch.setattr(dicom_out, "render", render_after_key_results)
    report = tasks.run_analysis(sp, ["pacs"], study_uid, attempt_id="task-1",
                                send_first=lambda uids: fanout.attempt_all(sp, settings, study_uid, ["pacs"], only=uids))
    assert waited == [True]  # the SR and a SEG were in the PACS before the report was rendered
    assert report["queued"] and report["objects"] >= 8
    assert fanout.attempt_all(sp, settings, study_uid, ["pacs"]) == {}  # the rest, as after every analysis
    assert [{c for c, _ in a} for a in pacs.associations[:2]] == [{SR_CLASS}, {SEG_CLASS}]  # the SR first, alone
    stored = [uid for _, uid in pacs.stored()]
    rows = sp.outbox(study_uid)
    assert sorted(stored) == sorted(r.sop_instance_uid for r in rows)  # every object once
    assert {r.state for r in rows} == {OutboxState.SENT}
    assert "first" in sp.study_stages(study_uid, report["generation"])


def test_each_hand_out_is_sent_by_its_own_thread_with_only_its_own_objects(tmp_path: Path) -> None:
    """The SR, then the SEGs of each pipeline and the patient-level SR are handed out separately: each hand-out is
    queued and sent at once by a thread of its own (here three sends run at the same time: the barrier), and each
    send is given only its own objects' UIDs, so two sends never take the same pending rows; ``join`` returns once
    everything queued was sent."""
    sp = Spool(tmp_path / "spool")
    study, gen = _analysing(sp)
    together = threading.Barrier(3, timeout=30)
    taken: list[list[str]] = []
    lock = threading.Lock()

    def send(uids: frozenset[str]) -> None:
        try:
            together.wait()
            rows = [r for r in sp.pending_outbox(study, "pacs") if r.sop_instance_uid in uids]
            with lock:
                taken.append(sorted(r.sop_instance_uid for r in rows))
            sp.mark_sent([r.id for r in rows])
        finally:
            sp.close()  # this thread's connection

    first = tasks.FirstObjects(sp, study, gen, ["pacs"], "attempt-1", send)
    images = [make_image(study, seed=i) for i in range(3)]
    for image in images:
        first([image])
    first.join()
    assert sorted(taken) == sorted([str(image.SOPInstanceUID)] for image in images)  # each its own, none twice
    assert len(first.queued) == 3 and {r.state for r in sp.outbox(study)} == {OutboxState.SENT}
