"""``cspine-node evaluate xray``: accuracy of the keypoint model on held-out phantoms or annotated folders.

Prints the per-keypoint error in mm, MAE / median / Bland-Altman limits of every measurement against the
ground truth, and the accuracy of the clinical classifications (paper 002 thresholds: Cobb < -13 deg,
SVA > 40 mm, instability > 3.5 mm / 11 deg, Pavlov < 0.75). ``--out DIR`` writes PNG plots like paper 002's
figures 1-3 (corner error box plots per view, Bland-Altman plots, error histograms) and ``metrics.json``.
``--calibrate`` fits the spread scale (so that the calibrated spread matches the RMS keypoint error) and,
with ``--update-weights``, stores it and the metrics in the weights file. ``--style a|b [--shift S|suite]`` runs the
trust evaluation instead (``models.xray_keypoints.trust``: the node's pipeline with its gates on renderer A or B).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.results import KEYPOINT_NAMES, Measurement, View

HELD_OUT_SEED = 900_000
"""First seed of the held-out phantom studies (training uses ``seed * 100000 + i`` with small seeds)."""

MAIN_MEASURES: tuple[tuple[str, str], ...] = (("cobb_c2_c7", "C2-C7"), ("sva_c2_c7", "C2-C7"))


@dataclass
class EvalImage:
    """One evaluated radiograph."""

    view: View
    true: np.ndarray
    visible: np.ndarray
    pred: np.ndarray
    sigma_raw: np.ndarray
    spacing: tuple[float, float]
    truth: list[Measurement]
    predicted: list[Measurement] = field(default_factory=list)
    seconds: float = 0.0


def keypoint_errors_mm(e: EvalImage) -> np.ndarray:
    """(30,) Euclidean error in mm (NaN where the true point is not visible)."""
    d = (e.pred - e.true) * np.array([e.spacing[1], e.spacing[0]])
    err = np.hypot(d[:, 0], d[:, 1])
    return np.where(e.visible, err, np.nan)


def evaluate_phantoms(predictor, *, seed: int, count: int, shape, difficulty: str, progress: bool = True
                      ) -> tuple[list[EvalImage], list[tuple[list[Measurement], list[Measurement]]]]:
    """Predict on ``count`` phantom studies; returns the images and per-study (true, predicted) dynamic pairs."""
    from tqdm import tqdm

    from pipelines.phantoms.xray import generate_study
    from pipelines.xray import geometry
    from pipelines.xray.preprocessing import to_unit_range

    images: list[EvalImage] = []
    dynamics = []
    for s in tqdm(range(seed, seed + count), desc="evaluate xray", disable=not progress, unit="study"):
        study = generate_study(s, shape=shape, difficulty=difficulty)
        per_view: dict[View, EvalImage] = {}
        for view, pv in study.views.items():
            img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
            t0 = time.perf_counter()
            pred = predictor.predict(img)
            dt = time.perf_counter() - t0
            spacing = tuple(float(v) for v in pv.pixel_spacing_mm)
            raw = pred.sigma_px / max(predictor.sigma_scale, 1e-9)
            e = EvalImage(View(view), pv.keypoints, pv.visible, pred.keypoints, raw, spacing, pv.truth, seconds=dt)
            e.predicted = geometry.measure_view(pred.keypoints, spacing, view=View(view))
            images.append(e)
            per_view[View(view)] = e
        if View.FLEXION in per_view and View.EXTENSION in per_view:
            f, x = per_view[View.FLEXION], per_view[View.EXTENSION]
            true_dyn = [m for m in study.truth if m.view is None]
            pred_dyn = geometry.measure_dynamic(f.pred, x.pred, f.spacing, x.spacing)
            dynamics.append((true_dyn, pred_dyn))
    return images, dynamics


def _pairs(images: list[EvalImage], dynamics) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(key, site-or-'all') -> list of (true, predicted) values."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)

    def add(truth: list[Measurement], pred: list[Measurement], suffix: str = "") -> None:
        p = {(m.key, m.site): m.value for m in pred}
        for m in truth:
            v = p.get((m.key, m.site))
            if m.value is None or v is None:
                continue
            out[(m.key + suffix, m.site)].append((m.value, v))
            out[(m.key + suffix, "all")].append((m.value, v))

    for e in images:
        add(e.truth, e.predicted)
    for t, p in dynamics:
        add(t, p, "_change")
    return out


def _classification(pairs: dict[tuple[str, str], list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Accuracy / sensitivity / specificity of the paper-002 threshold rules (per image or per segment)."""
    rules = {
        "kyphosis (Cobb < -13 deg)": (("cobb_c2_c7", "C2-C7"), lambda v: v < -13.0),
        "cervical deformity (SVA > 40 mm)": (("sva_c2_c7", "C2-C7"), lambda v: v > 40.0),
        "SVA < 15 mm": (("sva_c2_c7", "C2-C7"), lambda v: v < 15.0),
        "instability translation (> 3.5 mm)": (("listhesis_distance_change", "all"), lambda v: v > 3.5),
        "instability angle (> 11 deg)": (("listhesis_angle_change", "all"), lambda v: v > 11.0),
        "canal stenosis (Pavlov < 0.75)": (("pavlov_ratio", "all"), lambda v: v < 0.75),
    }
    out = {}
    for name, (key, rule) in rules.items():
        vals = pairs.get(key, [])
        if not vals:
            continue
        t = np.array([rule(a) for a, _ in vals])
        p = np.array([rule(b) for _, b in vals])
        out[name] = {
            "n": int(len(t)), "positives": int(t.sum()), "accuracy": float((t == p).mean()),
            "sensitivity": float((p & t).sum() / t.sum()) if t.sum() else float("nan"),
            "specificity": float((~p & ~t).sum() / (~t).sum()) if (~t).sum() else float("nan"),
        }
    return out


