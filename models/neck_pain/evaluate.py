"""Evaluate neck-pain models on held-out phantom pairs: AUC, accuracy, sensitivity, specificity, F1, Brier,
the Bayes-optimal AUC of the same cases (true probabilities) and the FPRAN alignment error.

    python -m models.neck_pain.data --out /tmp/neck/test.npz --first 100000 --count 300
    python -m models.neck_pain.evaluate --data /tmp/neck/test.npz --weights models/neck_pain/neck_pain_v1.pt [more.pt ...]

``--clinical dicom`` keeps only age and sex (what the node reads from DICOM); ``none`` drops all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.common.metrics import binary_metrics, roc_auc
from models.neck_pain.train import load, load_pairs
from pipelines.phantoms.outcome import bayes_auc


@torch.no_grad()
def predict(net: torch.nn.Module, d: dict[str, torch.Tensor], clinical: str = "all", batch: int = 64
            ) -> tuple[np.ndarray, float | None]:
    """Probabilities and the mean alignment error of the finest FPRAN level (px of a 128 px crop), if any."""
    probs, errs = [], []
    for i in range(0, len(d["label"]), batch):
        sl = slice(i, i + batch)
        mask = d["clinical_mask"][sl].clone()
        if clinical == "dicom":
            mask[:, 2:] = 0
        elif clinical == "none":
            mask[:] = 0
        logit, thetas = net(d["xray"][sl].float() / 255, d["mri"][sl].float() / 255, d["clinical"][sl], mask)
        probs.append(torch.sigmoid(logit).numpy())
        if thetas is not None:
            errs.append(grid_error_px(thetas[0], d["theta"][sl]))
    return np.concatenate(probs), (float(np.concatenate(errs).mean()) if errs else None)


def grid_error_px(theta: torch.Tensor, true: torch.Tensor, size: int = 128) -> np.ndarray:
    """Per case: mean distance (pixels of the ``size`` crop) between where ``theta`` and the true alignment put
    a 5 x 5 grid of X-ray crop points (normalised -0.8..0.8) on the MRI crop."""
    g = torch.linspace(-0.8, 0.8, 5)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.ravel(), yy.ravel(), torch.ones(25)], 0)
    return (((theta @ pts - true @ pts) ** 2).sum(1).sqrt().mean(1) * size / 2).numpy()


def evaluate(data: list[Path], weights: list[Path], clinical: str = "all") -> dict:
    d = load_pairs(data)
    y = d["label"].numpy().astype(bool)
    p_true = d["p_true"].numpy()
    identity_err = float(grid_error_px(torch.eye(2, 3).expand_as(d["theta"]), d["theta"]).mean())
    known = bool(np.isfinite(p_true).all())  # site patients (user_data.py) have no known probability
    out = {"cases": int(len(y)), "recovered": float(y.mean()), "clinical": clinical,
           "bayes_auc_realised": roc_auc(y, p_true) if known else None,
           "bayes_auc_expected": bayes_auc(p_true) if known else None,
           "bayes_metrics": binary_metrics(y, p_true) if known else None, "unregistered_error_px": identity_err,
           "models": {}}
    for w in weights:
        net, meta = load(w)
        p, err = predict(net, d, clinical)
        out["models"][str(w)] = {"variant": meta["variant"], **binary_metrics(y, p),
                                 "alignment_error_px": err, "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"),
                                 "seed": meta.get("seed"), "selected_step": meta.get("selected_step"), "val": meta.get("val")}
    return out


def table(res: dict) -> str:
    lines = ["| model | AUC | accuracy | sensitivity | specificity | F1 | Brier | FPRAN error (px) |", "|---|---|---|---|---|---|---|---|"]
    b = res["bayes_metrics"]
    if b is not None:
        lines.append(f"| true probability (Bayes) | {b['auc']:.3f} | {b['accuracy']:.3f} | {b['sensitivity']:.3f} | "
                     f"{b['specificity']:.3f} | {b['f1']:.3f} | {b['brier']:.3f} | |")
    for m in res["models"].values():
        e = f"{m['alignment_error_px']:.1f}" if m["alignment_error_px"] is not None else ""
        lines.append(f"| {m['variant']} | {m['auc']:.3f} | {m['accuracy']:.3f} | {m['sensitivity']:.3f} | "
                     f"{m['specificity']:.3f} | {m['f1']:.3f} | {m['brier']:.3f} | {e} |")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.neck_pain.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--weights", type=Path, nargs="+", default=None)
    ap.add_argument("--clinical", choices=("all", "dicom", "none"), default="all")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from models.neck_pain import DEFAULT_WEIGHTS

    res = evaluate(args.data, args.weights or [DEFAULT_WEIGHTS], args.clinical)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
