"""Empirical (split-conformal) calibration of the X-ray measurement intervals on images unlike the training data.

The pipeline's 95 % intervals are Monte-Carlo percentiles of each measurement under the keypoint spread
(heatmap spread x ``sigma_scale``, plus the test-time-augmentation spread, ``tta.py``). Their stated rate held
on the training phantom only for some measurements (Cobb 83 %). This module fits one factor per measurement
key (each side of the interval around the value is multiplied by it; ``pipelines.xray.pipeline.calibrated_interval``)
on a **calibration set** of views from renderer A, renderer B and the shift suite on both (seeds disjoint from
the test sets of ``trust.py`` and from training), using only views that the gates let through:

* the pipeline runs as the node runs it (``trust.evaluate``), without the interval-width gate;
* a measurement's score is ``|truth - value| / (interval side towards the truth)``; a view's measurement enters the
  fit when it was reported (keypoint-spread and plausibility gates passed);
* the factor is the finite-sample conformal quantile of the scores, ``ceil((n + 1) 0.95)``-th smallest;
  each renderer (A with its shifted views, B with its shifted views) weighs the same, so that the many measurable A
  views do not set the factor alone (per set, the few measurable B + suite views would set it by chance);
* the interval-width gate is then applied with the factors, and the fit repeated on the views it lets through
  (until the factors stop changing);
* a unit's factor (``deg``, ``mm``, ``1``: the flexion-extension measurements, keys without enough scores) is the
  largest of its keys'.

``python -m models.xray_keypoints.interval_calibration --out DIR [--update-weights --version 1.1.1]`` runs the sets,
prints the factors and the coverage they give on the calibration set, and with ``--update-weights`` stores them
(and the test-time variants) in the weights file's meta (``interval_calibration``, ``tta``), tensors unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.xray_keypoints.trust import ViewOutcome

CALIBRATION_SETS: tuple[tuple[str, str, int, int], ...] = (
    ("a", "", 800, 20),
    ("a", "suite", 820, 36),
    ("b", "", 800, 40),
    ("b", "suite", 840, 54),
)
"""(renderer, shift, first seed, studies): disjoint from the test seeds (700-799) and from training (700000+)."""

LEVEL = 0.95
MIN_FACTOR = 0.5
"""Intervals are never narrowed by more than this."""
MIN_SCORES = 30
"""A key with fewer scores than this takes its unit's factor."""
UNITS = {"deg": ("cobb", "segmental_angle", "listhesis_angle"), "mm": ("sva", "listhesis_distance", "sdvb", "sdvc",
                                                                       "curvature_offset"),
         "1": ("pavlov_ratio", "curvature_index")}


def key_of(label: str) -> str:
    """``"sdvb C4"`` -> ``"sdvb"`` (``trust.measurement_label`` inverse, site dropped)."""
    return label.split(" ")[0]


def unit_of(key: str) -> str:
    return next((u for u, prefixes in UNITS.items() if key.startswith(prefixes)), "1")


def score(value: float, interval: tuple[float, float], truth: float) -> float:
    """``|truth - value|`` over the interval side towards the truth (inf for a zero-width side)."""
    side = (interval[1] - value) if truth >= value else (value - interval[0])
    d = abs(truth - value)
    if d == 0.0:
        return 0.0
    return d / side if side > 0 else math.inf


