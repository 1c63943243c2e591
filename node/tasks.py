"""The Celery app and its two tasks: ``cspine.analyze_study`` and ``cspine.deliver``.

Broker choice (one code path for both):

* ``CSPINE_BROKER_URL=redis://...``: Celery with Redis. ``cspine-node serve`` only receives and
  dispatches; ``cspine-node worker`` processes (any number, any machine that mounts the spool) run the
  tasks. Redis keeps unacknowledged messages (``acks_late``) until a worker finishes them.
* No broker URL (the embedded default, one machine, no server): kombu's *filesystem* transport with its
  message folders under ``<spool>/broker`` (each message written whole before it is visible: ``node.broker``),
  and ``serve`` starts one ``cspine-node worker --pool solo`` child process. The same task code runs; only the
  transport differs. That transport removes a message when a worker takes it (no redelivery of its own), so
  durability comes from the spool index, which is the source of truth in both modes: at start-up (and when the
  embedded worker dies) ``serve`` re-queues every study whose newest generation is not analysed, and re-queues
  pending outbox entries. Tasks are idempotent: an analysis of a generation already analysed is a no-op; a
  duplicate delivery re-sends the same SOP Instance UIDs, which a PACS stores once.

Retries use Celery's machinery (``self.retry`` with exponential backoff and a cap); when an analysis or
a delivery exhausts its retries, a dead-letter row is written to the spool index (``status`` shows it).
Analysis attempts are counted in the spool index, not by Celery (``node.spool.attempts``): each attempt is
recorded before the analysis runs, so a worker killed mid-analysis (kill -9, segfault, out of memory) counts too.
With Redis, ``acks_late`` + ``task_reject_on_worker_lost`` deliver the task again, which finds its own attempt
still open, records the death and backs off; the embedded node records the deaths itself when its worker child
dies (``Spool.recover(lost_attempts=True)``) and re-dispatches after the backoff. After ``task_max_retries`` + 1
attempts the study is a dead letter with the reason ("worker died N times during analysis", or the last error).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown

from node import audit, fanout
from node import broker as broker_transport
from node.first import FirstObjects, write_objects
from node.grace import GraceHold, SetAside
from node.logs import log
from node.patients import SpoolHistory, save_results
from node.priors import PriorHistory
from node.settings import NodeSettings, embedded_broker_dir
from node.spool import Spool, write_atomic
from node.spool.attempts import AnalysisAbandoned, AnalysisDeferred, RetryPolicy, backoff
from node.spool.stages import FIRST_QUEUED, HOLD, STORE
from node.worker_status import WorkerStatus
from pipelines.interfaces import ModelSet
from pipelines.study import Study

LOG = logging.getLogger("node.tasks")

ANALYZE_TASK = "cspine.analyze_study"
DELIVER_TASK = "cspine.deliver"

app = Celery("cspine")
_state: dict[str, Any] = {"settings": None, "spool": None, "status": None, "models": None}
_MODELS_LOCK = threading.Lock()


def celery_config(settings: NodeSettings) -> dict[str, Any]:
    """Celery configuration for these settings (embedded filesystem broker or Redis)."""
    conf: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_time_limit": settings.task_time_limit_s,
        "task_default_queue": settings.deliver_queue,
        # Celery routing: analyses to ``analyze_queue`` (the GPU queue where GPU workers exist), deliveries to
        # ``deliver_queue``; a worker consumes the queues given by ``--queues`` / ``worker_queues``.
        "task_routes": {ANALYZE_TASK: {"queue": settings.analyze_queue},
                        DELIVER_TASK: {"queue": settings.deliver_queue}},
        "result_backend": None,
    }
    if settings.embedded_broker:
        broker = embedded_broker_dir(settings.spool_dir)
        for sub in ("queue", "processed", "control"):
            (broker / sub).mkdir(parents=True, exist_ok=True)
        # kombu's filesystem transport, each message written whole before it is visible (``node.broker``); the
        # host is unused, naming it avoids kombu warnings
        conf["broker_url"] = f"{broker_transport.TRANSPORT}://localhost//"
        conf["broker_transport_options"] = {
            "data_folder_in": str(broker / "queue"),
            "data_folder_out": str(broker / "queue"),
            "processed_folder": str(broker / "processed"),
            "control_folder": str(broker / "control"),
            "store_processed": False,
            "polling_interval": 0.05,  # a dispatched study waits at most this long for the worker (s)
        }
        conf["worker_enable_remote_control"] = False
    else:
        conf["broker_url"] = settings.broker_url
        # Task events (sent, received, started, succeeded ...) for Flower; Redis only (the embedded broker has no
        # remote control and no monitor).
        conf["worker_send_task_events"] = True
        conf["task_send_sent_event"] = True
        # Longer than the longest retry countdown, so Redis does not redeliver a task that waits for its ETA.
        conf["broker_transport_options"] = {"visibility_timeout": 3600}
    return conf


def configure(settings: NodeSettings | None = None) -> Celery:
    """Configure the module-level app (and the worker-side settings/spool) from ``settings``."""
    settings = settings or NodeSettings()
    _state["settings"] = settings
    _state["spool"] = None
    _state["models"] = None
    conf = celery_config(settings)
    changed = any(app.conf.get(k) != conf[k] for k in ("broker_url", "broker_transport_options", "task_routes"))
    app.conf.update(conf)
    if changed:
        _forget_publishing_state()
    return app


def _forget_publishing_state() -> None:
    """Drop the connection/producer pools and the router that Celery built for an earlier configuration (a process
    that configures the app twice, e.g. a test, would otherwise publish to the old broker or queues)."""
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
        amqp._rtable = None
        for cached in ("router", "queues"):
            amqp.__dict__.pop(cached, None)


def configure_worker(settings: NodeSettings, *, queues: list[str], pool: str, concurrency: int = 1,
                     hostname: str = "") -> WorkerStatus:
    """Worker side, before the worker consumes: build the models from the settings (device, weights, batching:
    ``models.registry``), warm each with one forward on a synthetic input (``models.warmup``), import the pipelines
    and encode a synthetic result once (``pipelines.dicom_out.warmup``), then mark the worker ready; report this process's status
    (``node.worker_status``) until it stops. With its Celery node name (``hostname``) the status file is written
    at once (not ready), so ``status`` and ``health --role worker`` show a worker that is still loading."""
    from models.registry import build_models
    from models.warmup import warm_up

    t0 = time.perf_counter()
    status = WorkerStatus(settings.spool_dir, device=settings.device, queues=queues, pool=pool,
                          interval_s=settings.worker_status_interval_s)
    if hostname:
        status.hostname = hostname
        _write_status(status)
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)
    # The encoder's first use (highdicom's tables, Pillow's fonts) on a synthetic 64 x 64 result, in a thread beside
    # the models' loading and warm-up (their convolutions leave the interpreter free).
    encoding = _EncodingWarmUp()
    encoding.start()
    # Batching only helps where analyses run concurrently in this process (threads pool, concurrency > 1).
    batch = settings.batch_max_images if pool == "threads" and concurrency > 1 else 1
    with _MODELS_LOCK:
        _state["models"] = build_models(settings.model, store=settings.model_store, batch_max_images=batch,
                                        batch_wait_ms=settings.batch_wait_ms, on_batch=status.record_batch)
    status.record_models([("loaded", a.name, a.version) for a in _state["models"].algorithms()], analysis=False)
    # Imported now, not by the first study: the pipelines, and the senders of its first delivery (pynetdicom's SCU,
    # dicomweb-client: ~0.3 s of imports between its SR being written and sent otherwise).
    import dicomweb_client.api  # noqa: F401

    import node.deliver  # noqa: F401
    import pipelines.mri.pipeline  # noqa: F401
    import pipelines.patient  # noqa: F401
    import pipelines.xray.pipeline  # noqa: F401

    warmed = warm_up(_state["models"])
    pipelines.xray.pipeline.XrayPipeline.warm = True  # its models ran once: the first study may use threads
    encoding.join()
    if encoding.error:
        log(LOG, "encoding warm-up failed", logging.WARNING, error=encoding.error)
    else:
        warmed["encode"] = round(encoding.seconds, 3)
    # What the worker loaded so far (torch and its modules, the models, highdicom's standard tables: ~520 000
    # objects) lives as long as the worker: out of the collector's sight, so that a full collection during an
    # analysis does not walk it again (0.2 s each, one every few studies, measured here). Frozen without a full
    # collection first (0.35 s here, and it found 378 unreachable objects), then collection on again (the
    # ``worker`` command turns it off while it loads).
    gc.freeze()
    gc.enable()
    status.record_ready(warmed)
    if hostname:
        _write_status(status)
    log(LOG, "worker ready", seconds=round(time.perf_counter() - t0, 3), warmup_s=status.warmup_s)
    _state["status"] = status
    return status


class _EncodingWarmUp(threading.Thread):
    """``pipelines.dicom_out.warmup.warm_up`` in a thread: its seconds, or its error (a warm-up never stops a
    worker)."""

    def __init__(self) -> None:
        super().__init__(name="warm-up-encoding", daemon=True)
        self.seconds, self.error = 0.0, ""

    def run(self) -> None:
        try:
            from pipelines.dicom_out.warmup import warm_up as warm_up_encoding

            self.seconds = warm_up_encoding()
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {str(exc)[:300]}"


def _write_status(status: WorkerStatus) -> None:
    try:
        status.write()
    except OSError as exc:  # the heartbeat thread writes it again once the worker consumes
        log(LOG, "worker status not written", logging.WARNING, error=str(exc))


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    status = _state.get("status")
    if status is not None:
        status.start(getattr(sender, "hostname", "") or "")
        log(LOG, "worker consuming", hostname=status.hostname, queues=status.queues, device=status.device,
            pool=status.pool)


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    status = _state.get("status")
    if status is not None:
        status.stop()


def settings() -> NodeSettings:
    if _state["settings"] is None:
        configure()
    return _state["settings"]


def spool() -> Spool:
    if _state["spool"] is None:
        _state["spool"] = Spool(settings().spool_dir, retry=retry_policy(settings()))
    return _state["spool"]


def retry_policy(s: NodeSettings) -> RetryPolicy:
    """Analysis attempts from the settings: ``task_max_retries`` + 1 attempts (worker deaths included), backoff
    capped at ``task_retry_backoff_max_s``; an open attempt older than ``task_time_limit_s`` is dead."""
    return RetryPolicy(max_attempts=s.task_max_retries + 1, backoff_max_s=float(s.task_retry_backoff_max_s),
                       running_for_s=float(s.task_time_limit_s))


# -- the work (plain functions, testable without Celery) ---------------------------------------------


def worker_models() -> ModelSet:
    """The models of this process, built once from the settings (``models.registry``); ``configure_worker``
    builds them at worker start so that a worker is ready before it takes work."""
    with _MODELS_LOCK:
        if _state.get("models") is None:
            from models.registry import build_models

            s = settings()
            _state["models"] = build_models(s.model, store=s.model_store, batch_wait_ms=s.batch_wait_ms)
        return _state["models"]


def _no_analysis(study_uid: str, **why: str) -> dict[str, Any]:
    """The report of a task that analysed nothing (up to date; ``set_aside``; ``dead_letter``: the reason)."""
    return {"study_uid": study_uid, "generation": None, "objects": 0, "skipped": [], "queued": False, "models": [],
            **why}


def run_analysis(sp: Spool, destinations: list[str], study_uid: str, analyze: Any = None, *,
                 patient_window_days: float = 90.0, attempt_id: str = "", prior_destinations: Any = (),
                 calling_aet: str = "CSPINE", send_first: Any = None,
                 release_grace_s: float = 0.0, open_association_age_s: float = 60.0) -> dict[str, Any]:
    """Analyse the newest generation of a study and queue its results for ``destinations``.

    ``analyze(study, history)`` defaults to ``pipelines.analyze`` with this worker's models; ``history`` is the
    node's ``SpoolHistory`` (the patient's other modality within ``patient_window_days``; 0: off). The node only
    stores: the result objects and the patient-level objects (fsync'd, under the outbox), the typed results
    (``node.patients.save_results``), ``summary.txt``; then it records the analysis. An older analysis finishing
    after a newer one is discarded. Returns a small report: ``{"study_uid", "generation", "objects", "skipped",
    "queued", "models"}`` (``models``: ``[pipeline, model, version]`` of every algorithm used).
    ``prior_destinations``: where ``node.priors`` looks for the patient's earlier studies when the index has none
    (the comparison goes into the SR, the report and ``summary.txt``).
    ``attempt_id`` (the task id) names the attempt ``Spool.begin_analysis`` opens; it raises ``AnalysisDeferred`` /
    ``AnalysisAbandoned`` when no attempt may start (``node.spool.attempts``).
    ``send_first`` (with the default ``analyze``): a callable that sends the study's pending results of the SOP
    instance UIDs it is given; each pipeline's SR, then its SEGs, are queued and sent with it as soon as they are
    encoded (``FirstObjects``).
    ``release_grace_s`` (a study dispatched at its release): nothing is written before the grace after the release
    is over (``node.grace.GraceHold``, with ``open_association_age_s``); an analysis set aside (newer instances came,
    or a second association is still sending) closes its attempt uncounted and returns ``generation`` None and
    ``set_aside`` (the reason).
    """
    attempt_id = attempt_id or uuid.uuid4().hex  # known here, so that an analysis set aside can close it
    snap = sp.begin_analysis(study_uid, attempt_id=attempt_id)
    if snap is None:
        log(LOG, "analysis up to date", study_uid=study_uid)
        return _no_analysis(study_uid)
    study, generation = snap
    hold = GraceHold(sp, study_uid, generation, release_grace_s, open_association_age_s)
    first = FirstObjects(sp, study_uid, generation, destinations if send_first is not None else [], attempt_id,
                         send_first, hold)
    if analyze is None:
        import pipelines

        def analyze(study: Study, history: SpoolHistory | None) -> Any:
            return pipelines.analyze(study, worker_models(), history, on_first=first)

    t0 = time.perf_counter()
    try:
        return _analyse_and_store(sp, destinations, study_uid, study, generation, analyze, first, hold, t0,
                                  PriorHistory(sp, patient_window_days, prior_destinations, calling_aet=calling_aet))
    except SetAside as aside:
        sp.set_aside(study_uid, attempt_id)
        return _no_analysis(study_uid, set_aside=str(aside))
    finally:
        first.join()


def _analyse_and_store(sp: Spool, destinations: list[str], study_uid: str, study: Study, generation: int,
                       analyze: Any, first: FirstObjects, hold: GraceHold, t0: float,
                       history: PriorHistory) -> dict[str, Any]:
    analysis = analyze(study, history)
    hold.check()  # when no first objects came: the end of the release grace before anything is written
    t_store = time.perf_counter()
    done = {uid for uid, _, _ in first.written}
    written = first.written + write_objects(sp, study_uid, generation,
                                             [o for o in [*analysis.objects, *analysis.patient_objects]
                                              if str(o.SOPInstanceUID) not in done])
    result_rows = save_results(sp, study_uid, generation, analysis.results,
                               history.identity(study)) if analysis.results else []
    summary = "\n".join(r.summary() for r in analysis.results)
    summary += "".join("\n" + "\n".join(c.lines()) for c in getattr(analysis, "comparisons", []))
    skipped = "; ".join(analysis.skipped)
    if summary or skipped:
        text = summary + ("\nSKIPPED " + skipped if skipped else "")
        write_atomic(text.encode(), sp.outbox_path(study_uid, generation, "x").parent / "summary.txt", sp.tmp_dir)
    queued = sp.finish_analysis(study_uid, generation, written, destinations if written else [],
                                skipped_reason=skipped if not analysis.results else "", summary=summary,
                                results=result_rows, queued_first=first.queued)
    stages = {**getattr(analysis, "timings", {}), STORE: time.perf_counter() - t_store}
    if first.seconds is not None:
        stages[FIRST_QUEUED] = first.seconds
    if hold.waited_s > 0:
        stages[HOLD] = hold.waited_s
    sp.record_stages(study_uid, generation, stages)
    if analysis.skipped:
        log(LOG, "study not analysed" if not analysis.results else "part of study not analysed",
            study_uid=study_uid, generation=generation, reason=skipped)
    for w in analysis.warnings:
        log(LOG, "analysis warning", logging.WARNING, study_uid=study_uid, warning=w[:500])
    if analysis.patient_objects:
        log(LOG, "patient report", study_uid=study_uid, partner_study_uid=analysis.partner_study_uid,
            objects=len(analysis.patient_objects))
    log(LOG, "analysis finished" if queued else "analysis superseded", study_uid=study_uid, generation=generation,
        objects=len(written), pipelines=[str(r.pipeline) for r in analysis.results],
        seconds=round(time.perf_counter() - t0, 3),
        stages={k: round(v, 3) for k, v in sp.study_stages(study_uid, generation).items()})
    models = [[str(r.pipeline), a.name, a.version] for r in analysis.results for a in (r.algorithm, *r.contributors)]
    return {"study_uid": study_uid, "generation": generation, "objects": len(written),
            "skipped": list(analysis.skipped), "queued": queued and bool(written), "models": models}


# -- Celery tasks --------------------------------------------------------------------------------------


class _DeadLetterTask(Task):
    """Records a dead letter when a task fails for good (retries exhausted or not retryable)."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: ANN001
        study_uid = args[0] if args else kwargs.get("study_uid", "")
        if self.name == ANALYZE_TASK:
            row = spool().study(study_uid)
            spool().fail_study(study_uid, row.generation if row else 0, f"{type(exc).__name__}: {exc}", task_id)
        log(LOG, "task failed for good", logging.ERROR, task=self.name, study_uid=study_uid,
            error=f"{type(exc).__name__}: {exc}")


@app.task(bind=True, name=ANALYZE_TASK, base=_DeadLetterTask, acks_late=True, max_retries=None)
def analyze_study(self: Task, study_uid: str, generation: int = 0) -> dict[str, Any]:
    """Celery task: analyse a study from the spool, then queue delivery to every destination. The spool counts
    the attempts and says when to retry (``node.spool.attempts``); Celery only schedules the retry."""
    s = settings()
    task_id = self.request.id or ""
    try:
        try:
            names = [d.name for d in s.destinations]
            send_first = (lambda uids: fanout.attempt_all(spool(), s, study_uid, names, only=uids)) if _delivers(s) \
                else None
            report = run_analysis(spool(), names, study_uid,
                                  patient_window_days=s.patient_window_days, attempt_id=task_id,
                                  prior_destinations=[d for d in s.destinations if d.priors], calling_aet=s.ae_title,
                                  send_first=send_first,
                                  release_grace_s=s.release_grace_s if s.dispatch_at_release else 0.0,
                                  open_association_age_s=s.open_association_age_s)
        except (AnalysisDeferred, AnalysisAbandoned):
            raise
        except Exception as exc:  # noqa: BLE001 - this attempt failed: the spool says retry or dead letter
            error = f"{type(exc).__name__}: {exc}"
            log(LOG, "analysis attempt failed", logging.WARNING, study_uid=study_uid, error=error[:500])
            outcome = spool().fail_attempt(study_uid, task_id, error) if task_id else None
            if outcome is None:  # no attempt of ours was open (e.g. the index failed): Celery's own retries
                raise self.retry(exc=exc, countdown=backoff(self.request.retries, s.task_retry_backoff_max_s),
                                 max_retries=s.task_max_retries) from exc
            raise outcome from exc
    except AnalysisDeferred as d:
        log(LOG, "analysis deferred", logging.WARNING, study_uid=study_uid, reason=d.reason, wait_s=round(d.wait_s, 1))
        raise self.retry(countdown=d.wait_s) from d
    except AnalysisAbandoned as a:
        log(LOG, "analysis given up: dead letter", logging.ERROR, study_uid=study_uid, reason=a.reason)
        audit.analysis(spool().root, s.ae_title, study_uid, failure=a.reason)
        return _no_analysis(study_uid, dead_letter=a.reason)
    if _state.get("status") is not None:
        _state["status"].record_models([tuple(m) for m in report["models"]])
    if report["generation"] is not None:
        audit.analysis(spool().root, s.ae_title, study_uid, report)
    if report["queued"]:
        _deliver_results(s, study_uid, [d.name for d in s.destinations])
    return report


def _delivers(s: NodeSettings) -> bool:
    """This worker takes deliveries (it consumes the delivery queue): it sends results itself, at once."""
    status = _state.get("status")
    consumed = status.queues if status is not None and status.queues else s.consumed_queues
    return s.deliver_queue in consumed


def _deliver_results(s: NodeSettings, study_uid: str, names: list[str]) -> None:
    """A worker that also takes deliveries makes the first attempt to every destination at once, here
    (``node.fanout``); a destination that fails (or every destination, on a worker that does not deliver, e.g. a GPU
    worker) gets its own delivery task with its own retries."""
    failed: dict[str, Exception] = fanout.attempt_all(spool(), s, study_uid, names) if _delivers(s) else \
        dict.fromkeys(names, None)
    for name, error in failed.items():
        countdown = None
        if error is not None:
            ids = getattr(error, "failed_ids", None)
            if ids:
                spool().mark_attempt_failed(ids, str(error))
            log(LOG, "delivery attempt failed", logging.WARNING, study_uid=study_uid, destination=name, attempt=1,
                error=str(error)[:500], final=False)
            countdown = backoff(0, s.deliver_backoff_max_s)
        deliver.apply_async((study_uid, name), countdown=countdown)


@app.task(bind=True, name=DELIVER_TASK, base=_DeadLetterTask, acks_late=True)
def deliver(self: Task, study_uid: str, destination: str) -> int:
    """Celery task: send the pending result objects of a study to one destination (retries until back); each
    destination has its own task and its own retries (``node.fanout``)."""
    s = settings()
    sp = spool()
    n, exc = fanout.attempt(sp, s, study_uid, destination)
    if exc is not None:
        final = self.request.retries >= s.deliver_max_retries
        sp.mark_attempt_failed(exc.failed_ids, str(exc), final=final)
        log(LOG, "delivery attempt failed", logging.WARNING, study_uid=study_uid, destination=destination,
            attempt=self.request.retries + 1, error=str(exc), final=final)
        if final:
            return 0
        raise self.retry(exc=exc, countdown=backoff(self.request.retries, s.deliver_backoff_max_s),
                         max_retries=s.deliver_max_retries) from exc
    return n
