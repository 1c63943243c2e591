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
* the count of views with a mis-assigned level whose Cobb angle or SVA was reported as measurable (target: 0).

The seed classifiers are not run (``XrayPipeline`` gets the keypoint model only).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.vocabulary import View

MAIN = (("cobb_c2_c7", "Cobb", "deg"), ("sva_c2_c7", "SVA", "mm"))


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
    """key -> (value, interval, reason) as the pipeline reported it."""
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


def evaluate(predictor: Any, *, style: str, seed: int, count: int, shift: str = "", max_size: int | None = None,
             progress: bool = True) -> list[ViewOutcome]:
    """Run the pipeline on ``count`` studies of renderer ``style`` (``shift``: a spec for every study, or
    ``suite``: study i gets ``SUITE[i % len(SUITE)]``)."""
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.shifts import SUITE
    from pipelines.study import Study
    from pipelines.xray.pipeline import XrayPipeline

    pipe = XrayPipeline(predictor)
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
                if m.view == pv.view and img.image_uid in m.image_uids and m.site == "C2-C7":
                    o.reported[m.key] = (m.value, m.interval, m.reason)
            o.truth = {m.key: m.value for m in pv.truth if m.site == "C2-C7" and m.value is not None}
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
        errs, hits = [], []
        for v in views:
            value, interval, _ = v.reported.get(key, (None, None, ""))
            truth = v.truth.get(key)
            if value is None or truth is None:
                continue
            errs.append(abs(value - truth))
            if interval is not None:
                hits.append(interval[0] <= truth <= interval[1])
        covered += sum(hits)
        total += len(hits)
        out[label] = {"n": len(errs), "mae": float(np.mean(errs)) if errs else float("nan"), "unit": unit,
                      "coverage_95": float(np.mean(hits)) if hits else float("nan")}
    out["coverage_95"] = covered / total if total else float("nan")
    return out


def print_summary(m: dict, title: str) -> None:
    print(f"\n== {title}: {m['views']} views")
    c = m["corner_error_mm"]
    print(f"corner error: mean {c['mean']:.2f} mm, median {c['median']:.2f} mm (all views, visible corners)")
    la = m["level_assignment"]
    print(f"level assignment: {la['vertebrae']:.1%} of vertebrae, {la['views_all_correct']:.1%} of views all correct")
    print(f"gated not measurable (Cobb): {m['gated_fraction']:.1%}")
    for r, k in m["gated_reasons"].items():
        print(f"    {k:3d}  {r}")
    for label in ("Cobb", "SVA"):
        s = m[label]
        print(f"{label} on measured views: n={s['n']}, MAE {s['mae']:.2f} {s['unit']}, 95% interval coverage "
              f"{s['coverage_95']:.1%}")
    print(f"95% interval coverage (Cobb + SVA): {m['coverage_95']:.1%}")
    print(f"views with a mis-assigned level: {m['misassigned_views']} (caught by the gates: {m['misassigned_caught']}, "
          f"{m['misassigned_caught_only_by_plausibility']} of them by the plausibility gate alone); "
          f"REPORTED AS MEASURABLE: {m['misassigned_measurable']}")
