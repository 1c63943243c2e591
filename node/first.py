"""The first objects of an analysis (its SR and SEGs) go out while the worker encodes the rest.

``FirstObjects`` is the ``on_first`` callback ``node.tasks.run_analysis`` gives ``pipelines.analyze``: it writes
the objects (fsync'd, under the outbox; ``write_objects``), queues them (``Spool.queue_first``) and sends them in a
thread, after the end of the release grace (``node.grace.GraceHold``). The encoder hands out the SR as soon as it
is built and the SEGs after it: each hand-out is sent by a thread of its own, with its own association, so that the
PACS stores the SR (the slow object to store: ~0.2 s for Orthanc on an idle machine, 0.5-0.8 s beside an analysis)
while the SEGs are built and sent.
"""

from __future__ import annotations

import logging
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.grace import GraceHold
from node.logs import log
from node.spool import Spool, write_atomic

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

LOG = logging.getLogger("node.first")


def write_objects(sp: Spool, study_uid: str, generation: int, objects: list[Dataset]) -> list[tuple[str, str, Path]]:
    """Write each object (fsync'd) under the outbox; returns ``(SOP instance UID, SOP class UID, path)`` of each."""
    written = []
    for ds in objects:
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = sp.outbox_path(study_uid, generation, str(ds.SOPInstanceUID))
        write_atomic(buf.getvalue(), path, sp.tmp_dir)
        written.append((str(ds.SOPInstanceUID), str(ds.SOPClassUID), path))
    return written


class FirstObjects:
    """The first objects of an analysis (its SR and SEGs, ``pipelines.dicom_out.encode``'s ``first``; the
    patient-level SR): written and fsync'd, queued (``Spool.queue_first``) and sent by ``send`` in a thread while
    the worker encodes the rest (presentation states, report, Grad-CAM maps, the patient-level report). The
    radiologist's key results reach the PACS first; ``finish_analysis`` then queues the rest. Each call's objects
    are sent by their own thread: ``send(uids)`` sends only the pending rows of those SOP instance UIDs, so two
    sends never take the same rows. ``send`` failing leaves the rows pending: the delivery after the analysis
    sends them with the rest."""

    def __init__(self, sp: Spool, study_uid: str, generation: int, destinations: list[str], attempt_id: str,
                 send: Any, hold: GraceHold | None = None) -> None:
        self.sp, self.study_uid, self.generation, self.hold = sp, study_uid, generation, hold
        self.destinations, self.attempt_id, self.send = destinations, attempt_id, send
        self.written: list[tuple[str, str, Path]] = []
        self.queued: set[str] = set()
        self.seconds: float | None = None
        self._t0 = time.perf_counter()
        self._threads: list[threading.Thread] = []

    def __call__(self, objects: list[Dataset]) -> None:
        if self.hold is not None:
            self.hold.check()  # the end of the release grace first (``SetAside``: nothing written)
        written = write_objects(self.sp, self.study_uid, self.generation, objects)
        self.written.extend(written)
        try:
            queued = bool(self.destinations) and self.sp.queue_first(
                self.study_uid, self.generation, written, self.destinations, attempt_id=self.attempt_id,
                queued_before=self.queued)
        except Exception as exc:  # noqa: BLE001 - not sent early: finish_analysis queues them with the rest
            log(LOG, "first objects not queued", logging.WARNING, study_uid=self.study_uid,
                error=f"{type(exc).__name__}: {str(exc)[:300]}")
            queued = False
        if queued:
            uids = frozenset(uid for uid, _, _ in written)
            self.queued.update(uids)
            if self.seconds is None:
                self.seconds = time.perf_counter() - self._t0
            thread = threading.Thread(target=self._send, args=(uids,), name="deliver-first", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _send(self, uids: frozenset[str]) -> None:
        try:
            self.send(uids)
        except Exception as exc:  # noqa: BLE001 - the rows stay pending; the delivery after the analysis retries
            log(LOG, "first delivery failed", logging.WARNING, study_uid=self.study_uid,
                error=f"{type(exc).__name__}: {str(exc)[:300]}")

    def join(self) -> None:
        """Wait until every first object queued so far was sent (or its attempt failed)."""
        while self._threads:
            self._threads.pop(0).join()
