"""Appearance randomisation (models.xray_keypoints.appearance): off is a no-op, on changes grey values only."""

from __future__ import annotations

import numpy as np

from models.xray_keypoints.appearance import randomize


def _batch(n: int = 16, s: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:s, :s]
    img = np.where((xx - s / 2) ** 2 + (yy - s / 2) ** 2 < (s / 4) ** 2, 0.6, -0.6).astype(np.float32)
    return np.repeat(img[None], n, axis=0)


def test_off_returns_the_batch_and_draws_nothing() -> None:
    x = _batch()
    rng = np.random.default_rng(3)
    y = randomize(x, rng, 0.0)
    assert y is x
    assert rng.random() == np.random.default_rng(3).random()


def test_on_redraws_appearance_in_range_and_keeps_the_shape() -> None:
    x = _batch(32)
    y = randomize(x, np.random.default_rng(1), 1.0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(y >= -1) and np.all(y <= 1) and np.isfinite(y).all()
    changed = [not np.allclose(a, b) for a, b in zip(x, y, strict=True)]
    assert sum(changed) >= 28
    # the object stays where it is: inside brighter than outside in every redrawn image (monotone curves)
    s = x.shape[1]
    inside, outside = y[:, s // 2, s // 2], y[:, 2, 2]
    assert np.all(inside > outside)


def test_probability_is_respected() -> None:
    x = _batch(400, 16)
    y = randomize(x, np.random.default_rng(2), 0.25)
    frac = np.mean([not np.allclose(a, b) for a, b in zip(x, y, strict=True)])
    assert 0.15 < frac < 0.35
