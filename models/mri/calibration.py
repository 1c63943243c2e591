"""Calibrated per-finding probabilities of the MRI level classifier (issue 14: "every graded finding carries a
probability that is calibrated").

The classifier's logit ``z`` of each finding is mapped to ``sigmoid(a z + b)`` before the pipeline grades it:
temperature scaling (``b = 0``, ``a = 1 / T``) or Platt scaling (``a``, ``b`` free), chosen per finding by the
negative log-likelihood on a held-out half of the calibration set, then refitted on the whole set. The map is
stored in the weights file's meta (``calibration``: ``{"tasks": {task: {"a": .., "b": .., "method": ..}}, ...}``,
tensors unchanged) and applied by ``MriPredictor.analyse`` (``predictor.calibration``; an empty dict gives the raw
probabilities).

Calibration set: series of renderer A, renderer B and the shift suite on both (``CALIBRATION_SETS``, seeds
disjoint from training, validation, gate tuning and the card's test sets), written as DICOM and analysed through
``MriPipeline.run`` (``evaluate_series``), using the levels the pipeline grades (the probabilities it reports)::

    python -m models.mri.calibration --records /tmp/mri_cal.json [--update-weights] [--test-records /tmp/t.json]

``--test-records`` also runs the card's test sets (``TEST_SETS``) and reports ECE/Brier before and after per set
with a reliability plot (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import optimize

from models.mri.predictor import apply_calibration
from pipelines.vocabulary import TASKS

CALIBRATION_SETS: tuple[tuple[str, str, int, int], ...] = (
    ("a", "", 760_000, 16), ("a", "suite", 770_000, 16), ("b", "", 780_000, 16), ("b", "suite", 790_000, 16))
"""(style, shifts, first seed, count) of the calibration series."""
TEST_SETS: tuple[tuple[str, str, int, int], ...] = (
    ("a", "", 900_100, 16), ("a", "suite", 750_000, 16), ("b", "", 730_000, 16), ("b", "suite", 740_000, 18))
"""The held-out series of the model card's tables (never used for fitting)."""
LOGIT_CLIP = 30.0
"""Logits recovered from probabilities are clipped to +-this (float64 sigmoid saturates near 37)."""


def logit(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p)
    return np.clip(z, -LOGIT_CLIP, LOGIT_CLIP)


def nll(y: np.ndarray, z: np.ndarray, a: float, b: float) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``sigmoid(a z + b)``."""
    s = a * np.asarray(z, np.float64) + b
    return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))


def fit_temperature(y: np.ndarray, z: np.ndarray) -> dict:
    r = optimize.minimize_scalar(lambda la: nll(y, z, float(np.exp(-la)), 0.0), bounds=(-3.0, 4.0), method="bounded")
    return {"method": "temperature", "a": float(np.exp(-r.x)), "b": 0.0, "temperature": float(np.exp(r.x))}


def fit_platt(y: np.ndarray, z: np.ndarray) -> dict:
    r = optimize.minimize(lambda v: nll(y, z, v[0], v[1]), np.array([1.0, 0.0]), method="Nelder-Mead",
                          options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
    return {"method": "platt", "a": float(r.x[0]), "b": float(r.x[1])}


FITS = {"temperature": fit_temperature, "platt": fit_platt}


def task_arrays(records: list[dict], task: str, graded_only: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, raw logits, series keys) of ``records`` (``evaluate_series.run_case`` output of an uncalibrated
    model) at the levels the pipeline graded."""
    keep = [r for r in records if (r["assessable"] or not graded_only) and r["model_probs"][task] is not None]
    y = np.array([float(r["labels"][task]) for r in keep])
    z = logit(np.array([r["model_probs"][task] for r in keep]))
    keys = np.array([f"{r['style']}|{r['shifts']}|{r['seed']}" for r in keep])
    return y, z, keys


def fit(records: list[dict]) -> dict:
    """Per finding: both maps fitted on the series of even index of each set, compared by NLL on the odd ones; the
    better one (ties: temperature) refitted on all. Returns the ``calibration`` meta entry."""
    out: dict = {"tasks": {}, "selection": {}}
    for task in TASKS:
        y, z, keys = task_arrays(records, task)
        uniq = sorted(set(keys))
        held = np.isin(keys, uniq[1::2])
        scores = {}
        for name, f in FITS.items():
            m = f(y[~held], z[~held])
            scores[name] = nll(y[held], z[held], m["a"], m["b"])
        best = "platt" if scores["platt"] < scores["temperature"] - 1e-4 else "temperature"
        out["tasks"][task] = FITS[best](y, z)
        out["selection"][task] = {"heldout_nll": {k: round(v, 5) for k, v in scores.items()},
                                  "raw_heldout_nll": round(nll(y[held], z[held], 1.0, 0.0), 5),
                                  "levels": int(len(y)), "heldout_levels": int(held.sum())}
    return out


