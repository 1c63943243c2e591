"""``block_mean`` keeps its last results by array identity: the same array gives the same (read-only) result,
equal to the block average (to float32 rounding: it sums rows, then columns); another array, even with the same values or at a dead array's address, is computed
afresh; ``warp`` gives the same numbers through it as from a fresh reduction."""

from __future__ import annotations

import gc

import numpy as np

from pipelines.xray.preprocessing import AffineTransform, block_mean, warp


def _direct(img: np.ndarray, f: int) -> np.ndarray:
    r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:r, :c].reshape(r // f, f, c // f, f).mean(axis=(1, 3), dtype=np.float64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == np.float32 and float(np.abs(a - b).max()) < 1e-6


def test_same_array_same_result_other_array_fresh() -> None:
    img = np.random.default_rng(0).random((101, 83), dtype=np.float32)
    a = block_mean(img, 3)
    assert _same(a, _direct(img, 3)) and not a.flags.writeable
    assert block_mean(img, 3) is a
    assert block_mean(img, 2) is not a and _same(block_mean(img, 2), _direct(img, 2))
    copy = img.copy()
    assert block_mean(copy, 3) is not a and np.array_equal(block_mean(copy, 3), a)


def test_a_dead_arrays_result_is_not_reused() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):  # new arrays often land at a freed address
        img = rng.random((64, 64), dtype=np.float32)
        assert _same(block_mean(img, 4), _direct(img, 4))
        del img
        gc.collect()


def test_warp_numbers_unchanged() -> None:
    img = np.random.default_rng(2).random((600, 500), dtype=np.float32)
    t = AffineTransform.box(250.0, 300.0, 480.0, 128)
    first, again = warp(img, t), warp(img, t)
    assert np.array_equal(first, again)
    fresh = warp(img.copy(), t)
    assert np.array_equal(first, fresh)
