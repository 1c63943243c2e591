"""The promotion gate of ``cspine-node train xray --from-corrections``: candidate vs current keypoint model.

Two evaluations, both paired (the same images through both models, the plain cascade pass: the points the node
reports):

(a) **phantom test set**: renderer-A held-out studies (seeds from ``evaluate.HELD_OUT_SEED``, never trained on):
    per radiograph the mean corner error (mm) and the absolute C2-C7 Cobb (deg) and SVA (mm) errors;
(b) **held-back corrections**: per view the median corner error (mm) against the radiologist's corrected corners.

For every quantity the per-image differences ``candidate - current`` get a bootstrap 95 % interval of their mean
(seeded, :func:`paired`). The candidate is promoted only if

- **not worse on (a)**: for each of corner error, Cobb and SVA error the upper end of that interval is at most the
  noise margin, ``max(floor, margin x current mean)`` (a non-inferiority test: a small or noisy test set that cannot
  show "not worse" refuses), and no radiograph's mean corner error is worse by more than ``max_regression_mm``
  (1 mm: a vertebra moved to a wrong place; a mean over many images hides one such view), and
- **better on (b)**: the candidate's median of the per-view errors is lower than the current model's, and the upper
  end of the interval of the mean per-view difference is below 0.

:func:`decide` takes the comparisons and returns the decision with its reasons (unit-tested with given numbers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PHANTOM_QUANTITIES: tuple[tuple[str, str, float], ...] = (
    ("corner_error_mm", "mm", 0.005), ("cobb_abs_error_deg", "deg", 0.05), ("sva_abs_error_mm", "mm", 0.01))
"""(key, unit, margin floor) of the phantom test set's per-image quantities."""
HELD_KEY = "median_corner_error_mm"


@dataclass
class Comparison:
    """One quantity measured on the same images with both models."""

    key: str
    unit: str
    n: int
    current_mean: float
    candidate_mean: float
    current_median: float
    candidate_median: float
    diff_mean: float
    """mean of candidate - current (negative: the candidate is better)."""
    diff_ci: tuple[float, float]
    """bootstrap 95 % interval of ``diff_mean``."""
    margin: float = 0.0
    """the noise margin (phantom quantities): ``diff_ci[1] <= margin`` means not worse."""
    regressions: int = 0
    """images whose value is worse by more than ``regression_limit`` (counted for the corner error)."""
    regression_limit: float = float("inf")
    max_increase: float = float("nan")
    """the largest per-image increase (candidate - current)."""
    current_failures: int = 0
    candidate_failures: int = 0
    """images on which the model failed (no finite points; left out of the statistics, and a candidate that fails
    on more images than the current model is never promoted)."""

    def to_dict(self) -> dict:
        return asdict(self)


