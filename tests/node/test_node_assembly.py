"""Unit tests of study assembly (stable-study detection, release markers, late instances), dispatch
retries, the supersede rule, and the outbox sweep. A stand-in ``analyze`` is used here only; the
integration tests (test_node_e2e.py, test_node_kill9.py) run the real ``pipelines.analyze``."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest

from node.assembly import Assembler
from node.settings import NodeSettings
from node.spool import Spool, StudyState, header_from_dataset
from node.tasks import run_analysis
from pipelines import Analysis
from tests.node.nodetest_data import make_image


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class RecordingDispatcher:
    def __init__(self) -> None:
        self.analyses: list[tuple[str, int]] = []
        self.deliveries: list[tuple[str, str]] = []
        self.down = False

    def analyze(self, study_uid: str, generation: int) -> str:
        if self.down:
            raise ConnectionError("broker down")
        self.analyses.append((study_uid, generation))
        return f"task-{len(self.analyses)}"

    def deliver(self, study_uid: str, destination: str) -> str:
        self.deliveries.append((study_uid, destination))
        return "d"


def _store(spool: Spool, ds, t: float, assoc: str = "") -> None:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    spool.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data))), assoc_id=assoc, now=t)


@pytest.fixture
def env(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    clock = Clock()
    settings = NodeSettings(spool_dir=tmp_path / "spool", stable_age_s=5, open_association_age_s=60, metrics_port=None,
                            dispatch_at_release=False)
    disp = RecordingDispatcher()
    return spool, clock, Assembler(spool, settings, disp, clock=clock), disp


def test_waits_for_release_then_stable_age(env) -> None:
    spool, clock, asm, disp = env
    study = pydicom.uid.generate_uid()
    spool.open_association("a1", "PACS", "127.0.0.1", now=clock.t)
    _store(spool, make_image(study), clock.t, "a1")
    _store(spool, make_image(study), clock.t + 1, "a1")
    clock.t += 20
    assert asm.tick() == [], "association still open: not complete"
    spool.close_association("a1", "released", now=clock.t)
    assert asm.tick() == [], "the release grace (0.5 s) first"
    assert asm.wait_s(0.5) == pytest.approx(0.5)
    clock.t += 0.5
    assert asm.tick() == [study]
    assert disp.analyses == [(study, 2)]
    assert spool.study(study).state == StudyState.QUEUED
    clock.t += 100
    assert asm.tick() == [], "dispatched once"


@pytest.fixture
def defaults(tmp_path: Path):
    """The default assembly settings but the grace waited for before the dispatch (``dispatch_at_release`` False):
    dispatch 0.5 s after the release, no stable age."""
    spool = Spool(tmp_path / "spool")
    clock = Clock()
    disp = RecordingDispatcher()
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None, dispatch_at_release=False)
    assert (settings.release_grace_s, settings.stable_age_s, settings.open_association_age_s) == (0.5, 0.0, 60.0)
    return spool, clock, Assembler(spool, settings, disp, clock=clock), disp


@pytest.fixture
def at_release(tmp_path: Path):
    """The default assembly settings: dispatch at the release, the worker holds the results for the 0.5 s grace."""
    spool = Spool(tmp_path / "spool")
    disp = RecordingDispatcher()
    settings = NodeSettings(spool_dir=tmp_path / "spool", metrics_port=None)
    assert settings.dispatch_at_release and settings.release_grace_s == 0.5
    return spool, Assembler(spool, settings, disp), disp, settings


def test_released_study_is_dispatched_after_the_grace_not_a_fixed_quiet_period(defaults) -> None:
    spool, clock, asm, disp = defaults
    study = pydicom.uid.generate_uid()
    spool.open_association("a1", "PACS", "127.0.0.1", now=clock.t)
    for i in range(3):
        _store(spool, make_image(study, seed=i), clock.t + 0.1 * i, "a1")
    assert asm.wait_s(0.5) == 0.5, "an open association: nothing due before the next regular tick"
    spool.close_association("a1", "released", now=clock.t + 0.3)
    clock.t += 0.7
    assert asm.tick() == [] and asm.wait_s(0.5) == pytest.approx(0.1)
    clock.t += 0.1
    assert asm.tick() == [study] and disp.analyses == [(study, 3)]


def test_a_second_association_within_the_grace_joins_the_same_dispatch(defaults) -> None:
    spool, clock, asm, disp = defaults
    study = pydicom.uid.generate_uid()
    spool.open_association("a1", "PACS", "127.0.0.1", now=clock.t)
    _store(spool, make_image(study, seed=1), clock.t, "a1")
    spool.close_association("a1", "released", now=clock.t + 0.1)
    spool.open_association("a2", "PACS", "127.0.0.1", now=clock.t + 0.3)
    _store(spool, make_image(study, seed=2), clock.t + 0.4, "a2")
    clock.t += 1.0
    assert asm.tick() == [], "the second association is still open"
    spool.close_association("a2", "released", now=clock.t)
    clock.t += 0.5
    assert asm.tick() == [study] and disp.analyses == [(study, 2)]
    # an instance after the dispatch still re-triggers, 0.5 s after its own association's release
    spool.open_association("a3", "PACS", "127.0.0.1", now=clock.t + 5)
    _store(spool, make_image(study, seed=3), clock.t + 5, "a3")
    spool.close_association("a3", "released", now=clock.t + 5.1)
    clock.t += 5.5
    assert asm.tick() == []
    clock.t += 0.1
    assert asm.tick() == [study] and disp.analyses == [(study, 2), (study, 3)]


def _one_per_instance(study: str, during=None):  # noqa: ANN001, ANN202 - a stand-in analyze
    def stand_in(st, history):  # noqa: ARG001 - one result object per instance, new UIDs each analysis
        if during is not None:
            during()
        objs = [make_image(study, modality="OT", sop_class="1.2.840.10008.5.1.4.1.1.7") for _ in st.instances]
        return Analysis(st.study_uid, objects=objs)

    return stand_in


def _released(spool: Spool, asm: Assembler, ago_s: float = 0.0) -> str:
    """A new study: one instance over association a1, released ``ago_s`` seconds ago; dispatched at the release."""
    study = pydicom.uid.generate_uid()
    spool.open_association("a1", "PACS", "127.0.0.1")
    _store(spool, make_image(study, seed=1), time.time() - ago_s, "a1")
    spool.close_association("a1", "released", now=time.time() - ago_s)
    assert asm.tick() == [study], "dispatched at the release, no grace first"
    return study


def test_dispatched_at_the_release_and_results_held_for_the_rest_of_the_grace(at_release) -> None:
    spool, asm, disp, settings = at_release
    study = _released(spool, asm)
    released = time.time()
    assert disp.analyses == [(study, 1)]
    report = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study),
                          release_grace_s=settings.release_grace_s)
    assert report["generation"] == 1 and report["queued"]
    assert time.time() - released >= settings.release_grace_s - 0.05, "nothing stored before the grace was over"
    rows = spool.pending_outbox(study)
    assert len(rows) == 1 and rows[0].created_at >= released + settings.release_grace_s - 0.05
    assert spool.study_stages(study, 1)["hold"] > 0.2


def test_a_second_association_within_the_grace_sets_the_analysis_aside(at_release) -> None:
    spool, asm, disp, settings = at_release
    study = _released(spool, asm)

    def second_association() -> None:  # the sender's next association, while the worker analyses
        spool.open_association("a2", "PACS", "127.0.0.1")
        _store(spool, make_image(study, seed=2), time.time(), "a2")

    report = run_analysis(spool, ["pacs", "archive"], study, analyze=_one_per_instance(study, second_association),
                          attempt_id="task-1", release_grace_s=settings.release_grace_s)
    assert report["generation"] is None and not report["queued"] and "release grace" in report["set_aside"]
    assert spool.outbox(study) == [], "nothing of the analysis set aside was queued"
    row = spool.study(study)
    assert (row.generation, row.analyzed_generation, row.state) == (2, 0, StudyState.RECEIVING)
    assert asm.tick() == [], "the second association is still open"
    spool.close_association("a2", "released")
    assert asm.tick() == [study] and disp.analyses == [(study, 1), (study, 2)]
    report = run_analysis(spool, ["pacs", "archive"], study, analyze=_one_per_instance(study), attempt_id="task-2",
                          release_grace_s=settings.release_grace_s)
    assert report["generation"] == 2 and report["objects"] == 2 and report["queued"]
    assert len(spool.pending_outbox(study)) == 4 and spool.study(study).state == StudyState.DONE


def test_a_second_association_still_sending_sets_the_analysis_aside_uncounted(at_release) -> None:
    spool, asm, disp, settings = at_release
    study = _released(spool, asm)
    spool.open_association("a2", "PACS", "127.0.0.1")  # the next association began before the worker did
    _store(spool, make_image(study, seed=2), time.time(), "a2")
    report = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study), attempt_id="task-1",
                          release_grace_s=settings.release_grace_s)
    assert report["generation"] is None and "still sending" in report["set_aside"] and spool.outbox(study) == []
    row = spool.study(study)
    assert (row.state, row.attempts) == (StudyState.RECEIVING, 0), "closed without counting as an attempt"
    assert asm.tick() == []
    spool.close_association("a2", "released")
    assert asm.tick() == [study] and disp.analyses[-1] == (study, 2)
    report = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study), attempt_id="task-2",
                          release_grace_s=settings.release_grace_s)
    assert report["generation"] == 2 and report["objects"] == 2 and report["queued"]


def test_a_study_dispatched_by_open_association_age_is_not_held(at_release) -> None:
    spool, asm, _, settings = at_release
    study = pydicom.uid.generate_uid()
    spool.open_association("keepalive", "PACS", "127.0.0.1")
    _store(spool, make_image(study), time.time() - settings.open_association_age_s - 1, "keepalive")
    assert asm.tick() == [study]
    t = time.time()
    report = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study),
                          release_grace_s=settings.release_grace_s,
                          open_association_age_s=settings.open_association_age_s)
    assert report["generation"] == 1 and report["queued"] and time.time() - t < 0.4


def test_instances_during_or_after_the_analysis(at_release) -> None:
    """Long after the grace: an instance that arrives while the analysis runs (before its results are written)
    sets it aside too; one after the results were written re-triggers the analysis, whose results supersede the
    pending older ones, as without the hold."""
    spool, asm, disp, settings = at_release
    study = _released(spool, asm, ago_s=4.0)

    def during() -> None:
        _store(spool, make_image(study, seed=2), time.time())

    t = time.time()
    r1 = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study, during),
                      release_grace_s=settings.release_grace_s)
    assert time.time() - t < 0.4, "the grace was over long ago: no wait"
    assert r1["generation"] is None and "set_aside" in r1 and spool.outbox(study) == []
    assert asm.tick() == [study] and disp.analyses[-1] == (study, 2)
    r2 = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study), release_grace_s=settings.release_grace_s)
    assert r2["generation"] == 2 and r2["objects"] == 2
    _store(spool, make_image(study, seed=3), time.time())  # after the results were written
    assert asm.tick() == [study] and disp.analyses[-1] == (study, 3)
    r3 = run_analysis(spool, ["pacs"], study, analyze=_one_per_instance(study), release_grace_s=settings.release_grace_s)
    assert r3["generation"] == 3 and r3["objects"] == 3
    assert sorted((r.generation, r.state) for r in spool.outbox(study)) == [(2, "superseded")] * 2 + [(3, "pending")] * 3


def test_stable_age_counts_from_last_instance(env) -> None:
    spool, clock, asm, disp = env
    study = pydicom.uid.generate_uid()
    _store(spool, make_image(study), clock.t)
    clock.t += 4
    _store(spool, make_image(study), clock.t)
    clock.t += 4.9
    assert asm.tick() == []
    clock.t += 0.2
    assert asm.tick() == [study]


def test_open_association_is_not_waited_for_forever(env) -> None:
    spool, clock, asm, _ = env
    study = pydicom.uid.generate_uid()
    spool.open_association("keepalive", "PACS", "127.0.0.1", now=clock.t)
    _store(spool, make_image(study), clock.t, "keepalive")
    clock.t += 59
    assert asm.tick() == []
    clock.t += 2
    assert asm.tick() == [study]


def test_late_instance_redispatches_and_supersedes(env) -> None:
    spool, clock, asm, disp = env
    study = pydicom.uid.generate_uid()
    first = make_image(study)
    _store(spool, first, clock.t)
    clock.t += 10
    assert asm.tick() == [study]

    calls = []

    def stand_in(st, history):  # noqa: ARG001 - one result object per instance, new UIDs each analysis
        calls.append(len(st.instances))
        objs = [make_image(study, modality="OT", sop_class="1.2.840.10008.5.1.4.1.1.7") for _ in st.instances]
        return Analysis(st.study_uid, objects=objs)

    r1 = run_analysis(spool, ["pacs", "archive"], study, analyze=stand_in)
    assert r1["generation"] == 1 and r1["objects"] == 1 and r1["queued"]
    assert len(spool.pending_outbox(study)) == 2  # one object x two destinations
    assert spool.study(study).state == StudyState.DONE

    clock.t += 100
    _store(spool, make_image(study), clock.t)  # a late instance
    assert spool.study(study).state == StudyState.RECEIVING
    clock.t += 10
    assert asm.tick() == [study]
    assert disp.analyses[-1] == (study, 2)
    r2 = run_analysis(spool, ["pacs", "archive"], study, analyze=stand_in)
    assert r2["generation"] == 2 and r2["objects"] == 2
    rows = spool.outbox(study)
    assert {r.state for r in rows if r.generation == 1} == {"superseded"}
    assert {r.state for r in rows if r.generation == 2} == {"pending"}
    assert len(spool.pending_outbox(study)) == 4
    assert calls == [1, 2]
    assert run_analysis(spool, ["pacs"], study, analyze=stand_in)["generation"] is None  # up to date: no-op


def test_older_analysis_finishing_late_is_discarded(env) -> None:
    spool, clock, _, _ = env
    study = pydicom.uid.generate_uid()
    _store(spool, make_image(study), clock.t)
    old_snapshot, old_gen = spool.begin_analysis(study)
    _store(spool, make_image(study), clock.t + 1)
    new_snapshot, new_gen = spool.begin_analysis(study)
    assert (old_gen, new_gen) == (1, 2) and len(new_snapshot.instances) == 2
    obj = make_image(study, modality="OT")
    assert spool.finish_analysis(study, new_gen, [(obj.SOPInstanceUID, obj.SOPClassUID, Path("/x"))], ["pacs"])
    assert not spool.finish_analysis(study, old_gen, [("1.2", "1.2", Path("/y"))], ["pacs"])
    assert [r.generation for r in spool.pending_outbox(study)] == [2]


def test_unrouted_study_is_skipped_with_reason(env) -> None:
    spool, clock, _, _ = env
    study = pydicom.uid.generate_uid()
    _store(spool, make_image(study, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2", body_part="CHEST",
                             view=""), clock.t)
    report = run_analysis(spool, ["pacs"], study)  # the real pipelines.analyze: routing says no
    row = spool.study(study)
    assert row.state == StudyState.SKIPPED
    assert "modality CT is not DX/CR" in row.reason
    assert report["objects"] == 0 and spool.pending_outbox(study) == []


def test_broker_down_keeps_study_waiting(env) -> None:
    spool, clock, asm, disp = env
    study = pydicom.uid.generate_uid()
    _store(spool, make_image(study), clock.t)
    clock.t += 10
    disp.down = True
    assert asm.tick() == []
    assert spool.study(study).dispatched_generation == 0
    disp.down = False
    assert asm.tick() == [study]


def test_sweep_requeues_lost_deliveries(env) -> None:
    spool, clock, asm, disp = env
    study = pydicom.uid.generate_uid()
    _store(spool, make_image(study), clock.t)
    spool.begin_analysis(study)
    spool.finish_analysis(study, 1, [("1.2.3", "1.2", Path("/x"))], ["pacs"], now=clock.t)
    assert asm.sweep_outbox(300) == []
    clock.t += 301
    assert asm.sweep_outbox(300) == [(study, "pacs")]
    assert asm.sweep_outbox(300) == [], "touched: not re-queued again at once"


def test_real_scp_release_markers_and_late_instance(tmp_path: Path) -> None:
    """The in-process node (real SCP, spool, assembler loop, metrics) with a recording dispatcher."""
    import requests

    from node.scu import store_files
    from node.service import Node
    from tests.node.nodetest_data import write_image
    from tests.services import free_port

    metrics_port = free_port()
    settings = NodeSettings(spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, metrics_port=metrics_port)
    disp = RecordingDispatcher()
    from prometheus_client import REGISTRY

    def received() -> float:
        return REGISTRY.get_sample_value("cspine_instances_received_total", {"outcome": "new"}) or 0.0

    before = received()
    node = Node(settings, dispatcher=disp, start_worker=False).start()
    try:
        study = pydicom.uid.generate_uid()
        first = [write_image(tmp_path / f"a{i}.dcm", make_image(study, seed=i)) for i in range(2)]
        assert store_files(first, "127.0.0.1", node.port) == [0, 0]
        _wait(lambda: disp.analyses == [(study, 2)], "first dispatch")
        late = write_image(tmp_path / "late.dcm", make_image(study, seed=9))
        assert store_files([late], "127.0.0.1", node.port) == [0]
        _wait(lambda: disp.analyses == [(study, 2), (study, 3)], "re-dispatch after a late instance")
        assert all(a["closed_at"] is not None for a in node.spool._db().execute("SELECT * FROM associations"))
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert received() - before == 3 and 'cspine_instances_received_total{outcome="new"}' in text
        assert 'cspine_studies{state="queued"} 1.0' in text
    finally:
        node.stop()


def _wait(pred, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
