"""What every trainer shares: seeding, the learning-rate schedules, and a time-boxed step loop with loss logging.

Trainers run on one CPU thread in minutes, so training is time-boxed: :func:`run_steps` runs
``step_fn(step, total)`` until ``max_steps`` (deterministic) or a wall-clock budget, re-estimating the step
count that fits the budget from the first steps (``total`` is what the cosine schedules anneal over).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lr(step: int, total: int, base: float, warmup: int = 20) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up ``base * (step + 1) / warmup`` over the first
    ``warmup`` steps, then a half cosine from ``base`` to 0 over the remaining steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1 + math.cos(math.pi * t))


def warmup_cosine(step: int, progress: float, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up ``min(1, (step + 1) / warmup)`` times a half cosine of the training
    ``progress`` in [0, 1] (by steps or by time) plus ``floor`` (1 + floor at the start, ``floor`` at the end)."""
    return min(1.0, (step + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * progress)) + floor)


def run_steps(step_fn: Callable[[int, int], float], minutes: float | None, max_steps: int | None, *,
              log_every: int = 50, estimate_at: Sequence[int] = (10, 50, 150), min_steps: int = 20,
              slack: float = 1.05, log: Callable[[str], object] | None = None) -> int:
    """Run ``step_fn(step, total) -> loss`` and return the number of steps done.

    ``max_steps``: run exactly that many (``total`` = ``max_steps``), unless the time box closes first.
    Otherwise ``total`` is re-estimated after each step count in ``estimate_at`` (the first steps are slower)
    as the steps that fit ``minutes`` (at least ``min_steps``), and the loop stops at ``total``. The time box
    closes after ``slack x minutes``; ``minutes`` None: no time box (then ``max_steps`` is needed). The mean
    loss of the last ``log_every`` steps is logged every ``log_every`` steps (``log``: ``print`` by default).
    """
    if minutes is None and max_steps is None:
        raise ValueError("give minutes, max_steps or both")
    say = log or (lambda msg: print(msg, flush=True))
    t0 = time.time()
    budget = math.inf if minutes is None else minutes * 60.0
    total = max_steps or 10**9
    step, losses = 0, []
    while step < total:
        losses.append(step_fn(step, total))
        step += 1
        if step in estimate_at and max_steps is None:
            per = max((time.time() - t0) / step, 1e-9)
            total = max(min_steps, int(budget / per))
            say(f"~{per * 1000:.0f} ms/step -> {total} steps in {minutes:g} min")
        if step % log_every == 0:
            say(f"step {step}/{total} loss {np.mean(losses[-log_every:]):.4f} ({time.time() - t0:.0f} s)")
        if time.time() - t0 > budget * slack:
            break
    return step


__all__ = ["cosine_lr", "run_steps", "seed_everything", "warmup_cosine"]