def paired(key: str, unit: str, current: np.ndarray, candidate: np.ndarray, *, floor: float = 0.0,
           rel_margin: float = 0.0, regression_limit: float = float("inf"), n_boot: int = 2000, seed: int = 0
           ) -> Comparison:
    """Paired comparison of per-image values with a seeded bootstrap of the mean difference. NaN (not measurable)
    and infinite (the model failed: counted) values leave their pair out."""
    cur, cand = np.asarray(current, float), np.asarray(candidate, float)
    fails = (int(np.isinf(cur).sum()), int(np.isinf(cand).sum()))
    ok = np.isfinite(cur) & np.isfinite(cand)
    cur, cand = cur[ok], cand[ok]
    if not len(cur):
        nan = float("nan")
        return Comparison(key, unit, 0, nan, nan, nan, nan, nan, (nan, nan), floor, 0, regression_limit, nan, *fails)
    d = cand - cur
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Comparison(key, unit, int(len(d)), float(cur.mean()), float(cand.mean()), float(np.median(cur)),
                      float(np.median(cand)), float(d.mean()), (float(lo), float(hi)),
                      float(max(floor, rel_margin * abs(cur.mean()))), int((d > regression_limit).sum()),
                      regression_limit, float(d.max()), *fails)


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def decide(phantom: list[Comparison], held: Comparison) -> Decision:
    """Promote only if not worse on every phantom quantity and better on the held-back corrections."""
    reasons, ok = [], True
    if not phantom:
        ok = False
        reasons.append("no phantom comparison: cannot show 'not worse'")
    for c in [*phantom, held]:
        if c.candidate_failures > c.current_failures:
            ok = False
            reasons.append(f"{c.key}: the candidate fails on {c.candidate_failures} image(s) (current model: "
                           f"{c.current_failures})")
    for c in phantom:
        if c.regressions:
            ok = False
            reasons.append(f"phantom {c.key}: worse by more than {c.regression_limit:g} {c.unit} on {c.regressions} "
                           f"image(s) (largest +{c.max_increase:.3f} {c.unit})")
        if c.n == 0 or not np.isfinite(c.diff_ci[1]):
            ok = False
            reasons.append(f"phantom {c.key}: no paired values: cannot show 'not worse'")
        elif c.diff_ci[1] <= c.margin:
            reasons.append(f"phantom {c.key}: not worse ({c.current_mean:.3f} -> {c.candidate_mean:.3f} {c.unit}; "
                           f"difference {c.diff_mean:+.3f}, 95 % CI upper {c.diff_ci[1]:+.3f} <= margin {c.margin:.3f})")
        else:
            ok = False
            reasons.append(f"phantom {c.key}: may be worse ({c.current_mean:.3f} -> {c.candidate_mean:.3f} {c.unit}; "
                           f"difference {c.diff_mean:+.3f}, 95 % CI upper {c.diff_ci[1]:+.3f} > margin {c.margin:.3f})")
    if held.n == 0 or not np.isfinite(held.diff_ci[1]):
        ok = False
        reasons.append("held-back corrections: no paired values: cannot show 'better'")
    elif held.candidate_median < held.current_median and held.diff_ci[1] < 0:
        reasons.append(f"held-back corrections: better (median {held.current_median:.3f} -> "
                       f"{held.candidate_median:.3f} {held.unit}; mean difference {held.diff_mean:+.3f}, 95 % CI "
                       f"[{held.diff_ci[0]:+.3f}, {held.diff_ci[1]:+.3f}], n = {held.n})")
    else:
        ok = False
        reasons.append(f"held-back corrections: not better (median {held.current_median:.3f} -> "
                       f"{held.candidate_median:.3f} {held.unit}; mean difference {held.diff_mean:+.3f}, 95 % CI "
                       f"[{held.diff_ci[0]:+.3f}, {held.diff_ci[1]:+.3f}], n = {held.n})")
    return Decision(ok, reasons)


# ------------------------------------------------------------------------------------------ measuring
def _predict(predictor, image: np.ndarray) -> np.ndarray | None:  # noqa: ANN001
    """The (30, 2) points, or None when the model fails on the image (non-finite output, an error on the way): a
    failure counts as an infinite error, so a broken candidate is never promoted."""
    try:
        pts = predictor.predict(np.asarray(image, np.float32)).keypoints
    except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError):
        return None
    return pts if np.isfinite(pts).all() else None