def summarize(images: list[EvalImage], dynamics, gate_sigma_scale: float | None = None) -> dict:
    """All metrics as a JSON-able dict. The uncertainty-gate statistics use ``gate_sigma_scale`` (the scale the
    weights store), else the scale fitted here."""
    errs = np.array([keypoint_errors_mm(e) for e in images])  # (N, 30)
    corners, sl = errs[:, :24], errs[:, 24:]
    pairs = _pairs(images, dynamics)
    meas = {}
    for (key, site), vals in sorted(pairs.items()):
        if site != "all" and (key, site) not in MAIN_MEASURES:
            continue
        a = np.array(vals)
        d = a[:, 1] - a[:, 0]
        meas[f"{key} {site}"] = {
            "n": int(len(d)), "mae": float(np.abs(d).mean()), "median_ae": float(np.median(np.abs(d))),
            "bias": float(d.mean()), "loa": [float(d.mean() - 1.96 * d.std()), float(d.mean() + 1.96 * d.std())],
        }
    per_kp = {n: float(np.nanmean(errs[:, i])) for i, n in enumerate(KEYPOINT_NAMES)}
    px_err = np.array([np.hypot(*(e.pred - e.true).T) for e in images])
    raw = np.array([e.sigma_raw for e in images])
    vis = np.array([e.visible for e in images])
    sigma_scale = float(np.sqrt(np.mean(px_err[vis] ** 2 / 2) / np.mean(raw[vis] ** 2)))
    spread_corr = float(np.corrcoef(px_err[vis], raw[vis])[0, 1])
    # the pipeline's uncertainty gate (median calibrated spread in mm)
    from pipelines.xray.pipeline import XrayPipeline

    gate_scale = sigma_scale if gate_sigma_scale is None else gate_sigma_scale
    med_mm = np.array([np.median(e.sigma_raw) * gate_scale * np.sqrt(e.spacing[0] * e.spacing[1]) for e in images])
    gate_open = med_mm <= XrayPipeline.max_median_sigma_mm
    return {
        "images": len(images),
        "corner_error_mm": {"mean": float(np.nanmean(corners)), "median": float(np.nanmedian(corners)),
                            "p95": float(np.nanpercentile(corners, 95))},
        "spinolaminar_error_mm": {"mean": float(np.nanmean(sl)), "median": float(np.nanmedian(sl))},
        "per_keypoint_mean_mm": per_kp,
        "measurements": meas,
        "classification": _classification(pairs),
        "sigma_scale_fit": sigma_scale,
        "spread_error_correlation": spread_corr,
        "seconds_per_image": float(np.mean([e.seconds for e in images])),
        "gate": {"threshold_mm": XrayPipeline.max_median_sigma_mm, "open": int(gate_open.sum()), "sigma_scale": gate_scale,
                 "median_spread_mm": float(np.median(med_mm)),
                 "corner_error_mm_gate_open": float(np.nanmean(corners[gate_open])) if gate_open.any() else float("nan"),
                 "corner_error_mm_gate_closed": float(np.nanmean(corners[~gate_open])) if (~gate_open).any() else float("nan")},
    }


