"""The worker's warm-up: one forward of every shipped model on synthetic inputs, none failing."""

from __future__ import annotations

import numpy as np

from models.warmup import synthetic_keypoints, synthetic_radiograph, warm_up
from pipelines.vocabulary import KEYPOINT_NAMES


def test_every_shipped_model_runs_on_the_synthetic_inputs(models) -> None:  # noqa: ANN001 - ModelSet fixture
    times = warm_up(models)
    assert len(times) == len(models.algorithms()) == 6, times
    assert all(t > 0 for t in times.values())


def test_synthetic_inputs() -> None:
    img = synthetic_radiograph(64, 48)
    assert img.shape == (64, 48) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    kp = synthetic_keypoints(640, 576)
    assert kp.shape == (len(KEYPOINT_NAMES), 2)
    names = dict(zip(KEYPOINT_NAMES, kp, strict=True))
    assert names["C2 antero-superior"][0] > names["C2 postero-superior"][0] > names["C2 spinolaminar"][0]
    assert names["C2 antero-inferior"][1] < names["C3 antero-superior"][1]  # stacked downwards, not overlapping
