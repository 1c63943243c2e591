"""The fit CLI shared by ``models/<name>/ood.py``: features of renderer-A phantoms -> gate -> weights' meta.

Each model's ``ood.py`` states its sets (fit, threshold, test: seeds and image sizes of renderer-A phantoms, never
renderer B) and how to get the penultimate-layer features of one set through its predictor as deployed (locator
and crop, or the keypoints' segment crops). This module runs them (with a feature cache), fits the Mahalanobis gate
(:mod:`models.common.ood`) on the fit set, puts its threshold at the ``--quantile`` of the threshold set's distances,
reports the test sets (rejected fraction and the model's metrics on all vs accepted inputs) and, with
``--update-weights``, stores the gate in the weights' ``meta["ood"]`` (tensors unchanged)::

    python -m models.curvature.ood --cache /tmp/ood/curv --json /tmp/ood/curv.json [--update-weights]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.common.ood import QUANTILE, FeatureGate, fit_gate


@dataclass
class Extracted:
    """Features of one set: (N, D) features, (N,) group index (class or segment) and one JSON-able record per row
    (truth and prediction, for the model's metrics)."""

    features: np.ndarray
    groups: np.ndarray
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SetSpec:
    """A set of renderer-A phantoms: first seed, count, and image shape (None: realistic detector sizes)."""

    seed: int
    count: int
    shape: tuple[int, int] | None

    @property
    def name(self) -> str:
        size = "realistic" if self.shape is None else f"{self.shape[0]}x{self.shape[1]}"
        return f"A {self.seed}-{self.seed + self.count - 1} {size}"


@dataclass(frozen=True)
class GateSpec:
    """What one model's ``ood.py`` hands to :func:`main`."""

    model: str
    load: Callable[[Path | None], Any]
    """weights (None: shipped) -> predictor (its ``gate`` is switched off while features are taken)."""
    extract: Callable[[Any, SetSpec], Extracted]
    fit_sets: tuple[SetSpec, ...]
    threshold_sets: tuple[SetSpec, ...]
    test_sets: tuple[SetSpec, ...]
    group_names: tuple[str, ...] | None
    """Names of the class-conditional means (None: one pooled mean)."""
    known_group: bool
    """True: the distance is to the mean of the input's own group (known at inference, e.g. the segment); False:
    to the nearest mean (the class is not known at inference)."""
    summarize: Callable[[list[dict[str, Any]], np.ndarray], dict[str, Any]]
    """(records, accepted (N,) bool) -> the model's metrics on all and on accepted inputs."""
    feature: str
    """The layer, for the provenance in ``meta``."""


def _extract_cached(spec: GateSpec, pred: Any, s: SetSpec, cache: Path | None, log: bool) -> Extracted:
    path = cache / f"{spec.model}_{s.seed}_{s.count}_{'real' if s.shape is None else s.shape[0]}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        return Extracted(z["features"], z["groups"], json.loads(str(z["records"])))
    t0 = time.perf_counter()
    ex = spec.extract(pred, s)
    if log:
        print(f"{s.name}: {len(ex.features)} inputs in {time.perf_counter() - t0:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=ex.features, groups=ex.groups, records=json.dumps(ex.records))
    return ex


def _cat(parts: list[Extracted]) -> Extracted:
    return Extracted(np.concatenate([p.features for p in parts]), np.concatenate([p.groups for p in parts]),
                     [r for p in parts for r in p.records])


def fit(spec: GateSpec, pred: Any, cache: Path | None, quantile: float, log: bool = True
        ) -> tuple[FeatureGate, dict[str, Any]]:
    """The gate fitted on ``spec.fit_sets`` with its threshold from ``spec.threshold_sets``, and the report of the
    test sets."""
    fit_x = _cat([_extract_cached(spec, pred, s, cache, log) for s in spec.fit_sets])
    thr_x = _cat([_extract_cached(spec, pred, s, cache, log) for s in spec.threshold_sets])
    info = {"feature": spec.feature, "fit_sets": [s.name for s in spec.fit_sets],
            "threshold_sets": [s.name for s in spec.threshold_sets],
            "distance_to": "own group" if spec.known_group else "nearest group mean"}
    gate = fit_gate(fit_x.features, fit_x.groups if spec.group_names else None, spec.group_names, info)
    gate = gate.with_threshold(gate.distance(thr_x.features, thr_x.groups if spec.known_group else None), quantile)
    report: dict[str, Any] = {"threshold": gate.threshold, "info": gate.info, "test": {}}
    for s in spec.test_sets:
        ex = _extract_cached(spec, pred, s, cache, log)
        d = gate.distance(ex.features, ex.groups if spec.known_group else None)
        ok = d <= gate.threshold
        report["test"][s.name] = {"inputs": len(d), "rejected": int(np.sum(~ok)),
                                  "rejected_fraction": float(np.mean(~ok)), "median_distance": float(np.median(d)),
                                  **spec.summarize(ex.records, ok)}
    return gate, report


def store(pred_cls: Any, weights: Path | None, gate: FeatureGate) -> Path:
    """Write ``gate`` into ``meta["ood"]`` of the weights file (tensors and version unchanged)."""
    from models.common.checkpoint import save_checkpoint

    ck = pred_cls.read_checkpoint(weights)
    return save_checkpoint(ck.path, ck.model, ck.version, ck.parts, {**ck.meta, "ood": gate.to_meta()}, dtype=None)


def main(spec: GateSpec, pred_cls: Any, argv: list[str] | None = None,
         extra: Mapping[str, Any] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog=f"python -m models.{spec.model}.ood", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--cache", type=Path, default=None, help="folder for the feature cache of each set")
    ap.add_argument("--quantile", type=float, default=QUANTILE)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--update-weights", action="store_true", help="store the gate in the weights' meta")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pred = spec.load(args.weights)
    pred.gate = None
    t0 = time.perf_counter()
    gate, report = fit(spec, pred, args.cache, args.quantile)
    report.update({"seconds": round(time.perf_counter() - t0, 1), **dict(extra or {})})
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.update_weights:
        print(f"stored the gate in {store(pred_cls, args.weights, gate)}")
    return 0