def scores(views: Iterable[ViewOutcome], factors: dict[str, float] | None = None,
           max_interval: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Measurement key -> scores of the reported values (before calibration) of ``views``. With ``factors`` and
    ``max_interval``, values whose calibrated interval is wider than the unit's limit are left out (the gate)."""
    out: dict[str, list[float]] = {}
    for v in views:
        for label, (value, interval, _) in v.reported.items():
            truth = v.truth.get(label)
            if value is None or interval is None or truth is None:
                continue
            key = key_of(label)
            if factors is not None and max_interval is not None:
                f = factors.get(key, factors.get(unit_of(key), 1.0))
                limit = max_interval.get(unit_of(key))
                if limit is not None and f * (interval[1] - interval[0]) > limit:
                    continue
            out.setdefault(key, []).append(score(value, interval, truth))
    return out


def conformal_quantile(values: Sequence[float], level: float = LEVEL, weights: Sequence[float] | None = None) -> float:
    """The (weighted) split-conformal quantile: the smallest score whose weighted rank reaches ``level`` x (total
    weight + one more point of the mean weight); inf when there are too few scores."""
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.size == 0:
        return math.inf
    order = np.argsort(v)
    v, w = v[order], w[order]
    target = level * (w.sum() + w.mean())
    idx = int(np.searchsorted(np.cumsum(w), target - 1e-12))
    return float(v[idx]) if idx < v.size else math.inf


def fit(domains: dict[str, list[ViewOutcome]], *, level: float = LEVEL, max_interval: dict[str, float] | None = None,
        rounds: int = 5, min_factor: float = MIN_FACTOR, equal_domains: bool = True, worst: bool = False
        ) -> dict[str, Any]:
    """Factors per key and per unit from the calibration ``domains`` (name -> views run without the interval gate),
    each domain weighing the same; refit on what the interval gate lets through. ``worst``: a key's factor is the
    largest of the domains' own conformal quantiles (each domain with at least ``MIN_SCORES`` scores of that key),
    so that the intervals hold on every domain seen, not on their mixture only."""
    factors: dict[str, float] | None = None
    history = []
    for _ in range(rounds):
        per = {d: scores(vs, factors, max_interval if factors is not None else None) for d, vs in domains.items()}
        keys = sorted({k for s in per.values() for k in s})
        new: dict[str, float] = {}
        counts: dict[str, int] = {}
        for key in keys:
            vals, wts = [], []
            for s in per.values():
                if s.get(key):
                    vals += s[key]
                    wts += [1.0 / len(s[key]) if equal_domains else 1.0] * len(s[key])
            counts[key] = len(vals)
            if worst:
                own = [conformal_quantile(s[key], level) for s in per.values() if len(s.get(key, [])) >= MIN_SCORES]
                if own:
                    new[key] = max(min_factor, max(own))
            elif len(vals) >= MIN_SCORES:
                new[key] = max(min_factor, conformal_quantile(vals, level, wts))
        for unit in UNITS:
            mine = [f for k, f in new.items() if unit_of(k) == unit and math.isfinite(f)]
            if mine:
                new[unit] = max(mine)
        history.append(new)
        if factors is not None and all(abs(new.get(k, 1) - factors.get(k, 1)) < 1e-3 for k in new.keys() | factors.keys()):
            factors = new
            break
        factors = new
    return {"scale": {k: round(v, 4) for k, v in (factors or {}).items()}, "level": level, "counts": counts,
            "rounds": len(history)}


def coverage(views: Iterable[ViewOutcome], factors: dict[str, float], keys: Sequence[str] = ("cobb_c2_c7", "sva_c2_c7"),
             levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99), max_interval: dict[str, float] | None = None
             ) -> dict[str, dict[str, float]]:
    """Observed coverage per key at each nominal level of the calibrated intervals (a level's interval is the 95 %
    one scaled by z(level) / z(0.95), the Gaussian shape), on the values the interval gate lets through."""
    from statistics import NormalDist

    z95 = NormalDist().inv_cdf(0.975)
    s = scores(views, factors, max_interval)
    out = {}
    for key in keys:
        f = factors.get(key, factors.get(unit_of(key), 1.0))
        vals = np.asarray(s.get(key, []), dtype=float) / f
        out[key] = {f"{lv:g}": float(np.mean(vals <= NormalDist().inv_cdf(0.5 + lv / 2) / z95)) if vals.size
                    else float("nan") for lv in levels}
        out[key]["n"] = int(vals.size)
    return out


