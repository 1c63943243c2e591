"""``cspine-node evaluate xray --style a|b --shift ...``: is the node right or honestly "not measurable"?

Runs the X-ray pipeline as the node runs it (DICOM files on disk -> ``XrayPipeline`` with the keypoint model, its
uncertainty, interval and plausibility gates) on studies of renderer A or B, optionally under the shift suite
(``pipelines.phantoms.shifts``), and compares with the exact truth:

* corner error (mm, visible corners, every view whatever the gates say);
* level assignment: a predicted vertebra is assigned correctly when its centre is nearest to the true centre of the
  same vertebra among C1 (C2 moved up one level), C2..C7 and T1; a view is mis-assigned when any of its six is not;
* C2-C7 Cobb and SVA on the views the pipeline measured: MAE, and the coverage of the reported 95 % intervals
  (fraction of measured values whose interval holds the truth);
* the fraction of views gated "not measurable" (their Cobb angle), by reason;
* the count of views with a mis-assigned level whose Cobb angle or SVA was reported as measurable (target: 0);
* reliability: the observed coverage of the reported interval scaled to 50/80/90/95/99 % (each side x
  z(level) / z(95 %), the Gaussian shape; the node reports the 95 % one), and :func:`plot_reliability` (PNG).

``python -m models.xray_keypoints.trust plot OUT.png NAME=trust.json ...`` draws the reliability plot of saved
summaries (``cspine-node evaluate xray --style ... --out DIR`` writes ``DIR/trust.json``).

The seed classifiers are not run (``XrayPipeline`` gets the keypoint model only).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.vocabulary import View

MAIN = (("cobb_c2_c7", "Cobb", "deg"), ("sva_c2_c7", "SVA", "mm"))
LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
"""Nominal levels of the reliability plot."""


@dataclass
class ViewOutcome:
    """One view: errors, level assignment, what the pipeline reported."""

    study: int
    shift: str
    view: View
    corner_error_mm: np.ndarray
    assigned: np.ndarray
    """(6,) bool: predicted C2..C7 nearest to their own true vertebra."""
    reported: dict[str, tuple[float | None, tuple[float, float] | None, str]] = field(default_factory=dict)
    """key -> (value, interval, reason) as the pipeline reported it (key: the measurement key for C2-C7, else
    ``"key site"``, e.g. ``"sdvb C4"``)."""
    truth: dict[str, float] = field(default_factory=dict)

    @property
    def misassigned(self) -> bool:
        return not bool(self.assigned.all())

    @property
    def measured(self) -> bool:
        return any(self.reported.get(k, (None,))[0] is not None for k, _, _ in MAIN)


def _centres(points: np.ndarray) -> np.ndarray:
    return points[:24].reshape(6, 4, 2).mean(axis=1)


def level_assignment(pred: np.ndarray, true: np.ndarray, t1: np.ndarray | None = None) -> np.ndarray:
    """(6,) bool: each predicted vertebra's centre is nearest to the same true vertebra's (candidates C1 .. T1)."""
    c = _centres(true)
    t1c = t1.mean(axis=0) if t1 is not None else c[5] + (c[5] - c[4])
    cand = np.vstack([c[0] - (c[1] - c[0]), c, t1c])  # C1 (virtual), C2..C7, T1
    p = _centres(pred)
    d = np.hypot(*(p[:, None, :] - cand[None, :, :]).transpose(2, 0, 1))
    return np.argmin(d, axis=1) == np.arange(1, 7)


def _reason_kind(reason: str) -> str:
    r = reason.removeprefix("not measurable: ")
    if r.startswith("implausible anatomy: "):
        first = r.removeprefix("implausible anatomy: ").split(";")[0].split(" (")[0]
        return "implausible anatomy: " + re.sub(r"\d+(\.\d+)?", "#", first)
    if "uncertainty" in r:
        return "keypoint uncertainty too high"
    if "interval" in r:
        return "95% interval too wide"
    return r[:60]


def _only_plausibility(v: ViewOutcome) -> bool:
    """True when the plausibility gate alone stopped the view's Cobb and SVA (no uncertainty or interval reason)."""
    reasons = [v.reported.get(k, (None, None, ""))[2] for k, _, _ in MAIN]
    return all("implausible anatomy" in r and "uncertainty" not in r and "interval" not in r for r in reasons)


