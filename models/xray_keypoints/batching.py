"""Cross-request batching for the keypoint predictor: one forward pass for radiographs of concurrent studies.

A worker that runs several analyses at once (Celery ``--pool threads``) shares one model. Each analysis thread
calls :meth:`BatchingPredictor.predict` as it would call :meth:`KeypointPredictor.predict`; the request goes on a
queue, and one batcher thread takes the first waiting request, collects more until it holds ``max_images`` or
``wait_ms`` have passed since it took the first, runs one :meth:`KeypointPredictor.predict_batch` (stage 1 on the
letterboxed images, stage 2 on all their vertebra crops, each one batched forward) and hands each thread its own
:class:`~pipelines.interfaces.KeypointPrediction`. The results are those of unbatched prediction (same
per-image arithmetic; only the batch dimension differs, so they agree to float rounding).

One thread is the only one that touches the network, so nothing else needs a lock. ``on_batch(n)`` is called
after each forward with its number of images (the node's worker turns it into the ``cspine_batch_size`` histogram).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.xray_keypoints.predictor import KeypointPredictor
from pipelines.interfaces import KeypointPrediction
from pipelines.results import AlgorithmInfo


@dataclass
class _Request:
    image: np.ndarray
    refine: bool
    future: Future


class BatchingPredictor:
    """Wraps a :class:`KeypointPredictor`; ``predict`` from many threads, one batched forward per ``wait_ms``.

    An ``interfaces.KeypointModel`` itself (``algorithm``, ``predict``). Attributes other than ``predict`` /
    ``predict_batch`` (``version``, ``device``, ``size`` ...) are the wrapped predictor's. ``batch_sizes``
    counts the forwards by number of images.
    """

    def __init__(self, predictor: KeypointPredictor, max_images: int = 8, wait_ms: float = 20.0,
                 on_batch: Callable[[int], Any] | None = None) -> None:
        if max_images < 1:
            raise ValueError("max_images must be >= 1")
        self.predictor = predictor
        self.max_images = int(max_images)
        self.wait_s = max(0.0, float(wait_ms)) / 1000.0
        self.on_batch = on_batch
        self.batch_sizes: Counter[int] = Counter()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally: delegate to the wrapped predictor.
        predictor = self.__dict__.get("predictor")
        if predictor is None:
            raise AttributeError(name)
        return getattr(predictor, name)

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu", *, max_images: int = 8,
             wait_ms: float = 20.0, on_batch: Callable[[int], Any] | None = None) -> BatchingPredictor:
        """:meth:`KeypointPredictor.load` wrapped for cross-request batching."""
        return cls(KeypointPredictor.load(weights, device), max_images, wait_ms, on_batch)

    @property
    def algorithm(self) -> AlgorithmInfo:
        return self.predictor.algorithm

    # -- the callers' side ------------------------------------------------------------------------------

    def submit(self, image: np.ndarray, *, refine: bool = True) -> Future:
        """Queue one [0, 1] image (rows, cols); the future resolves to its :class:`KeypointPrediction`."""
        if self._closed:
            raise RuntimeError("BatchingPredictor is closed")
        self._ensure_thread()
        fut: Future = Future()
        self._queue.put(_Request(np.asarray(image), refine, fut))
        return fut

    def predict(self, image: np.ndarray, *, refine: bool = True) -> KeypointPrediction:
        return self.submit(image, refine=refine).result()

    def predict_batch(self, images: list[np.ndarray], *, refine: bool = True) -> list[KeypointPrediction]:
        futures = [self.submit(im, refine=refine) for im in images]
        return [f.result() for f in futures]

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued requests and stop the batcher thread."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def images(self) -> int:
        """Images predicted so far."""
        return sum(n * c for n, c in self.batch_sizes.items())

    # -- the batcher thread -----------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="xray-batcher", daemon=True)
                self._thread.start()

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus what arrives within the wait (at most ``max_images``); True when asked to stop."""
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_images:
            try:  # what is already queued joins without waiting
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._collect(first)
            for refine in (True, False):
                group = [r for r in batch if r.refine is refine]
                if group:
                    self._forward(group, refine)

    def _forward(self, group: list[_Request], refine: bool) -> None:
        live = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            preds = self.predictor.predict_batch([r.image for r in live], refine=refine)
        except Exception as exc:  # noqa: BLE001 - one bad image must not fail the other studies' images
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            for r in live:  # one by one: each caller gets its own result or its own error
                try:
                    pred = self.predictor.predict_batch([r.image], refine=refine)[0]
                except Exception as e:  # noqa: BLE001 - handed to the waiting caller
                    r.future.set_exception(e)
                    continue
                self._count(1)
                r.future.set_result(pred)
            return
        self._count(len(live))
        for r, p in zip(live, preds, strict=True):
            r.future.set_result(p)

    def _count(self, n: int) -> None:
        self.batch_sizes[n] += 1
        if self.on_batch is not None:
            try:
                self.on_batch(n)
            except Exception:  # noqa: BLE001 - a metrics hook must not break predictions
                pass


__all__ = ["BatchingPredictor"]
