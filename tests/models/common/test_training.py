"""The shared training helpers: learning-rate schedules, the time-boxed step loop, seeding; uint8 storage."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
import torch

from models.common.images import from_u8, to_u8
from models.common.training import cosine_lr, run_steps, seed_everything, warmup_cosine


def test_cosine_lr_warms_up_then_anneals_to_zero() -> None:
    assert [cosine_lr(s, 100, 1.0, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine_lr(4, 100, 2.0, warmup=4) == 2.0
    assert cosine_lr(52, 100, 1.0, warmup=4) == pytest.approx(0.5)  # half way through the cosine
    assert cosine_lr(100, 100, 1.0, warmup=4) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(500, 100, 1.0, warmup=4) == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_factor() -> None:
    assert warmup_cosine(0, 0.0, warmup=50, floor=0.01) == pytest.approx(1.01 / 50)
    assert warmup_cosine(49, 0.0, warmup=50) == 1.0
    assert warmup_cosine(200, 0.5, warmup=50, floor=0.02) == pytest.approx(0.52)
    assert warmup_cosine(200, 1.0, warmup=50, floor=0.02) == pytest.approx(0.02)


def test_run_steps_fixed_count_and_time_box() -> None:
    seen: list[tuple[int, int]] = []
    logs: list[str] = []
    n = run_steps(lambda s, t: seen.append((s, t)) or float(s), None, 7, log_every=3, log=logs.append)
    assert n == 7 and seen == [(s, 7) for s in range(7)]
    assert logs == ["step 3/7 loss 1.0000 (0 s)", "step 6/7 loss 4.0000 (0 s)"]
    # time box: a 0.01 s budget for 2 ms steps stops long before 10**9 steps; the estimate is at least min_steps
    totals: list[int] = []

    def slow(step: int, total: int) -> float:
        totals.append(total)
        time.sleep(0.002)
        return 0.0

    n = run_steps(slow, 0.01 / 60, None, estimate_at=(2,), min_steps=3, log=logs.append)
    assert 3 <= n < 50 and totals[0] == 10**9 and totals[-1] < 10**9
    with pytest.raises(ValueError):
        run_steps(slow, None, None)


def test_seed_everything_seeds_python_numpy_and_torch() -> None:
    seed_everything(3)
    a = (random.random(), np.random.random(), float(torch.rand(1)))
    seed_everything(3)
    assert a == (random.random(), np.random.random(), float(torch.rand(1)))


def test_uint8_storage_round_trips_both_ranges() -> None:
    v = np.arange(256, dtype=np.uint8)
    assert np.array_equal(to_u8(from_u8(v)), v)
    assert from_u8(v).dtype == np.float32 and from_u8(v)[-1] == 1.0
    assert np.array_equal(to_u8(np.array([-0.2, 0.5, 1.7])), [0, 128, 255])  # rounded, clipped
    # [-1, 1] data (curvature crops): x * 0.5 + 0.5 in, * 2 - 1 out, the same bytes as a direct [-1, 1] scale
    x = np.random.default_rng(0).uniform(-1, 1, 100_000).astype(np.float32)
    assert np.array_equal(to_u8(x * 0.5 + 0.5), np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8))
    assert np.array_equal(from_u8(v) * 2 - 1, v.astype(np.float32) / 127.5 - 1.0)
    assert math.isclose(float(from_u8(np.uint8(128))), 128 / 255, rel_tol=1e-7)