def phantom_values(predictor, *, seed: int, count: int, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Per radiograph of ``count`` renderer-A held-out studies (seeds ``seed``...): corner error (mm), |Cobb error|,
    |SVA error| (C2-C7); infinite where the model fails, NaN where a quantity is not measurable."""
    from pipelines.phantoms.xray import generate_study
    from pipelines.results import View
    from pipelines.xray import geometry
    from pipelines.xray.preprocessing import to_unit_range

    out: dict[str, list[float]] = {k: [] for k, _, _ in PHANTOM_QUANTITIES}
    for s in range(seed, seed + count):
        study = generate_study(s, shape=shape, difficulty="realistic")
        for view, pv in study.views.items():
            img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
            pts = _predict(predictor, img)
            if pts is None:
                for k in out:
                    out[k].append(float("inf"))
                continue
            sp = tuple(float(v) for v in pv.pixel_spacing_mm)
            d = (pts - pv.keypoints)[:24] * np.array([sp[1], sp[0]])
            vis = np.asarray(pv.visible, bool)[:24]
            out["corner_error_mm"].append(float(np.hypot(d[:, 0], d[:, 1])[vis].mean()) if vis.any() else float("nan"))
            pred = {(m.key, m.site): m.value for m in geometry.measure_view(pts, sp, view=View(view))}
            for key, name in (("cobb_abs_error_deg", "cobb_c2_c7"), ("sva_abs_error_mm", "sva_c2_c7")):
                truth = next((m.value for m in pv.truth if m.key == name and m.site == "C2-C7"), None)
                p = pred.get((name, "C2-C7"))
                out[key].append(abs(p - truth) if truth is not None and p is not None else float("nan"))
    return {k: np.asarray(v, float) for k, v in out.items()}


def held_back_values(predictor, views: list) -> np.ndarray:  # noqa: ANN001 - list of (RawSample, labelled)
    """Per held-back view: the median error (mm) of the labelled corners (infinite where the model fails)."""
    out = []
    for raw, lab in views:
        pred = _predict(predictor, raw.image)
        if pred is None:
            out.append(float("inf"))
            continue
        d = (pred - raw.keypoints) * np.array([raw.spacing_mm[1], raw.spacing_mm[0]])
        err = np.hypot(d[:, 0], d[:, 1])[:24][np.asarray(lab, bool)[:24]]
        out.append(float(np.median(err)) if len(err) else float("nan"))
    return np.asarray(out, float)


def compare(current, candidate, held_views: list, *, phantom_seed: int, phantom_count: int,  # noqa: ANN001
            phantom_shape: tuple[int, int] | None = None, rel_margin: float = 0.1, max_regression_mm: float = 1.0
            ) -> tuple[list[Comparison], Comparison]:
    """Both evaluations, paired, for two predictors (plain pass each: the points the node reports)."""
    for p in (current, candidate):
        p.variants = p.variants[:1]
    a_cur = phantom_values(current, seed=phantom_seed, count=phantom_count, shape=phantom_shape)
    a_cand = phantom_values(candidate, seed=phantom_seed, count=phantom_count, shape=phantom_shape)
    phantom = [paired(k, unit, a_cur[k], a_cand[k], floor=floor, rel_margin=rel_margin,
                      regression_limit=max_regression_mm if k == "corner_error_mm" else float("inf"))
               for k, unit, floor in PHANTOM_QUANTITIES]
    held = paired(HELD_KEY, "mm", held_back_values(current, held_views), held_back_values(candidate, held_views))
    return phantom, held


def table(phantom: list[Comparison], held: Comparison, current: str, candidate: str) -> str:
    """The comparison as a markdown table (for the model card)."""
    rows = [f"| set | quantity (per image) | n | {current} mean / median | {candidate} mean / median | "
            "difference mean [95 % CI] | rule |", "|---|---|---|---|---|---|---|"]
    for c in [*phantom, held]:
        rule = (f"not worse: CI upper <= {c.margin:.3f}" if c is not held else "better: median lower and CI upper < 0")
        if np.isfinite(c.regression_limit):
            rule += f"; no image worse by > {c.regression_limit:g} {c.unit} ({c.regressions}; largest {c.max_increase:+.3f})"
        where = "phantom A test" if c is not held else "held-back corrections"
        rows.append(f"| {where} | {c.key} | {c.n} | {c.current_mean:.3f} / {c.current_median:.3f} {c.unit} | "
                    f"{c.candidate_mean:.3f} / {c.candidate_median:.3f} {c.unit} | {c.diff_mean:+.3f} "
                    f"[{c.diff_ci[0]:+.3f}, {c.diff_ci[1]:+.3f}] | {rule} |")
    return "\n".join(rows)


__all__ = ["Comparison", "Decision", "compare", "decide", "held_back_values", "paired", "phantom_values", "table"]
