"""One forward of every model at worker start, on small synthetic inputs (never a phantom, never patient data).

The first call of a network pays for what later calls reuse: torch's lazily initialised kernels and allocator
(and, on a GPU, the CUDA context and cuDNN's algorithm choice), the predictors' own lazily built grids and
buffers. ``warm_up`` makes those calls before the worker takes work, through the same interfaces the pipelines
use (``pipelines.interfaces``), and returns the seconds each model took. A model that fails on the synthetic
input is logged and left as it is: a warm-up never stops a worker (the model's own errors show on real studies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from pipelines.interfaces import ModelSet
from pipelines.vocabulary import KEYPOINT_NAMES, VERTEBRAE

LOG = logging.getLogger("models.warmup")


def synthetic_radiograph(rows: int = 640, columns: int = 576) -> np.ndarray:
    """A smooth float32 image in [0, 1] with a little noise (x right, y down), the size of a small radiograph."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    img = 0.35 + 0.25 * np.sin(xx / columns * np.pi) * np.cos(yy / rows * np.pi / 2)
    return np.clip(img + rng.normal(0, 0.02, (rows, columns)).astype(np.float32), 0, 1)


def synthetic_keypoints(rows: int = 640, columns: int = 576) -> np.ndarray:
    """(30, 2) points in ``KEYPOINT_NAMES`` order: C2..C7 stacked down the middle (anterior to the right), each
    with its four corners, and the spinolaminar points behind them."""
    out = np.zeros((len(KEYPOINT_NAMES), 2), dtype=float)
    step = rows * 0.1
    for i, name in enumerate(KEYPOINT_NAMES):
        level, role = name.split(" ", 1)
        top = rows * 0.2 + VERTEBRAE.index(level) * step
        if role == "spinolaminar":
            out[i] = (columns * 0.3, top + step * 0.4)
            continue
        x = columns * (0.62 if role.startswith("antero") else 0.45)
        y = top + (step * 0.75 if role.endswith("inferior") else 0.0)
        out[i] = (x, y)
    return out


def warm_up(models: ModelSet) -> dict[str, float]:
    """Run every configured model once on synthetic inputs; returns seconds per model that ran."""
    image = synthetic_radiograph()
    keypoints = synthetic_keypoints(*image.shape)
    times: dict[str, float] = {}

    def run(name: str, call: Callable[[], object]) -> None:
        t = time.perf_counter()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a warm-up never stops a worker
            LOG.warning("warm-up of model %s failed: %s: %s", name, type(exc).__name__, str(exc)[:200])
            return
        times[name] = round(time.perf_counter() - t, 3)

    if models.keypoints is not None:
        run("keypoints", lambda: models.keypoints.predict(image))
    for model in models.image_classifiers:
        views = {v: image for v in model.required_views}
        run(model.algorithm.name, lambda m=model, v=views: m.classify(v, {k: (0.2, 0.2) for k in v}))
    if models.cord_compression is not None:
        run("cord_compression", lambda: models.cord_compression.classify(image, keypoints, "warm-up"))
    volume = np.stack([synthetic_radiograph(192, 192)] * 5)
    if models.mri is not None:
        run("mri", lambda: models.mri.analyse(volume, (0.8, 0.8), 2, 1, 3))
    if models.neck_pain is not None:
        centres = np.array([[96.0, 50.0 + 20 * i] for i in range(5)])
        run("neck_pain", lambda: models.neck_pain.predict(image, keypoints[:24], volume[2], centres, 0.8, {}))
    return times


__all__ = ["synthetic_keypoints", "synthetic_radiograph", "warm_up"]
