"""The first objects of an analysis (its SR and SEGs) go out while the worker encodes the rest.

``FirstObjects`` is the ``on_first`` callback ``node.tasks.run_analysis`` gives ``pipelines.analyze``: it writes
the objects (fsync'd, under the outbox; ``write_objects``), queues them (``Spool.queue_first``) and sends them in a
thread, after the end of the release grace (``node.grace.GraceHold``).
"""

from __future__ import annotations

import logging
import queue
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
    """The first objects of an analysis (its SR and SEGs, ``pipelines.dicom_out.encode``'s ``first``): written and
    fsync'd, queued (``Spool.queue_first``) and sent by ``send`` in a thread while the worker encodes the rest
    (presentation states, report, Grad-CAM maps, the patient-level report). The radiologist's key results reach the
    PACS first; ``finish_analysis`` then queues the rest. ``send`` failing leaves the rows pending: the delivery
    after the analysis sends them with the rest."""

    def __init__(self, sp: Spool, study_uid: str, generation: int, destinations: list[str], attempt_id: str,
                 send: Any, hold: GraceHold | None = None) -> None:
        self.sp, self.study_uid, self.generation, self.hold = sp, study_uid, generation, hold
        self.destinations, self.attempt_id, self.send = destinations, attempt_id, send
        self.written: list[tuple[str, str, Path]] = []
        self.queued: set[str] = set()
        self.seconds: float | None = None
        self._t0 = time.perf_counter()
        self._kicks: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

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
            self.queued.update(uid for uid, _, _ in written)
            if self.seconds is None:
                self.seconds = time.perf_counter() - self._t0
            self._kicks.put(True)
            if self._thread is None:  # one sender thread: two sends never take the same pending rows at once
                self._thread = threading.Thread(target=self._sender, name="deliver-first", daemon=True)
                self._thread.start()

    def _sender(self) -> None:
        while self._kicks.get():
            while not self._kicks.empty():  # objects queued meanwhile go in the same attempt
                if not self._kicks.get():
                    self._send()
                    return
            self._send()

    def _send(self) -> None:
        try:
            self.send()
        except Exception as exc:  # noqa: BLE001 - the rows stay pending; the delivery after the analysis retries
            log(LOG, "first delivery failed", logging.WARNING, study_uid=self.study_uid,
                error=f"{type(exc).__name__}: {str(exc)[:300]}")

    def join(self) -> None:
        """Wait until every first object queued so far was sent (or its attempt failed)."""
        if self._thread is not None:
            self._kicks.put(False)
            self._thread.join()
            self._thread = None