def run_sets(predictor: Any, sets: Sequence[tuple[str, str, int, int]] = CALIBRATION_SETS, *, max_size: int | None = None,
             progress: bool = True) -> dict[str, list[ViewOutcome]]:
    """Run the pipeline (no interval gate) on every calibration set: domain name -> views."""
    from models.xray_keypoints import trust

    out: dict[str, list[ViewOutcome]] = {}
    for style, shift, seed, count in sets:
        name = style.upper() + (" + " + shift if shift else "")
        t0 = time.perf_counter()
        out[name] = trust.evaluate(predictor, style=style, seed=seed, count=count, shift=shift, max_size=max_size,
                                   progress=False, max_interval={})
        if progress:
            print(f"{name}: {count} studies (seeds {seed}-{seed + count - 1}) in {time.perf_counter() - t0:.0f} s",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from models.common.checkpoint import save_checkpoint
    from models.xray_keypoints.predictor import KeypointPredictor
    from models.xray_keypoints.tta import DEFAULT_VARIANTS
    from pipelines.xray.pipeline import XrayPipeline

    p = argparse.ArgumentParser(prog="python -m models.xray_keypoints.interval_calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, help="weights file (default: the shipped model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-tta", action="store_true", help="fit without test-time augmentation")
    p.add_argument("--scale", type=float, default=1.0, help="studies per set x this (quick runs)")
    p.add_argument("--out", type=Path, help="folder for calibration.json")
    p.add_argument("--update-weights", action="store_true", help="store the factors and the variants in the weights")
    p.add_argument("--version", help="with --update-weights: the new version (e.g. 1.1.1)")
    p.add_argument("--pool", choices=("renderer", "worst-set"), default="renderer",
                   help="renderer: the two renderers weigh the same (1.1.1); worst-set: each key's factor is the "
                        "largest of the four calibration sets' own factors (1.2.0)")
    p.add_argument("--views", type=Path, help="reuse the calibration views saved by an earlier run (views.pkl in its "
                   "--out folder) instead of running the sets again (same weights and variants only)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictor = KeypointPredictor.load(args.weights)
    predictor.variants = (predictor.variants[0],) if args.no_tta else DEFAULT_VARIANTS
    predictor.interval_scale = {}
    sets = tuple((s, sh, seed, max(1, round(n * args.scale))) for s, sh, seed, n in CALIBRATION_SETS)
    t0 = time.perf_counter()
    if args.views:
        with args.views.open("rb") as fh:
            domains = pickle.load(fh)
    else:
        domains = run_sets(predictor, sets)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "views.pkl").open("wb") as fh:
            pickle.dump(domains, fh)
    limits = dict(XrayPipeline.max_interval)
    if args.pool == "worst-set":
        result = fit(domains, max_interval=limits, worst=True)
    else:
        renderers: dict[str, list[ViewOutcome]] = {}
        for name, vs in domains.items():
            renderers.setdefault(name.split(" ")[0], []).extend(vs)
        result = fit(renderers, max_interval=limits)
    result["pool"] = args.pool
    result["coverage"] = {d: coverage(vs, result["scale"], max_interval=limits) for d, vs in domains.items()}
    result["coverage_uncalibrated"] = {d: coverage(vs, {}, max_interval=limits) for d, vs in domains.items()}
    result["sets"] = [list(s) for s in sets]
    result["tta"] = {"variants": [v.to_dict() for v in predictor.variants], "point": "first", "weight": 1.0}
    result["minutes"] = round((time.perf_counter() - t0) / 60, 1)
    print(json.dumps({k: result[k] for k in ("scale", "counts", "rounds", "coverage")}, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "calibration.json").write_text(json.dumps(result, indent=2))
    if args.update_weights:
        ck = KeypointPredictor.read_checkpoint(args.weights)
        meta = {**ck.meta, "tta": result["tta"],
                "interval_calibration": {k: result[k] for k in ("scale", "level", "counts", "sets", "coverage", "pool")}}
        path = save_checkpoint(ck.path, ck.model, args.version or ck.version, ck.parts, meta, dtype=None)
        print(f"stored the interval calibration in {path} (version {args.version or ck.version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
