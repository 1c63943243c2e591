"""Evaluate the curvature classifiers on held-out phantoms, through the spine locator (the deployed path).

For each image of a ``--full`` ``.npz`` from :mod:`models.curvature.data`: the locator's landmarks -> the ROI
-> S-ResNet-34 and the plain ResNet-34; reported: accuracy, macro F1 and recall against the 3-class label (true
C2-C7 Cobb), the same with the true-landmark ROI (locator error removed), the confusion with the class derived
from the keypoint geometry (:func:`pipelines.xray.geometry.curvature_class` on the true keypoints, which also
knows ``S-shaped``) and the list of images where model and geometry disagree. ``--keypoint-weights`` adds the
class from the geometry of the keypoints that the X-ray keypoint model predicts (the deployed comparison).

    python -m models.curvature.evaluate --data /tmp/curv_test.npz --json /tmp/curv_eval.json

``--coco FILE`` / ``--labelme DIR`` instead of ``--data``: a site's held-out annotated folder with
``"labels": {"curvature_class": ...}`` per image (:func:`models.curvature.user_data.full_arrays`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.common.images import from_u8
from models.common.metrics import confusion, macro_scores
from models.common.user_labels import add_folder_args, from_folder
from models.curvature import BASELINE_WEIGHTS, CLASSES, DEFAULT_WEIGHTS
from models.curvature.data import three_class
from models.curvature.predictor import CurvaturePredictor
from models.curvature.roi import DEFAULT_LOCATOR, crop, curvature_box
from pipelines.results import View

GEOMETRY_CLASSES: tuple[str, ...] = ("normal", "straightened", "reversed-kyphotic", "S-shaped")


def _view(v: int) -> str:
    return list(View)[int(v)].value if int(v) >= 0 else "unknown"


def evaluate(data: Path | dict, weights: dict[str, Path], locator: Path, views: tuple[int, ...] | None = None,
             keypoint_weights: Path | None = None) -> dict:
    """``data``: a ``--full`` ``.npz`` or the same arrays as a dict (a site's folder: ``user_data.full_arrays``)."""
    d = data if isinstance(data, dict) else np.load(data)
    if "images" not in d:
        raise SystemExit(f"{data} has no full images: prepare it with --full")
    sel = np.arange(len(d["labels"])) if views is None else np.flatnonzero(np.isin(d["views"], views))
    images = d["images"][sel]
    labels = d["labels"][sel]
    geom = d["geom"][sel]
    kps = d["keypoints"][sel]
    spacing = d["spacing"][sel]
    predictors = {name: CurvaturePredictor.load(w, locator=locator) for name, w in weights.items()}
    loc = next(iter(predictors.values())).locator
    from models.curvature.roi import landmarks_from_keypoints

    located, truth_pts = [], []
    for img, k in zip(images, kps, strict=True):
        located.append(loc.locate(from_u8(img)))
        truth_pts.append(landmarks_from_keypoints(k))
    located, truth_pts = np.array(located), np.array(truth_pts)
    err_mm = np.hypot(*((located - truth_pts) * spacing[:, None, ::-1]).transpose(2, 0, 1))
    out: dict = {"data": str(d.get("source", data)) if isinstance(d, dict) else str(data), "images": len(sel),
                 "views": [_view(v) for v in sorted(set(d["views"][sel].tolist()))],
                 "label_counts": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)},
                 "locator_error_mm": {"median": float(np.median(err_mm)), "p95": float(np.percentile(err_mm, 95)),
                                      "max": float(err_mm.max())}}
    geom3 = np.array([CLASSES.index(three_class(g)) if g != "S-shaped" else -1 for g in geom])
    for name, pr in predictors.items():
        size = pr.input_size
        for roi_name, pts in (("located", located), ("true_roi", truth_pts)):
            crops = np.stack([crop(from_u8(img), curvature_box(p, size)) for img, p in zip(images, pts, strict=True)])
            probs = np.concatenate([pr.probabilities(crops[i:i + 64]) for i in range(0, len(crops), 64)])
            pred = probs.argmax(1)
            res = macro_scores(confusion(labels, pred, len(CLASSES)))
            res["confusion_vs_label"] = confusion(labels, pred, len(CLASSES)).tolist()
            if roi_name == "located":
                cm_g = np.zeros((len(GEOMETRY_CLASSES), len(CLASSES)), dtype=int)
                for g, p in zip(geom, pred, strict=True):
                    cm_g[GEOMETRY_CLASSES.index(g), p] += 1
                res["confusion_vs_geometry"] = {"rows": list(GEOMETRY_CLASSES), "cols": list(CLASSES),
                                                "counts": cm_g.tolist()}
                agree = geom3 == pred
                res["agreement_with_geometry"] = float(agree[geom3 >= 0].mean())
                res["disagreements"] = [
                    {"seed": int(d["seeds"][sel][i]), "view": _view(d["views"][sel][i]),
                     "geometry": str(geom[i]), "model": CLASSES[int(pred[i])], "cobb_deg": round(float(d["cobb"][sel][i]), 1),
                     "p": round(float(probs[i].max()), 2)}
                    for i in np.flatnonzero(~agree)]
            out[f"{name}/{roi_name}"] = res
    if keypoint_weights is not None:
        out["keypoint_geometry"] = _keypoint_geometry(images, spacing, labels, geom, predictors, keypoint_weights)
    return out


