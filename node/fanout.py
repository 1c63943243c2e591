"""Delivery attempts of one study's results: to one destination, or to all of them at once.

``attempt`` sends a study's pending outbox rows to one destination (``node.deliver.send_rows``) and records the
``deliver:<destination>`` stage when they all arrived. ``attempt_all`` makes the first attempt to every destination
at the same time, one thread each, inside the worker that just analysed the study (the embedded worker runs a solo
pool: queued delivery tasks would run one after the other, each behind the broker's polling). A destination that
fails keeps its own retry state: its rows stay pending with their attempt count and last error, and it gets its own
``cspine.deliver`` task, which Celery retries with backoff independently of the other destinations
(``node.tasks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from node.logs import log
from node.settings import NodeSettings
from node.spool import Spool
from node.spool.stages import deliver_stage

LOG = logging.getLogger("node.fanout")


def attempt(sp: Spool, settings: NodeSettings, study_uid: str, destination: str,
            only: Collection[str] | None = None) -> tuple[int, Exception | None]:
    """Send the study's pending rows to ``destination`` once (``only``: just those of these SOP instance UIDs).
    Returns (rows delivered, None), or (0, the ``node.deliver.DeliveryError``) for rows not delivered, which the
    caller retries (``mark_attempt_failed`` is the caller's, so it can say whether the attempt was the last). A
    destination not in the settings fails its rows for good."""
    from node.deliver import DeliveryError, send_rows

    rows = sp.pending_outbox(study_uid, destination)
    if only is not None:
        rows = [r for r in rows if r.sop_instance_uid in only]
    if not rows:
        return 0, None
    try:
        dest = settings.destination(destination)
    except KeyError as exc:
        sp.mark_attempt_failed([r.id for r in rows], str(exc), final=True)
        return 0, None
    try:
        send_rows(dest, rows, sp, calling_aet=settings.ae_title)
    except DeliveryError as exc:
        return 0, exc
    record_delivery(sp, study_uid, destination, rows)
    return len(rows), None


def record_delivery(sp: Spool, study_uid: str, destination: str, rows: list[Any]) -> None:
    """Every pending object of the study reached ``destination``: record and log the ``deliver:<destination>``
    stage (the analysis recorded -> the last object stored there) of the newest generation delivered."""
    generation = max(r.generation for r in rows)
    seconds = time.time() - min(r.created_at for r in rows if r.generation == generation)
    stage = deliver_stage(destination)
    sp.record_stages(study_uid, generation, {stage: seconds})
    log(LOG, "delivered", study_uid=study_uid, destination=destination, objects=len(rows), generation=generation,
        stages={stage: round(seconds, 3)})


def attempt_all(sp: Spool, settings: NodeSettings, study_uid: str, destinations: list[str],
                only: Collection[str] | None = None) -> dict[str, Exception]:
    """One attempt to every destination at once (a thread each, each with its own SQLite connection; ``only`` as
    for ``attempt``); returns the error of each destination that was not fully delivered (a ``DeliveryError``, or
    an unexpected exception)."""
    if not destinations:
        return {}

    def one(name: str) -> Exception | None:
        try:
            return attempt(sp, settings, study_uid, name, only)[1]
        finally:
            sp.close()  # this thread's connection

    with ThreadPoolExecutor(max_workers=len(destinations), thread_name_prefix="deliver") as pool:
        futures = {name: pool.submit(one, name) for name in destinations}
    failed: dict[str, Exception] = {}
    for name, f in futures.items():
        try:
            error = f.result()
        except Exception as exc:  # noqa: BLE001 - the destination's own task retries it
            error = exc
        if error is not None:
            failed[name] = error
    return failed