def print_report(m: dict) -> None:
    print(f"\n{m['images']} radiographs")
    c = m["corner_error_mm"]
    print(f"corner error: mean {c['mean']:.3f} mm, median {c['median']:.3f} mm, 95th pct {c['p95']:.3f} mm")
    s = m["spinolaminar_error_mm"]
    print(f"spinolaminar error: mean {s['mean']:.3f} mm, median {s['median']:.3f} mm")
    print("\nper-keypoint mean error (mm):")
    for name, v in m["per_keypoint_mean_mm"].items():
        print(f"  {name:28s} {v:6.3f}")
    print("\nmeasurements (predicted - truth):")
    print(f"  {'measurement':42s} {'n':>5s} {'MAE':>7s} {'median':>7s} {'bias':>7s}  95% limits of agreement")
    for k, v in m["measurements"].items():
        print(f"  {k:42s} {v['n']:5d} {v['mae']:7.3f} {v['median_ae']:7.3f} {v['bias']:7.3f}  [{v['loa'][0]:.2f}, {v['loa'][1]:.2f}]")
    print("\nclinical classification:")
    for k, v in m["classification"].items():
        print(f"  {k:38s} n={v['n']:4d} pos={v['positives']:3d} acc={v['accuracy']:.3f} "
              f"sens={v['sensitivity']:.3f} spec={v['specificity']:.3f}")
    g = m["gate"]
    print(f"\nuncertainty gate (median spread <= {g['threshold_mm']:.2f} mm, scale {g['sigma_scale']:.3f}): open for {g['open']} / "
          f"{m['images']} radiographs (median spread {g['median_spread_mm']:.3f} mm); corner error where open "
          f"{g['corner_error_mm_gate_open']:.3f} mm, where closed {g['corner_error_mm_gate_closed']:.3f} mm")
    print(f"\nspread calibration: fitted scale {m['sigma_scale_fit']:.3f}, error-spread correlation "
          f"{m['spread_error_correlation']:.3f}; {m['seconds_per_image'] * 1000:.0f} ms per image")