def make_study(style: str, seed: int, shift: str, max_size: int | None) -> Any:
    from pipelines.phantoms.shifts import shift_study

    if style == "b":
        from pipelines.phantoms.xray_b import generate_study_b

        st = generate_study_b(seed, max_size=max_size)
    else:
        from pipelines.phantoms.xray import generate_study

        st = generate_study(seed, shape=(max_size, max_size) if max_size else None)
    return shift_study(st, shift)


def measurement_label(key: str, site: str) -> str:
    """The ``ViewOutcome.reported`` / ``truth`` key of a measurement."""
    return key if site == "C2-C7" else f"{key} {site}"


def evaluate(predictor: Any, *, style: str, seed: int, count: int, shift: str = "", max_size: int | None = None,
             progress: bool = True, max_interval: dict[str, float] | None = None) -> list[ViewOutcome]:
    """Run the pipeline on ``count`` studies of renderer ``style`` (``shift``: a spec for every study, or
    ``suite``: study i gets ``SUITE[i % len(SUITE)]``). ``max_interval``: the pipeline's interval gate (``{}``:
    none, as for fitting the interval calibration)."""
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.shifts import SUITE
    from pipelines.study import Study
    from pipelines.xray.pipeline import XrayPipeline

    pipe = XrayPipeline(predictor)
    if max_interval is not None:
        pipe.max_interval = dict(max_interval)
    out: list[ViewOutcome] = []
    for i in range(count):
        spec = SUITE[i % len(SUITE)] if shift == "suite" else shift
        t0 = time.perf_counter()
        st = make_study(style, seed + i, spec, max_size)
        with tempfile.TemporaryDirectory() as tmp:
            study = Study.from_paths(write_study(st, Path(tmp)))[0]
            result = pipe.run(study, study.instances)
        by_uid = {pv.sop_instance_uid: pv for pv in st.views.values()}
        for img in result.images:
            pv = by_uid[img.image_uid]
            pred = np.array([[k.x, k.y] for k in img.keypoints])
            sp = pv.pixel_spacing_mm
            d = (pred[:24] - pv.keypoints[:24]) * np.array([sp[1], sp[0]])
            err = np.where(pv.visible[:24], np.hypot(d[:, 0], d[:, 1]), np.nan)
            o = ViewOutcome(seed + i, spec or "none", pv.view, err,
                            level_assignment(pred, pv.keypoints, getattr(pv, "t1_corners", None)))
            for m in result.measurements:
                if m.view == pv.view and img.image_uid in m.image_uids:
                    o.reported[measurement_label(m.key, m.site)] = (m.value, m.interval, m.reason)
            o.truth = {measurement_label(m.key, m.site): m.value for m in pv.truth if m.value is not None}
            out.append(o)
        if progress:
            print(f"  study {seed + i} ({style}{', ' + spec if spec else ''}): {time.perf_counter() - t0:.1f} s",
                  flush=True)
    return out


def summarize(views: list[ViewOutcome]) -> dict:
    """The trust metrics of ``views`` (see the module docstring) as a JSON-able dict."""
    n = len(views)
    corners = np.concatenate([v.corner_error_mm for v in views]) if views else np.zeros(0)
    gated = [v for v in views if v.reported.get("cobb_c2_c7", (None,))[0] is None]
    reasons = Counter(_reason_kind(v.reported.get("cobb_c2_c7", (None, None, "no Cobb angle"))[2]) for v in gated)
    out: dict[str, Any] = {
        "views": n,
        "corner_error_mm": {"mean": float(np.nanmean(corners)), "median": float(np.nanmedian(corners))},
        "level_assignment": {"vertebrae": float(np.mean([v.assigned.mean() for v in views])),
                             "views_all_correct": float(np.mean([not v.misassigned for v in views]))},
        "gated_fraction": len(gated) / n if n else float("nan"),
        "gated_reasons": dict(reasons.most_common()),
        "misassigned_views": sum(v.misassigned for v in views),
        "misassigned_measurable": sum(v.misassigned and v.measured for v in views),
        "misassigned_caught": sum(v.misassigned and not v.measured for v in views),
        "misassigned_caught_only_by_plausibility": sum(v.misassigned and not v.measured and _only_plausibility(v)
                                                       for v in views),
    }
    covered = total = 0
    for key, label, unit in MAIN:
        errs, hits, ratios = [], [], []
        for v in views:
            value, interval, _ = v.reported.get(key, (None, None, ""))
            truth = v.truth.get(key)
            if value is None or truth is None:
                continue
            errs.append(abs(value - truth))
            if interval is not None:
                hits.append(interval[0] <= truth <= interval[1])
                ratios.append(_ratio(value, interval, truth))
        covered += sum(hits)
        total += len(hits)
        out[label] = {"n": len(errs), "mae": float(np.mean(errs)) if errs else float("nan"), "unit": unit,
                      "coverage_95": float(np.mean(hits)) if hits else float("nan"),
                      "reliability": reliability(ratios)}
    out["coverage_95"] = covered / total if total else float("nan")
    out["measured_fraction"] = float(np.mean([v.measured for v in views])) if views else float("nan")
    return out


