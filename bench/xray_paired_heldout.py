"""Paired renderer-A held-out comparison of keypoint weights files (the ship rule of a fine-tune; model card).

    nice -n 10 .venv/bin/python bench/xray_paired_heldout.py --json OUT.json models/xray_keypoints/xray_keypoints_v2.pt CAND.pt [...]

The held-out studies (seeds 900000-900049 by default, realistic detector sizes, difficulty "realistic", 150
radiographs) are generated once and every weights file predicts on them with the plain cascade pass (the points the
node reports). Per radiograph: mean corner error (mm), |C2-C7 Cobb error| (deg), |C2-C7 SVA error| (mm), as
``models.xray_keypoints.corrections_gate.phantom_values``; each candidate is compared with the first file by
``corrections_gate.paired`` (mean of candidate - first, seeded bootstrap 95 % interval, 2000 resamples, seed 0),
with the largest per-radiograph increase and the count of radiographs worse by more than 1 mm / deg.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

KEYS = ("corner_error_mm", "cobb_abs_error_deg", "sva_abs_error_mm")


def values(preds: list, seed: int, count: int) -> tuple[list[str], list[dict[str, list[float]]]]:  # noqa: ANN001
    from models.xray_keypoints.corrections_gate import _predict
    from pipelines.phantoms.xray import generate_study
    from pipelines.results import View
    from pipelines.xray import geometry
    from pipelines.xray.preprocessing import to_unit_range

    ids: list[str] = []
    out: list[dict[str, list[float]]] = [{k: [] for k in KEYS} for _ in preds]
    for s in range(seed, seed + count):
        study = generate_study(s, shape=None, difficulty="realistic")
        for view, pv in study.views.items():
            ids.append(f"{s} {View(view).value}")
            img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
            sp = tuple(float(v) for v in pv.pixel_spacing_mm)
            vis = np.asarray(pv.visible, bool)[:24]
            for vals, pr in zip(out, preds, strict=True):
                pts = _predict(pr, img)
                if pts is None:  # the model failed on the image: an infinite error (never "not worse")
                    for k in KEYS:
                        vals[k].append(float("inf"))
                    continue
                d = (pts - pv.keypoints)[:24] * np.array([sp[1], sp[0]])
                vals["corner_error_mm"].append(float(np.hypot(d[:, 0], d[:, 1])[vis].mean()))
                pm = {(m.key, m.site): m.value for m in geometry.measure_view(pts, sp, view=View(view))}
                for key, name in (("cobb_abs_error_deg", "cobb_c2_c7"), ("sva_abs_error_mm", "sva_c2_c7")):
                    t = next((m.value for m in pv.truth if m.key == name and m.site == "C2-C7"), None)
                    v = pm.get((name, "C2-C7"))
                    vals[key].append(abs(v - t) if t is not None and v is not None else float("nan"))
    return ids, out


def main(argv: list[str] | None = None) -> int:
    from models.xray_keypoints.corrections_gate import paired
    from models.xray_keypoints.predictor import KeypointPredictor

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path, nargs="+", help="the reference file first, then the candidates")
    p.add_argument("--seed", type=int, default=900_000)
    p.add_argument("--count", type=int, default=50, help="studies (3 radiographs each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    preds = [KeypointPredictor.load(w, "cpu") for w in args.weights]
    for pr in preds:
        pr.variants = pr.variants[:1]
    ids, vals = values(preds, args.seed, args.count)
    res: dict = {"weights": [str(w) for w in args.weights], "ids": ids, "values": vals, "comparisons": []}
    for w, cand in zip(args.weights[1:], vals[1:], strict=True):
        comp = {}
        for k in KEYS:
            c = paired(k, "", np.array(vals[0][k]), np.array(cand[k]), n_boot=2000, seed=0)
            comp[k] = c.to_dict()
            d = np.array(cand[k]) - np.array(vals[0][k])
            j = int(np.nanargmax(d))
            print(f"{w} {k}: {c.current_mean:.4f} -> {c.candidate_mean:.4f}, difference {c.diff_mean:+.4f} "
                  f"[{c.diff_ci[0]:+.4f}, {c.diff_ci[1]:+.4f}] (n = {c.n}); median {c.current_median:.4f} -> "
                  f"{c.candidate_median:.4f}; largest increase {d[j]:+.3f} ({ids[j]}); worse by > 1: {int((d > 1).sum())}")
        res["comparisons"].append(comp)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