def plot(images: list[EvalImage], dynamics, out: Path) -> list[Path]:
    """PNG figures in ``out`` (paper 002 figures 1-3 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(3, 1, figsize=(14, 11), sharey=True)
    for ax, view in zip(axes, (View.FLEXION, View.NEUTRAL, View.EXTENSION), strict=True):
        errs = np.array([keypoint_errors_mm(e) for e in images if e.view == view])
        if errs.size:
            data = [errs[:, i][np.isfinite(errs[:, i])] for i in range(24)]
            ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
            ax.set_xticks(range(1, 25), [n.replace("antero-", "A").replace("postero-", "P").replace("superior", "S")
                                         .replace("inferior", "I") for n in KEYPOINT_NAMES[:24]], rotation=90, fontsize=7)
        ax.set_ylabel("error (mm)")
        ax.set_title(f"corner error, {view.value}")
    fig.tight_layout()
    paths.append(out / "corner_errors.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    pairs = _pairs(images, dynamics)
    for key, unit, label in (("cobb_c2_c7", "deg", "C2-C7 Cobb angle"), ("sva_c2_c7", "mm", "C2-C7 SVA")):
        a = np.array(pairs.get((key, "C2-C7"), []))
        if not a.size:
            continue
        d = a[:, 1] - a[:, 0]
        mean = (a[:, 0] + a[:, 1]) / 2
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        ax1.hist(np.abs(d), bins=30)
        ax1.set_xlabel(f"|error| ({unit})")
        ax1.set_title(f"{label}: MAE {np.abs(d).mean():.2f}, median {np.median(np.abs(d)):.2f} {unit}")
        ax2.scatter(mean, d, s=6)
        for y, style in ((d.mean(), "-"), (d.mean() - 1.96 * d.std(), "--"), (d.mean() + 1.96 * d.std(), "--")):
            ax2.axhline(y, color="k", linestyle=style, linewidth=1)
        ax2.set_xlabel(f"mean of model and truth ({unit})")
        ax2.set_ylabel(f"model - truth ({unit})")
        ax2.set_title(f"Bland-Altman: limits [{d.mean() - 1.96 * d.std():.2f}, {d.mean() + 1.96 * d.std():.2f}] {unit}")
        fig.tight_layout()
        paths.append(out / f"bland_altman_{key}.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cspine-node evaluate xray", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, help="weights file (default: the shipped model)")
    p.add_argument("--data", default="phantom", help="'phantom' (held-out studies) or a COCO / labelme folder")
    p.add_argument("--count", type=int, default=50, help="phantom studies (3 views each)")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    p.add_argument("--shape", default="native", help="'native' (realistic detector sizes) or ROWSxCOLS")
    p.add_argument("--difficulty", default="realistic")
    p.add_argument("--out", type=Path, help="folder for PNG plots and metrics.json")
    p.add_argument("--calibrate", action="store_true", help="fit the spread scale on this data")
    p.add_argument("--update-weights", action="store_true", help="with --calibrate: store scale + metrics in the weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--iterations", type=int, help="cascade weights: override the stored stage-2 iterations")
    p.add_argument("--no-tta", action="store_true", help="cascade weights: the plain pass only (no test-time variants)")
    p.add_argument("--no-interval-calibration", action="store_true",
                   help="the Monte-Carlo intervals as they are (no calibration factors)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--style", choices=("a", "b"),
                   help="trust evaluation (models/xray_keypoints/trust.py): the node's pipeline with its gates on "
                        "renderer A or B studies; prints level assignment, gated fraction, interval coverage")
    p.add_argument("--shift", default="", help="with --style: shifts NAME[:VALUE],... on every study, or 'suite'")
    p.add_argument("--max-size", type=int, help="with --style: largest image side (default: realistic sizes)")
    return p.parse_args(argv)


def _folder_images(predictor, folder: Path) -> list[EvalImage]:
    from models.xray_keypoints.data import VIEW_ORDER
    from models.xray_keypoints.train import load_samples
    from pipelines.xray import geometry

    ns = argparse.Namespace(data=str(folder), label_map=None)
    out = []
    for raw in load_samples(ns, seed=0, count=0):
        t0 = time.perf_counter()
        pred = predictor.predict(raw.image.astype(np.float32))
        dt = time.perf_counter() - t0
        view = View.NEUTRAL if raw.view < 0 else VIEW_ORDER[raw.view]
        truth = geometry.measure_view(raw.keypoints, raw.spacing_mm, view=view, visible=raw.visible)
        e = EvalImage(view, raw.keypoints, raw.visible, pred.keypoints, pred.sigma_px / predictor.sigma_scale,
                      raw.spacing_mm, truth, seconds=dt)
        e.predicted = geometry.measure_view(pred.keypoints, raw.spacing_mm, view=view)
        out.append(e)
    return out


def cli(argv: list[str] | None = None) -> int:
    import torch

    from models.xray_keypoints.predictor import KeypointPredictor

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = KeypointPredictor.load(args.weights, args.device)
    if args.iterations and predictor.cascade:
        predictor.crop["iterations"] = args.iterations
    if args.no_tta or args.calibrate:  # sigma_scale scales the heatmap spread of the plain pass
        predictor.variants = predictor.variants[:1]
    if args.no_interval_calibration:
        predictor.interval_scale = {}
    if args.style or args.shift:
        return _trust(predictor, args)
    if args.data == "phantom":
        shape = None if args.shape == "native" else tuple(int(v) for v in args.shape.lower().split("x"))
        images, dynamics = evaluate_phantoms(predictor, seed=args.seed, count=args.count, shape=shape,
                                             difficulty=args.difficulty, progress=not args.no_progress)
    else:
        images, dynamics = _folder_images(predictor, Path(args.data)), []
    metrics = summarize(images, dynamics, None if args.calibrate else predictor.sigma_scale)
    metrics["data"] = {"data": args.data, "count": args.count, "seed": args.seed, "shape": args.shape,
                       "difficulty": args.difficulty, "weights_version": predictor.version,
                       "sigma_scale_used": predictor.sigma_scale, "stage2_iterations": predictor.iterations}
    print_report(metrics)
    if args.out:
        paths = plot(images, dynamics, args.out)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("\nwrote " + ", ".join(str(p) for p in paths + [args.out / "metrics.json"]))
    if args.calibrate and args.update_weights:
        from models.common.checkpoint import save_checkpoint

        ck = KeypointPredictor.read_checkpoint(args.weights)
        meta = {**ck.meta, "sigma_scale": metrics["sigma_scale_fit"],
                "metrics": {k: metrics[k] for k in ("corner_error_mm", "spinolaminar_error_mm", "measurements", "data",
                                                    "gate")}}
        path = save_checkpoint(ck.path, ck.model, ck.version, ck.parts, meta, dtype=None)
        print(f"stored sigma_scale {metrics['sigma_scale_fit']:.3f} and metrics in {path}")
    return 0


def _trust(predictor, args: argparse.Namespace) -> int:  # noqa: ANN001
    from models.xray_keypoints import trust

    style = args.style or "a"
    views = trust.evaluate(predictor, style=style, seed=args.seed, count=args.count, shift=args.shift,
                           max_size=args.max_size, progress=not args.no_progress)
    m = trust.summarize(views)
    m["data"] = {"style": style, "shift": args.shift or "none", "seed": args.seed, "count": args.count,
                 "max_size": args.max_size, "weights_version": predictor.version,
                 "tta_variants": len(predictor.variants), "interval_calibration": bool(predictor.interval_scale)}
    trust.print_summary(m, f"renderer {style.upper()}" + (f", shift {args.shift}" if args.shift else ""))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "trust.json").write_text(json.dumps(m, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
