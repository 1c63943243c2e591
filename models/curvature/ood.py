"""Out-of-distribution gate of the curvature classifier: fit on renderer-A phantoms, store in the weights' meta.

Features: the pooled output of the last residual stage (the input of the linear head, 128 values) of the crop the
deployed predictor makes (spine locator, C2-C7 box). Class-conditional means (normal / straightened / reversed, the
class of the true Cobb angle), one shared shrunk covariance; the distance is to the nearest class mean (Lee et al.
2018; ``models.common.ood``). Sets (all views, renderer A only; half at the training size, half at realistic
detector sizes, the images the node sees): fit on training seeds, threshold (99th percentile) on fresh seeds, test
on the card's held-out seeds (256 px) and on fresh realistic-size seeds::

    nice -n 10 python -m models.curvature.ood --cache /tmp/ood --json /tmp/ood/curvature.json [--update-weights]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.common.ood_fit import Extracted, GateSpec, SetSpec, main
from models.curvature import CLASSES
from models.curvature.predictor import CHORD_RANGE_MM, CurvaturePredictor
from models.curvature.roi import crop, curvature_box

FIT = (SetSpec(100_000, 100, (256, 256)), SetSpec(100_100, 100, None))
THRESHOLD = (SetSpec(940_000, 100, (256, 256)), SetSpec(940_100, 100, None))
TEST = (SetSpec(900_000, 200, (256, 256)), SetSpec(950_000, 100, None))


def extract(pred: CurvaturePredictor, s: SetSpec) -> Extracted:
    """Features of every view of the set's studies through the locator, as deployed."""
    from models.curvature.data import class_from_cobb
    from pipelines.phantoms.xray import generate_study, unit_image

    feats, groups, recs = [], [], []
    for seed in range(s.seed, s.seed + s.count):
        st = generate_study(seed, shape=s.shape)
        for view, pv in st.views.items():
            img = unit_image(pv.pixels, pv.photometric).astype(np.float32)
            pts = pred.locator.locate(img)
            p, f = pred.probabilities_and_features(crop(img, curvature_box(pts, pred.input_size))[None])
            cobb = float(next(m.value for m in pv.truth if m.key == "cobb_c2_c7"))
            truth = class_from_cobb(cobb)
            d = (pts[0] - pts[2]) * np.array([pv.pixel_spacing_mm[1], pv.pixel_spacing_mm[0]])
            feats.append(f[0])
            groups.append(CLASSES.index(truth))
            recs.append({"seed": seed, "view": view.value, "truth": truth, "pred": CLASSES[int(np.argmax(p[0]))],
                         "cobb": round(cobb, 2),
                         "chord_ok": bool(CHORD_RANGE_MM[0] <= float(np.hypot(*d)) <= CHORD_RANGE_MM[1])})
    return Extracted(np.stack(feats), np.array(groups), recs)


def summarize(records: list[dict[str, Any]], accepted: np.ndarray) -> dict[str, Any]:
    """Accuracy on the views the deployed finding classifies (located C2-C7 plausible), all vs accepted by the
    gate; neutral views (what the pipeline runs it on) and all views."""
    out: dict[str, Any] = {}
    for name, keep in (("neutral", [r["view"] == "neutral" for r in records]), ("all_views", [True] * len(records))):
        idx = [i for i, k in enumerate(keep) if k and records[i]["chord_ok"]]
        acc = [i for i in idx if accepted[i]]
        right = [records[i]["pred"] == records[i]["truth"] for i in idx]
        right_acc = [records[i]["pred"] == records[i]["truth"] for i in acc]
        n_view = sum(keep)
        out[name] = {"views": n_view, "rejected": int(sum(k and not a for k, a in zip(keep, accepted, strict=True))),
                     "classified": len(idx), "accuracy": float(np.mean(right)) if right else None,
                     "classified_accepted": len(acc), "accuracy_accepted": float(np.mean(right_acc)) if acc else None,
                     "wrong_rejected": int(sum(not r for i, r in zip(idx, right, strict=True) if not accepted[i]))}
    return out


def _load(weights: Path | None) -> CurvaturePredictor:
    return CurvaturePredictor.load(weights, "cpu")


SPEC = GateSpec("curvature", _load, extract, FIT, THRESHOLD, TEST, CLASSES, False, summarize,
                "pooled last residual stage (input of the linear head), 128 values")

if __name__ == "__main__":
    raise SystemExit(main(SPEC, CurvaturePredictor))