def _ratio(value: float, interval: tuple[float, float], truth: float) -> float:
    """``|truth - value|`` over the reported 95 % interval's side towards the truth (0 when equal)."""
    side = (interval[1] - value) if truth >= value else (value - interval[0])
    d = abs(truth - value)
    return 0.0 if d == 0.0 else (d / side if side > 0 else float("inf"))


def reliability(ratios: list[float], levels: tuple[float, ...] = LEVELS) -> dict[str, float]:
    """Observed coverage at each nominal level: the reported 95 % interval's sides scaled by z(level) / z(95 %)
    hold the truth when ``ratio <= z(level) / z(95 %)``."""
    from statistics import NormalDist

    nd = NormalDist()
    r = np.asarray(ratios, dtype=float)
    return {f"{lv:g}": float(np.mean(r <= nd.inv_cdf(0.5 + lv / 2) / nd.inv_cdf(0.975))) if r.size else float("nan")
            for lv in levels}


def plot_reliability(summaries: dict[str, dict], path: Path) -> Path:
    """Expected vs observed coverage (Cobb and SVA, one line per set, n in the legend) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (_, label, _) in zip(axes, MAIN, strict=True):
        ax.plot([0.45, 1], [0.45, 1], color="k", linewidth=1, linestyle="--", label="ideal")
        ax.plot([0.95, 0.95], [0.90, 0.99], color="g", linewidth=8, alpha=0.3, label="target at 95 %: 90-99 %")
        for name, m in summaries.items():
            rel = m[label].get("reliability", {})
            xs = [float(k) for k in rel if np.isfinite(rel[k])]
            ax.plot(xs, [rel[f"{x:g}"] for x in xs], marker="o", label=f"{name} (n={m[label]['n']})")
        ax.set_xlabel("expected coverage (nominal level)")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{label} intervals")
        ax.set_xlim(0.45, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def print_summary(m: dict, title: str) -> None:
    print(f"\n== {title}: {m['views']} views")
    c = m["corner_error_mm"]
    print(f"corner error: mean {c['mean']:.2f} mm, median {c['median']:.2f} mm (all views, visible corners)")
    la = m["level_assignment"]
    print(f"level assignment: {la['vertebrae']:.1%} of vertebrae, {la['views_all_correct']:.1%} of views all correct")
    print(f"gated not measurable (Cobb): {m['gated_fraction']:.1%}; views with Cobb or SVA measured: "
          f"{m.get('measured_fraction', float('nan')):.1%}")
    for r, k in m["gated_reasons"].items():
        print(f"    {k:3d}  {r}")
    for label in ("Cobb", "SVA"):
        s = m[label]
        print(f"{label} on measured views: n={s['n']}, MAE {s['mae']:.2f} {s['unit']}, 95% interval coverage "
              f"{s['coverage_95']:.1%}")
        rel = s.get("reliability", {})
        if rel:
            print("    reliability (nominal: observed): " + ", ".join(f"{float(k):.0%}: {v:.0%}" for k, v in rel.items()))
    print(f"95% interval coverage (Cobb + SVA): {m['coverage_95']:.1%}")
    print(f"views with a mis-assigned level: {m['misassigned_views']} (caught by the gates: {m['misassigned_caught']}, "
          f"{m['misassigned_caught_only_by_plausibility']} of them by the plausibility gate alone); "
          f"REPORTED AS MEASURABLE: {m['misassigned_measurable']}")


def main(argv: list[str] | None = None) -> int:
    """``plot OUT.png NAME=trust.json ...``: the reliability plot of saved summaries."""
    import json

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "plot":
        print("usage: python -m models.xray_keypoints.trust plot OUT.png NAME=trust.json ...", file=sys.stderr)
        return 2
    summaries = {}
    for item in args[2:]:
        name, _, file = item.rpartition("=")
        summaries[name or Path(file).parent.name] = json.loads(Path(file).read_text())
    print(plot_reliability(summaries, Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