def ece_table(records: list[dict], cal: dict | None) -> dict:
    """Per finding ECE and Brier of the graded probabilities, raw and with ``cal`` (the ``tasks`` map)."""
    from models.common.metrics import brier, expected_calibration_error

    res = {}
    for task in TASKS:
        y, z, _ = task_arrays(records, task)
        p0 = apply_calibration(z, None)
        p1 = apply_calibration(z, (cal or {}).get(task))
        res[task] = {"n": int(len(y)), "positives": int(y.sum()),
                     "ece_before": expected_calibration_error(y, p0), "ece_after": expected_calibration_error(y, p1),
                     "brier_before": brier(y, p0), "brier_after": brier(y, p1)}
    return res


def reliability_plot(sets: dict[str, list[dict]], cal: dict, path: Path) -> Path:
    """One panel per finding: observed fraction against mean probability (10 bins) over all ``sets``' graded levels,
    raw and calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.common.metrics import calibration_bins, expected_calibration_error

    records = [r for rs in sets.values() for r in rs]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 4.2))
    for ax, task in zip(axes, TASKS, strict=True):
        y, z, _ = task_arrays(records, task)
        for label, p, style in (("raw", apply_calibration(z, None), "o-"),
                                ("calibrated", apply_calibration(z, cal.get(task)), "s-")):
            bins = [b for b in calibration_bins(y, p, 10) if b["count"]]
            ax.plot([b["mean_p"] for b in bins], [b["frac_pos"] for b in bins], style,
                    label=f"{label} (ECE {expected_calibration_error(y, p):.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed fraction positive",
               title=f"{task}\n{len(y)} graded levels ({', '.join(sets)})")
        ax.title.set_fontsize(8)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run_sets(weights: Path | None, sets: tuple[tuple[str, str, int, int], ...], log: bool = False) -> dict[str, list[dict]]:
    """Analyse every set's series with the raw (uncalibrated) probabilities: set name -> records."""
    from models.mri.evaluate_series import RecordingModel, evaluate_series
    from models.mri.predictor import MriPredictor
    from pipelines.mri.pipeline import MriPipeline

    pred = MriPredictor.load(weights)
    pred.calibration = {}
    pipe = MriPipeline(RecordingModel(pred))
    out = {}
    for style, shifts, seed, n in sets:
        name = style.upper() + (f" {shifts}" if shifts else "")
        _, recs = evaluate_series(pipe, style, list(range(seed, seed + n)), [shifts] if shifts else [], log=log)
        out[name] = recs
    return out


def _load_or_run(path: Path | None, weights: Path | None, sets: tuple, log: bool) -> dict[str, list[dict]]:
    if path is not None and path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    res = run_sets(weights, sets, log)
    print(f"ran {sum(n for *_, n in sets)} series in {time.perf_counter() - t0:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, default=str))
    return res


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(prog="python -m models.mri.calibration", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped mri_v2.pt")
    ap.add_argument("--records", type=Path, default=None, help="JSON cache of the calibration sets' records")
    ap.add_argument("--test-records", type=Path, default=None, help="also run (or read) the card's test sets")
    ap.add_argument("--plot", type=Path, default=None, help="reliability plot PNG of the test sets")
    ap.add_argument("--out", type=Path, default=None, help="write the fit and the ECE tables as JSON")
    ap.add_argument("--update-weights", action="store_true", help="store the calibration in the weights' meta")
    ap.add_argument("--version", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cal_sets = _load_or_run(args.records, args.weights, CALIBRATION_SETS, args.log)
    records = [r for rs in cal_sets.values() for r in rs]
    result = fit(records)
    result["sets"] = [list(s) for s in CALIBRATION_SETS]
    result["levels"] = "graded levels (those the pipeline reports a probability for)"
    result["calibration_ece"] = {name: ece_table(rs, result["tasks"]) for name, rs in cal_sets.items()}
    print(json.dumps({"tasks": result["tasks"], "selection": result["selection"]}, indent=1))
    report = dict(result)
    if args.test_records is not None:
        test = _load_or_run(args.test_records, args.weights, TEST_SETS, args.log)
        report["test_ece"] = {name: ece_table(rs, result["tasks"]) for name, rs in test.items()}
        report["test_ece"]["all four"] = ece_table([r for rs in test.values() for r in rs], result["tasks"])
        for name, t in report["test_ece"].items():
            print(f"{name:10s} " + " | ".join(f"{k[:14]} ECE {v['ece_before']:.3f}->{v['ece_after']:.3f} "
                                               f"Brier {v['brier_before']:.3f}->{v['brier_after']:.3f}"
                                               for k, v in t.items()))
        if args.plot:
            reliability_plot(test, result["tasks"], args.plot)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.update_weights:
        from models.common.checkpoint import save_checkpoint
        from models.mri.predictor import MriPredictor

        ck = MriPredictor.read_checkpoint(args.weights)
        meta = {**ck.meta, "calibration": {k: result[k] for k in ("tasks", "selection", "sets", "levels")}}
        version = args.version or ck.version
        if args.version:
            meta["config"] = {**meta.get("config", {}), "version": version}
        path = save_checkpoint(ck.path, ck.model, version, ck.parts, meta, dtype=None)
        print(f"stored the calibration in {path} (version {version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
