"""Evaluate the MRI models on fresh phantoms: AUC, accuracy, sensitivity, specificity, F1 per task, ROC
curves as PNG, disc localisation error (mm) and inference time per series.

``python -m models.mri.evaluate --seed 900000 --count 100 --out eval/mri`` (seeds must not overlap training:
training uses 100000.., validation 800000..). With ``--style a|b [--shift ...]`` or ``--style c`` the model is evaluated
through the real pipeline on written series of a renderer and the shift suite (``models.mri.evaluate_series``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.common.metrics import binary_metrics, roc_curve
from pipelines.mri.grading import THRESHOLDS
from pipelines.mri.preprocessing import FORAMEN_LATERAL_MM, normalise
from pipelines.phantoms.mri import MriPhantom, generate_series
from pipelines.vocabulary import TASKS


def analyse_phantom(predictor, ph: MriPhantom):
    """Run the predictor on a phantom exactly as ``MriPipeline`` does on its DICOM files."""
    vol = normalise(ph.volume.astype(np.float32))
    lat = np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice]
    left = int(np.argmin(np.abs(lat - FORAMEN_LATERAL_MM)))
    right = int(np.argmin(np.abs(lat + FORAMEN_LATERAL_MM)))
    return predictor.analyse(vol, ph.pixel_spacing_mm, ph.mid_slice, left, right)


def evaluate(predictor, seeds: list[int], *, weighting: str = "T2") -> dict:
    """Per-task labels/scores and summary metrics over the phantoms of ``seeds``."""
    labels: dict[str, list[bool]] = {t: [] for t in TASKS}
    scores: dict[str, list[float]] = {t: [] for t in TASKS}
    loc_err, times = [], []
    for seed in seeds:
        ph = generate_series(seed, weighting=weighting)
        t0 = time.perf_counter()
        va = analyse_phantom(predictor, ph)
        times.append(time.perf_counter() - t0)
        truth = np.array([t.disc_centre_px for t in ph.levels])
        loc_err.extend((np.hypot(*(va.centres_px - truth).T) * ph.pixel_spacing_mm[0]).tolist())
        for t in TASKS:
            labels[t].extend(lv.label(t) for lv in ph.levels)
            scores[t].extend(float(p) for p in va.probabilities[t])
    metrics = {t: binary_metrics(np.array(labels[t]), np.array(scores[t]), THRESHOLDS[t]) for t in TASKS}
    return {
        "tasks": metrics,
        "localisation_error_mm": {"mean": float(np.mean(loc_err)), "p95": float(np.percentile(loc_err, 95)),
                                  "max": float(np.max(loc_err)),
                                  "levels_over_5mm": int(np.sum(np.array(loc_err) > 5.0)), "levels": len(loc_err)},
        "seconds_per_series": {"mean": float(np.mean(times)), "max": float(np.max(times))},
        "n_series": len(seeds), "weighting": weighting,
        "_labels": {t: [bool(v) for v in labels[t]] for t in TASKS},
        "_scores": scores,
    }


def plot_rocs(result: dict, out: Path) -> list[Path]:
    """One ROC curve PNG per task (with AUC and the operating point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for t in TASKS:
        y, s = np.array(result["_labels"][t]), np.array(result["_scores"][t])
        fpr, tpr = roc_curve(y, s)
        m = result["tasks"][t]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr, lw=2, label=f"AUC {m['auc']:.3f}")
        ax.plot([1 - m["specificity"]], [m["sensitivity"]], "o", label=f"threshold {m['threshold']:.2f}")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{t} (n={m['n']}, pos={m['positives']})")
        ax.legend(loc="lower right")
        fig.tight_layout()
        p = out / f"roc_{t}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.mri.evaluate", description=__doc__)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=900_000)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--weighting", default="T2", choices=["T2", "T1"])
    ap.add_argument("--out", type=Path, default=Path("models/mri/eval"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--style", choices=("a", "b", "c"), default=None,
                    help="evaluate through the real pipeline on written series of renderer A, B or C "
                    "(models.mri.evaluate_series; C takes no --shift)")
    ap.add_argument("--shift", nargs="+", default=[], metavar="NAME[:VALUE]", help="shift suite items, or 'suite'")
    ap.add_argument("--json", type=Path, default=None, help="with --style: write the summary and per-level records")
    ap.add_argument("--single-pass", action="store_true",
                    help="one localiser pass on the image-centred window (MriPredictor.recentre off, as before mri-2.1.0)")
    ap.add_argument("--no-stability", action="store_true",
                    help="without the localiser's re-runs (MriPredictor.stability off: the inference before the check)")
    ap.add_argument("--anchor-decoder", choices=("count", "count-skip", "chain", "off"), default=None,
                    help="weights with the anchor channels (train --anchor): MriPredictor.anchor_decoder (default: "
                    "the weights' own)")
    args = ap.parse_args(argv)
    if args.style == "c" and args.shift:
        ap.error("renderer C takes no --shift (it draws its own acquisition)")
    if args.style or args.shift:
        from models.mri import evaluate_series

        args.style = args.style or "a"
        return evaluate_series.cli(args)
    import torch

    from models.mri.predictor import MriPredictor

    torch.set_num_threads(args.threads)
    pred = MriPredictor.load(args.weights)
    pred.recentre = not args.single_pass
    pred.stability = not args.no_stability
    res = evaluate(pred, list(range(args.seed, args.seed + args.count)), weighting=args.weighting)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_rocs(res, args.out)
    public = {k: v for k, v in res.items() if not k.startswith("_")}
    public["weights_version"] = pred.version
    public["seeds"] = [args.seed, args.count]
    (args.out / "metrics.json").write_text(json.dumps(public, indent=1))
    for t, m in res["tasks"].items():
        print(f"{t:26s} AUC {m['auc']:.3f} acc {m['accuracy']:.3f} sens {m['sensitivity']:.3f} "
              f"spec {m['specificity']:.3f} F1 {m['f1']:.3f} (n={m['n']}, pos={m['positives']})")
    le = res["localisation_error_mm"]
    print(f"disc localisation error mean {le['mean']:.2f} mm, p95 {le['p95']:.2f} mm, "
          f"{le['levels_over_5mm']}/{le['levels']} levels > 5 mm; "
          f"{res['seconds_per_series']['mean']:.2f} s per series")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
