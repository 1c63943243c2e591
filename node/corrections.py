"""Radiologists' corrections in: an SR that corrects one of the node's analyses becomes a training example.

Paths (``CorrectionsStore``):

* ``<spool>/corrections_sr/inbox/<sop>.dcm``: a received correction SR, fsync'd before the SCP answers Success
  (or before the poller counts it as fetched); ``done/`` once folded into the training data, ``rejected/`` when it
  moves no keypoint or cannot be used (each with ``<sop>.json``: why, the notes, what moved). These files carry
  the patient's header like every instance in the spool, and stay there.
* ``corrections_dir`` (default ``<spool>/corrections``): the training data, ``annotations.json`` (COCO keypoints,
  ``pipelines.corrections.coco``, layout in ``docs/corrections.md``) and ``images/<image uid>.png`` (16-bit
  greyscale, bone bright, as the pipeline sees it). No patient name or ID: the image entries carry the node's
  salted patient key. ``annotations.json`` is replaced atomically (temp file, fsync, rename) under a file lock.

What an incoming SR is (``CorrectionsStore.classify``): the node's own result SR (its manufacturer): ignored; one
that references a study the node has in its spool (by Study Instance UID or a referenced image): a correction,
kept (``accept``) and folded in by ``process_pending`` once that study has an X-ray result (it waits up to
``corrections_pending_max_s`` for one); any other SR: unrelated, acknowledged and not kept (the sender still
has it). SRs are never analysed as studies.

The corrected model version is the node's own record: the ``AlgorithmInfo`` (name and version) of the newest
X-ray result of the study in the spool's results.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom

from node.logs import log
from node.patients import load_result
from node.settings import NodeSettings
from node.spool import Spool, safe_name, write_atomic
from node.spool.durable import move_atomic
from pipelines.corrections import (
    SrAnnotations,
    UnreadableSR,
    apply_correction,
    empty_document,
    match_corrections,
    read_annotations,
)
from pipelines.results import StudyResult

LOG = logging.getLogger("node.corrections")
MAX_FAILURES = 3
"""Attempts at an inbox SR that raises before it is moved to ``rejected/`` with the error."""


class Kind(StrEnum):
    """What an incoming SR is to the node."""

    CORRECTION = "correction"
    OWN = "own result"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Outcome:
    sop_instance_uid: str
    state: str
    """``done``, ``rejected`` or ``pending``."""
    reason: str = ""
    moved: int = 0


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CorrectionsStore:
    """The inbox of correction SRs and the corrections folder they are folded into."""

    def __init__(self, settings: NodeSettings, spool: Spool):
        self.settings = settings
        self.spool = spool
        self.sr_root = spool.root / "corrections_sr"
        self.coco_dir = Path(settings.corrections_dir) if settings.corrections_dir else spool.root / "corrections"
        self.tmp = spool.tmp_dir
        self._lock = threading.Lock()
        self.wakeup = threading.Event()
        self._failures: dict[str, int] = {}

    # -- paths ------------------------------------------------------------------------------------

    def path(self, state: str, sop_instance_uid: str, suffix: str = ".dcm") -> Path:
        return self.sr_root / state / f"{safe_name(sop_instance_uid)}{suffix}"

    def known(self, sop_instance_uid: str) -> bool:
        """The SR is already in the inbox, done or rejected."""
        return any(self.path(s, sop_instance_uid).exists() for s in ("inbox", "done", "rejected"))

    def pending(self) -> list[Path]:
        d = self.sr_root / "inbox"
        return sorted(d.glob("*.dcm"), key=lambda p: p.stat().st_mtime) if d.is_dir() else []

    # -- receiving --------------------------------------------------------------------------------

    def analysed_study(self, sr: SrAnnotations) -> str | None:
        """The spool study this SR is about: its own Study Instance UID when the spool has that study, else the
        study of an image it references; None when neither."""
        if self.spool.study(sr.study_uid) is not None:
            return sr.study_uid
        for uid in sr.referenced_images:
            row = self.spool._db().execute(  # the spool's thread-local index connection, read only
                "SELECT study_uid FROM instances WHERE sop_instance_uid=?", (uid,)).fetchone()
            if row is not None:
                return str(row[0])
        return None

    def classify(self, sr: SrAnnotations) -> Kind:
        if sr.own:
            return Kind.OWN
        return Kind.CORRECTION if self.analysed_study(sr) is not None else Kind.UNRELATED

    def accept(self, data: bytes | Path, sop_instance_uid: str) -> Path:
        """Keep a correction SR durably in the inbox (before the sender is told Success)."""
        dst = self.path("inbox", sop_instance_uid)
        dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        if isinstance(data, Path):
            move_atomic(data, dst, self.tmp)
        else:
            write_atomic(data, dst, self.tmp)
        self.wakeup.set()
        return dst

    def receive(self, data: bytes | Path, sop_instance_uid: str) -> Kind:
        """Read an incoming SR (a C-STORE file or bytes the poller fetched), keep it when it is a correction; returns
        its ``Kind``; ``UnreadableSR`` when its content cannot be read (nothing is kept)."""
        source = data if isinstance(data, Path) else BytesIO(data)
        try:
            ds = pydicom.dcmread(source, force=True)
        except Exception as e:  # noqa: BLE001 - any parse error of foreign bytes
            raise UnreadableSR(f"not a parsable DICOM data set ({type(e).__name__})") from e
        kind = self.classify(read_annotations(ds))
        if kind is Kind.CORRECTION:
            self.accept(data, sop_instance_uid)
        return kind

    # -- folding in -------------------------------------------------------------------------------

    def _xray_result(self, study_uid: str) -> tuple[StudyResult, str] | None:
        rows = [r for r in self.spool.results(study_uid) if r.pipeline == "xray"]
        if not rows:
            return None
        return load_result(rows[0]), rows[0].patient_key

    @contextmanager
    def _coco_locked(self) -> Iterator[dict]:
        self.coco_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock, open(self.coco_dir / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                path = self.coco_dir / "annotations.json"
                doc = json.loads(path.read_text()) if path.exists() else empty_document()
                yield doc
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_image(self, study_uid: str, image_uid: str) -> str:
        """``images/<uid>.png`` of the analysed radiograph (16-bit, bone bright); the name relative to the folder."""
        from PIL import Image

        from pipelines.xray.preprocessing import image_from_dataset

        name = f"images/{safe_name(image_uid)}.png"
        dst = self.coco_dir / name
        if not dst.exists():
            ds = pydicom.dcmread(self.spool.instance_path(study_uid, image_uid))
            pixels = np.round(np.clip(image_from_dataset(ds), 0, 1) * 65535).astype(np.uint16)
            buf = BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            write_atomic(buf.getvalue(), dst, self.tmp)
        return name

    def _finish(self, src: Path, sop: str, state: str, report: dict) -> None:
        self.sr_root.joinpath(state).mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(json.dumps(report, indent=1).encode(), self.path(state, sop, ".json"), self.tmp)
        move_atomic(src, self.path(state, sop), self.tmp)
        if src.exists():
            src.unlink()

    def process(self, src: Path, now: float | None = None) -> Outcome:
        """Fold one inbox SR into the corrections folder (or reject it, or leave it pending)."""
        now = time.time() if now is None else now
        received = src.stat().st_mtime
        try:
            sr = read_annotations(pydicom.dcmread(src, force=True))
        except UnreadableSR as e:
            sop = src.stem
            self._finish(src, sop, "rejected", {"reason": str(e), "received_at": _now_iso(received)})
            return Outcome(sop, "rejected", str(e))
        sop = sr.sop_instance_uid
        study = self.analysed_study(sr)
        found = self._xray_result(study) if study else None
        if found is None:
            analysed = study is not None and bool(self.spool.results(study))  # analysed, but not as X-ray (MRI ...)
            if now - received < self.settings.corrections_pending_max_s and study is not None and not analysed:
                return Outcome(sop, "pending", "the study has no X-ray result yet")
            why = "no X-ray result of the study it references"
            self._finish(src, sop, "rejected", {"reason": why, "received_at": _now_iso(received), "notes": sr.notes})
            return Outcome(sop, "rejected", why)
        result, patient_key = found
        match = match_corrections(sr, result, max_mm=self.settings.corrections_match_mm)
        report = {"sr_uid": sop, "study_uid": study, "received_at": _now_iso(received),
                  "corrected_model_version": f"{result.algorithm.name} {result.algorithm.version}",
                  "notes": match.notes,
                  "moved": {uid: {n: {"xy": list(p), "mm": c.moved_mm[n], "by": c.sources[n]} for n, p in c.moved.items()}
                            for uid, c in match.images.items()}}
        if not match.n_moved:
            report["reason"] = "moves none of the node's keypoints"
            self._finish(src, sop, "rejected", report)
            return Outcome(sop, "rejected", report["reason"])
        images = {i.image_uid: i for i in result.images}
        with self._coco_locked() as doc:
            changed = False
            for uid, corr in match.images.items():
                name = self._write_image(str(study), uid)
                changed |= apply_correction(doc, images[uid], corr, file_name=name, study_uid=str(study), sr_uid=sop,
                                            model_version=report["corrected_model_version"],
                                            received_at=report["received_at"], patient_key=patient_key)
            if changed:
                write_atomic(json.dumps(doc, indent=1).encode(), self.coco_dir / "annotations.json", self.tmp)
        self._finish(src, sop, "done", report)
        log(LOG, "correction folded in", sr_uid=sop, study_uid=study, keypoints_moved=match.n_moved,
            images=len(match.images), ignored=len(match.notes))
        return Outcome(sop, "done", moved=match.n_moved)

    def process_pending(self, now: float | None = None) -> list[Outcome]:
        """Process every inbox SR. One that fails ``MAX_FAILURES`` times in this process (its radiograph gone from
        the spool, a broken result file ...) is moved to ``rejected/`` with the error: kept, no longer retried."""
        out = []
        for src in self.pending():
            try:
                out.append(self.process(src, now))
            except Exception as e:  # noqa: BLE001 - retried, then rejected; logged with its traceback
                n = self._failures[src.name] = self._failures.get(src.name, 0) + 1
                LOG.exception("correction could not be processed", extra={"file": src.name, "failures": n})
                if n >= MAX_FAILURES:
                    why = f"could not be processed {n} times: {type(e).__name__}: {str(e)[:300]}"
                    self._finish(src, src.stem, "rejected", {"reason": why})
                    out.append(Outcome(src.stem, "rejected", why))
        return out


class CorrectionsWorker:
    """A thread of ``serve``: folds inbox SRs in as they arrive (``store.wakeup``) and, when
    ``corrections_poll_s`` > 0, polls the stow destinations with QIDO-RS (``node.corrections_poll``)."""

    def __init__(self, store: CorrectionsStore):
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CorrectionsWorker:
        self._thread = threading.Thread(target=self._loop, name="corrections", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        from node.corrections_poll import poll_once

        s = self.store.settings
        next_poll = time.time() + (s.corrections_poll_s or 0)
        while not self._stop.is_set():
            try:
                if s.corrections_poll_s and time.time() >= next_poll:
                    next_poll = time.time() + s.corrections_poll_s
                    poll_once(self.store)
                self.store.process_pending()
            except Exception:  # noqa: BLE001 - keep the thread alive; logged
                LOG.exception("corrections loop error")
            wait = 5.0 if not s.corrections_poll_s else max(0.2, min(5.0, next_poll - time.time()))
            self.store.wakeup.wait(wait)
            self.store.wakeup.clear()

    def stop(self) -> None:
        self._stop.set()
        self.store.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def summary(settings: NodeSettings, spool: Spool) -> dict[str, object]:
    """For ``cspine-node status``: SRs in each state, training examples and where they are."""
    store = CorrectionsStore(settings, spool)
    out: dict[str, object] = {s: len(list((store.sr_root / s).glob("*.dcm"))) if (store.sr_root / s).is_dir() else 0
                              for s in ("inbox", "done", "rejected")}
    path = store.coco_dir / "annotations.json"
    try:
        out["examples"] = len(json.loads(path.read_text())["annotations"]) if path.exists() else 0
    except (OSError, ValueError, KeyError) as e:
        out["examples"] = f"unreadable: {type(e).__name__}"
    out["folder"] = str(store.coco_dir)
    return out
