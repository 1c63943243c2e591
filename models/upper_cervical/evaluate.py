"""Evaluate the upper cervical classifier on held-out phantoms through the spine locator (the deployed path).

Reports per-label AUC and average precision, their means (mean AUC, mAP), sensitivity / specificity at the
decision threshold, how often mutually exclusive labels are predicted together, and the learned label-relation
entries of the dependent pairs. ``--true-roi`` also scores the true-landmark ROI (locator error removed).

    python -m models.upper_cervical.evaluate --data /tmp/uc_test.npz --json /tmp/uc_eval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.common.images import from_u8
from models.common.metrics import average_precision, roc_auc
from models.curvature.roi import DEFAULT_LOCATOR
from models.upper_cervical import DEFAULT_WEIGHTS, VIEW_ORDER
from models.upper_cervical.data import CONTEXT
from models.upper_cervical.predictor import THRESHOLD, UpperCervicalPredictor, decide
from models.upper_cervical.thresholds import located_probabilities
from pipelines.phantoms.xray.upper_cervical import EXCLUSIVE_PAIRS
from pipelines.vocabulary import UPPER_CERVICAL_LABELS


def scores(labels: np.ndarray, probs: np.ndarray, thresholds: dict[str, float] | None = None,
           exclusive: list[tuple[int, int]] | None = None) -> dict:
    """Per-label AUC / AP, sensitivity / specificity of the deployed decisions (:func:`decide` at
    ``thresholds``, default 0.5), mean AUC, mAP, and exclusive pairs co-predicted before the decision rule."""
    thresholds = thresholds or {}
    th = np.array([thresholds.get(k, THRESHOLD) for k in UPPER_CERVICAL_LABELS])
    decisions = decide(probs, th, exclusive or [])
    per = {}
    for k, name in enumerate(UPPER_CERVICAL_LABELS):
        y, p = labels[:, k] > 0.5, probs[:, k]
        pred = decisions[:, k]
        per[name] = {"positives": int(y.sum()), "auc": roc_auc(y, p), "ap": average_precision(y, p),
                     "sensitivity": float(pred[y].mean()) if y.any() else float("nan"),
                     "specificity": float((~pred[~y]).mean()) if (~y).any() else float("nan"),
                     "threshold": float(th[k])}
    excl = {}
    for a, b in EXCLUSIVE_PAIRS:
        i, j = UPPER_CERVICAL_LABELS.index(a), UPPER_CERVICAL_LABELS.index(b)
        excl[f"{a}+{b}"] = int(np.sum((probs[:, i] >= th[i]) & (probs[:, j] >= th[j])))
    return {"per_label": per, "mean_auc": float(np.nanmean([v["auc"] for v in per.values()])),
            "map": float(np.nanmean([v["ap"] for v in per.values()])), "exclusive_co_predictions": excl}


def evaluate(data: Path, weights: Path, locator: Path, true_roi: bool = False) -> dict:
    d = np.load(data)
    if "images" not in d:
        raise SystemExit(f"{data} has no full images: prepare it with --full")
    pr = UpperCervicalPredictor.load(weights, locator=locator)
    labels = d["labels"]
    th = {k: pr.threshold(k) for k in UPPER_CERVICAL_LABELS}
    probs = located_probabilities(pr, d["images"])
    out = {"data": str(data), "studies": len(labels), "views": [v.value for v in VIEW_ORDER],
           "located": scores(labels, probs, th, pr.exclusive)}
    if true_roi:
        from models.curvature.augment import centre_window

        x = torch.from_numpy(from_u8(d["crops"]) * 2 - 1)
        tc = centre_window(x, pr.input_size, CONTEXT).numpy()
        out["true_roi"] = scores(labels, np.concatenate([pr.probabilities(tc[i:i + 32]) for i in range(0, len(tc), 32)]), th, pr.exclusive)
    rel = pr.net.relation.matrix.detach().cpu().numpy()
    out["relation"] = {f"{UPPER_CERVICAL_LABELS[i]}->{UPPER_CERVICAL_LABELS[j]}": float(rel[j, i])
                       for i, j in pr.meta["relations"]["dependent"]}
    out["relation"].update({f"{UPPER_CERVICAL_LABELS[i]}<->{UPPER_CERVICAL_LABELS[j]}": float(rel[j, i] + rel[i, j]) / 2
                            for i, j in pr.meta["relations"]["exclusive"]})
    return out


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.upper_cervical.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--locator", type=Path, default=DEFAULT_LOCATOR)
    ap.add_argument("--true-roi", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = evaluate(args.data, args.weights, args.locator, args.true_roi)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    for mode in ("located", "true_roi"):
        if mode not in res:
            continue
        r = res[mode]
        print(f"[{mode}] {res['studies']} studies: mean AUC {r['mean_auc']:.3f}, mAP {r['map']:.3f}; "
              f"exclusive pairs above threshold together (before the decision rule) {r['exclusive_co_predictions']}")
        for name, v in r["per_label"].items():
            print(f"  {name:32s} n+={v['positives']:3d} AUC {v['auc']:.3f} AP {v['ap']:.3f} "
                  f"sens {v['sensitivity']:.2f} spec {v['specificity']:.2f} (p >= {v['threshold']:.2f})")
    print("learned relations:", {k: round(v, 2) for k, v in res["relation"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