def _keypoint_geometry(images: np.ndarray, spacing: np.ndarray, labels: np.ndarray, geom: np.ndarray,
                       predictors: dict[str, CurvaturePredictor], keypoint_weights: Path) -> dict:
    """The class from the geometry of the *predicted* 30 keypoints (the keypoint model of the X-ray pipeline)
    against the label and against each classifier (through the locator)."""
    from models.xray_keypoints.predictor import KeypointPredictor
    from pipelines.xray.findings import curvature_class
    from pipelines.xray.geometry import GeometryError

    kp = KeypointPredictor.load(keypoint_weights, "cpu")
    kp_cls = []
    for img, sp in zip(images, spacing, strict=True):
        pred = kp.predict_batch([from_u8(img)])[0]
        try:
            c = three_class(curvature_class(pred.keypoints, (float(sp[0]), float(sp[1]))))
        except GeometryError:
            c = "not measurable"
        kp_cls.append(c)
    kp_cls = np.array(kp_cls)
    res: dict = {"weights": str(keypoint_weights),
                 "not_measurable": int(np.sum(kp_cls == "not measurable")),
                 "S_shaped": int(np.sum(kp_cls == "S-shaped"))}
    ok = np.isin(kp_cls, CLASSES)
    kp_idx = np.array([CLASSES.index(c) if c in CLASSES else -1 for c in kp_cls])
    res.update(macro_scores(confusion(labels[ok], kp_idx[ok], len(CLASSES))))
    for name, pr in predictors.items():
        crops = np.stack([crop(from_u8(img), curvature_box(pr.locator.locate(from_u8(img)), pr.input_size))
                          for img in images])
        model = pr.probabilities(crops).argmax(1)
        res[f"agreement_{name}"] = float(np.mean(model[ok] == kp_idx[ok]))
        res[f"confusion_{name}_rows_keypoint_geometry"] = confusion(kp_idx[ok], model[ok], len(CLASSES)).tolist()
        both_wrong = (model != labels) & (kp_idx != labels)
        res[f"both_wrong_{name}"] = int(np.sum(both_wrong & ok))
    return res


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.curvature.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a --full .npz from models.curvature.data")
    add_folder_args(ap)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--baseline", type=Path, default=BASELINE_WEIGHTS, help="plain ResNet-34 weights ('' to skip)")
    ap.add_argument("--locator", type=Path, default=DEFAULT_LOCATOR)
    ap.add_argument("--neutral-only", action="store_true")
    ap.add_argument("--keypoint-weights", type=Path, help="also compare with the class from the geometry of the "
                    "keypoints predicted by this models.xray_keypoints model")
    ap.add_argument("--json", type=Path, help="write the full results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    weights = {"s_resnet34": args.weights}
    if str(args.baseline) and args.baseline.is_file():
        weights["resnet34"] = args.baseline
    if (args.data is None) == (args.coco is None and args.labelme is None):
        ap.error("give --data NPZ or one of --coco FILE / --labelme DIR")
    data = args.data
    if data is None:
        from models.curvature.user_data import full_arrays

        data = from_folder(args, full_arrays)
        data["source"] = str(args.coco or args.labelme)
    res = evaluate(data, weights, args.locator, (0,) if args.neutral_only else None, args.keypoint_weights)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(f"{res['images']} images ({', '.join(res['views'])}); labels {res['label_counts']}; locator error "
          f"median {res['locator_error_mm']['median']:.1f} mm, p95 {res['locator_error_mm']['p95']:.1f} mm")
    for key, r in res.items():
        if "/" not in key:
            continue
        line = f"{key:22s} acc {r['accuracy']:.3f}  F1 {r['f1_macro']:.3f}  recall {r['recall_macro']:.3f}"
        if "agreement_with_geometry" in r:
            line += f"  agree-geometry {r['agreement_with_geometry']:.3f} ({len(r['disagreements'])} disagreements)"
        print(line)
    if "keypoint_geometry" in res:
        k = res["keypoint_geometry"]
        print(f"keypoint-model geometry class: acc {k['accuracy']:.3f} F1 {k['f1_macro']:.3f} "
              f"(not measurable {k['not_measurable']}, S-shaped {k['S_shaped']}); agreement "
              + ", ".join(f"{n[10:]} {v:.3f}" for n, v in k.items() if n.startswith("agreement_")))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
