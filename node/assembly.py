"""Study assembly: decide when a study is complete and dispatch it; re-dispatch on late instances.

A study is *ready* when it has instances newer than its last dispatch (``generation >
dispatched_generation``) and every association that brought them has ended (the release/abort markers the
SCP writes into the spool index), plus ``stable_age_s`` after the last instance (default 0; MONAI Deploy's gateway
waits a fixed 5 s, Orthanc 60 s). Room for a sender that sends one study over two associations is
``release_grace_s`` (default 0.5 s) after the release: by default (``dispatch_at_release``) the study is dispatched
at the release and the worker holds its results until the grace is over (``node.grace.GraceHold``: an instance
arriving meanwhile sets the analysis aside), so the grace overlaps the analysis; otherwise the study is dispatched
only after the grace. A sender that keeps its association open is not waited
for forever: after ``open_association_age_s`` without new instances the study is dispatched anyway. The rule is
``node.spool.ready``; ``wait_s`` tells the ``serve`` loop when the next waiting study is due, so a released study
is dispatched at its due time, not at the next fixed tick.

A late instance bumps the study's generation, so the study becomes ready again and a new analysis is
queued; when it finishes, results of the older analysis that were not yet delivered are superseded (see
``node.spool.Spool.finish_analysis``), and results already delivered are followed by the new ones (new
SOP Instance UIDs from ``pipelines.dicom_out``).

The ``Assembler`` is ticked by the ``serve`` process (``node.service.Node``, one per spool). It also sweeps the outbox: pending
results whose delivery task was lost (restart, crash of a worker) are queued again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from node import metrics
from node.dispatch import Dispatcher
from node.logs import log
from node.settings import NodeSettings
from node.spool import Spool

LOG = logging.getLogger("node.assembly")


class Assembler:
    """Finds ready studies and dispatches them; re-queues lost deliveries."""

    def __init__(self, spool: Spool, settings: NodeSettings, dispatcher: Dispatcher,
                 clock: Callable[[], float] = time.time):
        self.spool = spool
        self.settings = settings
        self.dispatcher = dispatcher
        self.clock = clock

    def tick(self) -> list[str]:
        """Dispatch every ready study once; returns their UIDs."""
        now = self.clock()
        dispatched = []
        for study_uid, generation in self.spool.ready_studies(
                now, self.settings.stable_age_s, self.settings.open_association_age_s, self._grace_s()):
            try:
                task_id = self.dispatcher.analyze(study_uid, generation)
            except Exception as e:  # noqa: BLE001 - broker down: try again next tick
                log(LOG, "dispatch failed", logging.WARNING, study_uid=study_uid, error=f"{type(e).__name__}: {e}")
                break
            self.spool.mark_dispatched(study_uid, generation, task_id, now=now)
            metrics.DISPATCHED.inc()
            log(LOG, "study dispatched", study_uid=study_uid, generation=generation, task_id=task_id)
            dispatched.append(study_uid)
        return dispatched

    def _grace_s(self) -> float:
        """The release grace the dispatch waits for: none when the worker holds the results instead."""
        return 0.0 if self.settings.dispatch_at_release else self.settings.release_grace_s

    def wait_s(self, longest_s: float) -> float:
        """How long the loop may sleep before the next tick: until the next waiting study is due, at most
        ``longest_s`` (a release the SCP records meanwhile wakes the ``serve`` loop at once). A study already due was
        tried by the tick just done (the broker may be down): ``longest_s`` then, not a busy loop."""
        due = self.spool.next_ready_at(self.settings.stable_age_s, self.settings.open_association_age_s,
                                       self._grace_s())
        now = self.clock()
        return longest_s if due is None or due <= now else min(longest_s, max(0.01, due - now))

    def sweep_outbox(self, older_than_s: float) -> list[tuple[str, str]]:
        """Queue delivery again for pending results untouched for ``older_than_s``."""
        now = self.clock()
        requeued = []
        for study_uid, dest in self.spool.stale_outbox(older_than_s, now=now):
            try:
                self.dispatcher.deliver(study_uid, dest)
            except Exception as e:  # noqa: BLE001
                log(LOG, "delivery re-queue failed", logging.WARNING, study_uid=study_uid, destination=dest,
                    error=f"{type(e).__name__}: {e}")
                break
            self.spool.touch_outbox(study_uid, dest, now=now)
            requeued.append((study_uid, dest))
        if requeued:
            log(LOG, "deliveries re-queued", count=len(requeued))
        return requeued

    def stale_after_s(self) -> float:
        """How long a pending outbox row may sit untouched before its delivery counts as lost."""
        return 2 * self.settings.deliver_backoff_max_s + 2 * max(
            (d.timeout_s for d in self.settings.destinations), default=60.0) + 30.0
