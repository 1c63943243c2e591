"""Honest evaluation of the MRI model through the real pipeline, on written series of either renderer and the
shift suite: ``python -m models.mri.evaluate --style a|b [--shift NAME[:VALUE] ... | suite] --count N``.

Every study is rendered (``pipelines.phantoms.mri_shift``), written as DICOM files, read back, routed
(``pipelines.route``) and analysed by ``MriPipeline.run`` exactly as the node does. Per level it compares the
disc-centre keypoint on the analysed (mid-sagittal) slice with the truth projected on that slice's plane
(patient coordinates -> stored pixels; in-plane distance, mm): a level is *found* when it is within 5 mm. It
reports the level error (mean, median, p95), how many wrong levels (not found) were graded without a flag
(a flag: the level's findings "not assessable", or a warning naming the level or the level order), the fraction
of levels "not assessable", AUC per finding (all levels, and graded levels only) and calibration (expected
calibration error, Brier) of the graded probabilities.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from models.common.metrics import brier, expected_calibration_error, roc_auc
from pipelines.mri.plausibility import UNVERIFIED_ABOVE
from pipelines.phantoms.mri_shift import make_case, parse_shifts, suite_shift, write_case
from pipelines.route import route
from pipelines.study import Study
from pipelines.vocabulary import TASKS, PipelineName

FOUND_MM = 5.0
NOT_ASSESSABLE = "not assessable"


class RecordingModel:
    """An ``interfaces.MriModel`` that passes calls to ``model`` and keeps the last ``VolumeAnalysis`` (so the
    evaluation also sees the model's probabilities at levels the pipeline did not grade)."""

    def __init__(self, model) -> None:  # noqa: ANN001
        self.model, self.last = model, None

    @property
    def algorithm(self):  # noqa: ANN201
        return self.model.algorithm

    def analyse(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.last = self.model.analyse(*args, **kwargs)
        return self.last


def _flagged(res, level: str) -> bool:  # noqa: ANN001
    """The pipeline told the reader not to trust this level: findings not assessable, or a warning about it."""
    if any(f.site == level and f.value == NOT_ASSESSABLE for f in res.findings):
        return True
    return any(level in w or "order" in w for w in res.warnings)


def run_case(pipeline, style: str, seed: int, items: list[str], work: Path) -> list[dict]:  # noqa: ANN001
    """Render, write, route and analyse one study; one record per level."""
    case = make_case(style, seed, parse_shifts(items))
    d = work / f"{style}_{seed}"
    write_case(case, d)
    study = Study.from_paths(sorted(d.glob("*.dcm")))[0]
    routes = route(study)
    if [r.pipeline for r in routes] != [PipelineName.MRI]:
        raise AssertionError(f"{d}: routed to {[r.pipeline for r in routes]}")
    t0 = time.perf_counter()
    res = pipeline.run(study, routes[0].instances)
    seconds = time.perf_counter() - t0
    img = res.images[0]
    inst = next(i for i in routes[0].instances if i.sop_instance_uid == img.image_uid)
    ds = inst.read(pixels=False)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ps = [float(v) for v in ds.PixelSpacing]  # (row spacing, column spacing)
    row, col = iop[:3], iop[3:]
    kp = {k.name: k for k in img.keypoints}
    va = getattr(pipeline.model, "last", None)
    anchor = getattr(getattr(pipeline.model, "model", pipeline.model), "last_anchor", None)  # the last pass's verdict
    out = []
    for j, t in enumerate(case.levels):
        d3 = np.array(t.disc_centre_mm) - ipp
        tx, ty = d3 @ row / ps[1], d3 @ col / ps[0]
        k = kp[f"{t.level} disc"]
        err = float(np.hypot((k.x - tx) * ps[1], (k.y - ty) * ps[0]))
        fs = {f.key: f for f in res.findings if f.site == t.level}
        out.append({
            "style": style, "seed": seed, "shifts": ",".join(items) or "none", "level": t.level, "error_mm": err,
            "offplane_mm": float(d3 @ np.cross(row, col)), "found": err <= FOUND_MM, "flagged": _flagged(res, t.level),
            "assessable": all(f.value != NOT_ASSESSABLE for f in fs.values()),
            "reason": next((f.evidence[0] for f in fs.values() if f.value == NOT_ASSESSABLE and f.evidence), ""),
            "labels": {task: t.label(task) for task in TASKS},
            "probs": {task: (fs[task].probability if task in fs else None) for task in TASKS},
            "model_probs": {task: (float(va.probabilities[task][j]) if va is not None else None) for task in TASKS},
            "values": {task: (fs[task].value if task in fs else None) for task in TASKS},
            "seconds": seconds, "n_slices": int(case.series[0].volume.shape[0]),
            "anchor": anchor,
            "old_flag": bool(va is not None and (va.peak[j] < 0.3 or np.any(np.diff(va.centres_px[:, 1]) <= 0))),
        })
    return out


def _only_unverified_above(record: dict) -> bool:
    """The level is not assessable for the one reason that no level above it passed the gate (the gate joins
    several reasons with "; ")."""
    reason = record.get("reason", "")
    return UNVERIFIED_ABOVE in reason and "; " not in reason


def summarise(records: list[dict]) -> dict:
    """The numbers of the module docstring over ``records`` (``run_case`` output)."""
    err = np.array([r["error_mm"] for r in records])
    found = np.array([r["found"] for r in records])
    flagged = np.array([r["flagged"] for r in records])
    assess = np.array([r["assessable"] for r in records])
    series = {(r["seed"], r["shifts"]) for r in records}
    per_series = {}
    for r in records:
        per_series.setdefault((r["seed"], r["shifts"]), []).append(r["found"])
    out = {
        "series": len(series), "levels": len(records), "found": int(found.sum()),
        "all_levels_found_series": int(sum(all(v) for v in per_series.values())),
        "error_mm": {"mean": float(err.mean()), "median": float(np.median(err)), "p95": float(np.percentile(err, 95))},
        "wrong_levels": int((~found).sum()), "wrong_graded_unflagged": int((~found & ~flagged & assess).sum()),
        "wrong_flagged": int((~found & (flagged | ~assess)).sum()),
        "wrong_unflagged_by_old_warnings": int(sum(1 for r in records if not r["found"] and not r["old_flag"])),
        "not_assessable_fraction": float((~assess).mean()), "right_but_not_assessable": int((found & ~assess).sum()),
        "seconds_per_series": float(np.mean([r["seconds"] for r in records])),
        "unverified_above_only": {  # levels the gate took only for the rule UNVERIFIED_ABOVE: graded without it
            "wrong": int(sum(1 for r in records if _only_unverified_above(r) and not r["found"])),
            "right": int(sum(1 for r in records if _only_unverified_above(r) and r["found"]))},
        "tasks": {},
    }
    for task in TASKS:
        y = np.array([r["labels"][task] for r in records])
        p = np.array([r["probs"][task] if r["probs"][task] is not None else np.nan for r in records], float)
        pm = np.array([r["model_probs"][task] if r["model_probs"][task] is not None else np.nan for r in records], float)
        ok = ~np.isnan(p)
        graded = ok & assess
        m: dict[str, float | int] = {"positives": int(y.sum()), "n": len(y), "graded": int(graded.sum())}
        okm = ~np.isnan(pm)
        if okm.any() and 0 < y[okm].sum() < okm.sum():
            m["auc_all"] = roc_auc(y[okm], pm[okm])  # the model's score at every level, graded or not
        if graded.any() and 0 < y[graded].sum() < graded.sum():
            m["auc_graded"] = roc_auc(y[graded], p[graded])
            m["ece_graded"] = expected_calibration_error(y[graded], p[graded])
            m["brier_graded"] = brier(y[graded], p[graded])
        gf = graded & found
        if gf.any() and 0 < y[gf].sum() < gf.sum():
            m["auc_found"] = roc_auc(y[gf], p[gf])
        out["tasks"][task] = m
    return out


def evaluate_series(pipeline, style: str, seeds: list[int], shifts: list[str], *,  # noqa: ANN001
                    work: Path | None = None, log: bool = True) -> tuple[dict, list[dict]]:
    """Run ``run_case`` over ``seeds`` (``shifts`` for every study; ``suite`` in it cycles the suite) -> summary."""
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mri-eval-") as tmp:
        base = Path(work or tmp)
        for i, seed in enumerate(seeds):
            items = [s for s in shifts if s != "suite"]
            if "suite" in shifts:
                items.append(suite_shift(i, exclude=("oblique", "stir") if style == "a" else ()))
            recs = run_case(pipeline, style, seed, items, base)
            records += recs
            if log:
                e = ", ".join(f"{r['error_mm']:.1f}{'' if r['assessable'] else '(na)'}" for r in recs)
                print(f"  {style} seed {seed} [{','.join(items) or 'none'}] n={recs[0]['n_slices']}: errors mm {e}",
                      flush=True)
    return summarise(records), records


def print_summary(title: str, s: dict) -> None:
    e = s["error_mm"]
    print(f"{title}: {s['series']} series, levels found {s['found']}/{s['levels']} "
          f"({100 * s['found'] / s['levels']:.0f} %), all five right in {s['all_levels_found_series']} series; "
          f"level error mean {e['mean']:.1f} mm, median {e['median']:.1f}, p95 {e['p95']:.1f}; "
          f"wrong levels {s['wrong_levels']}, graded without a flag {s['wrong_graded_unflagged']} "
          f"(with the old warnings only: {s['wrong_unflagged_by_old_warnings']}); "
          f"not assessable {100 * s['not_assessable_fraction']:.0f} % ({s['right_but_not_assessable']} of them right); "
          f"{s['seconds_per_series']:.2f} s per series")
    u = s.get("unverified_above_only")
    if u:
        print(f"  not assessable only because no level above passed: {u['wrong']} wrong, {u['right']} right "
              f"(graded without that rule)")
    for task, m in s["tasks"].items():
        def f(k: str, m: dict = m) -> str:
            return f"{m[k]:.3f}" if k in m else "n/a"
        print(f"  {task:26s} AUC all {f('auc_all')} graded {f('auc_graded')} found+graded {f('auc_found')} | "
              f"ECE {f('ece_graded')} Brier {f('brier_graded')} (pos {m['positives']}/{m['n']}, graded {m['graded']})")


def cli(args) -> int:  # noqa: ANN001
    """Called by ``models.mri.evaluate`` when ``--style`` is given."""
    import json

    import torch

    from models.mri.predictor import MriPredictor
    from pipelines.mri.pipeline import MriPipeline

    torch.set_num_threads(args.threads)
    pred = MriPredictor.load(args.weights)
    pred.recentre = not getattr(args, "single_pass", False)
    pred.stability = not getattr(args, "no_stability", False)
    pred.anchor_decoder = getattr(args, "anchor_decoder", None) or pred.anchor_decoder
    pipe = MriPipeline(RecordingModel(pred))
    seeds = list(range(args.seed, args.seed + args.count))
    summary, records = evaluate_series(pipe, args.style, seeds, args.shift or [])
    title = f"renderer {args.style.upper()}" + (f", shifts {' '.join(args.shift)}" if args.shift else "")
    print_summary(title, summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"title": title, "seeds": [args.seed, args.count], "summary": summary,
                                               "records": records}, indent=1, default=str))
    return 0
