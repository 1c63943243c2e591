"""Evaluate the cord-compression model on held-out virtual patients against the MRI reference.

    cspine-node evaluate cord-compression --seed 200000 --count 120 --out /tmp/cc_eval.json

For every held-out seed (not in the training or validation ranges): the neutral radiograph of the virtual
patient (``data.patient_view``) and the MRI truth of the same patient. Two runs: (1) crops from the true
keypoints (the classifier alone); (2) end to end, with the keypoints predicted by the X-ray keypoint model
(``--e2e`` patients; those whose keypoint spread fails the pipeline's uncertainty gate are counted apart).
Metrics (accuracy, sensitivity, specificity, F1, AUC, Cohen's kappa) overall and per segment, as JSON.
``--no-signs`` renders the same patients without the radiographic signs of canal encroachment (ablation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.common.metrics import binary_metrics
from models.cord_compression.data import patient_view
from models.cord_compression.predictor import CordCompressionPredictor
from pipelines.results import SEGMENTS


def _report(labels: np.ndarray, probs: np.ndarray, thr: float) -> dict:
    out = {"overall": binary_metrics(labels.ravel(), probs.ravel(), thr)}
    for j, s in enumerate(SEGMENTS):
        out[s] = binary_metrics(labels[:, j], probs[:, j], thr)
    return out


def evaluate(seeds: range, weights: Path | None = None, e2e: int = 0, gate_mm: float = 0.3, signs: bool = True) -> dict:
    from pipelines.phantoms.xray import unit_image

    pred = CordCompressionPredictor.load(weights)
    thr = pred.threshold
    kp_model = None
    if e2e:
        from models.xray_keypoints.predictor import KeypointPredictor

        kp_model = KeypointPredictor.load(None, "cpu")
    labels, p_true, p_e2e, lab_e2e, gated, kp_err = [], [], [], [], [], []
    t0 = time.time()
    t_cls = 0.0
    for n, seed in enumerate(seeds):
        _, lab, pv = patient_view(seed, signs=signs)
        img = unit_image(pv.pixels, pv.photometric)
        t1 = time.time()
        probs = [sp.probability for sp in pred.predict(img, pv.keypoints, gradcam=False)]
        t_cls += time.time() - t1
        labels.append(lab)
        p_true.append(probs)
        if kp_model is not None and n < e2e:
            kp = kp_model.predict(img)
            spacing = pv.pixel_spacing_mm
            median_mm = float(np.median(kp.sigma_px)) * float(np.sqrt(spacing[0] * spacing[1]))
            p_e2e.append([sp.probability for sp in pred.predict(img, kp.keypoints, gradcam=False)])
            lab_e2e.append(lab)
            gated.append(median_mm <= gate_mm)
            kp_err.append(float(np.mean(np.hypot(*(kp.keypoints - pv.keypoints).T)) * np.sqrt(spacing[0] * spacing[1])))
    labels_a, p_true_a = np.array(labels), np.array(p_true)
    out = {"weights": str(weights or "default"), "version": pred.version, "threshold": thr,
           "seeds": [seeds.start, seeds.stop], "signs": signs, "patients": len(labels), "segments": int(labels_a.size),
           "true_keypoints": _report(labels_a, p_true_a, thr),
           "classifier_ms_per_patient": round(1000 * t_cls / max(len(labels), 1), 1)}
    if p_e2e:
        le, pe, g = np.array(lab_e2e), np.array(p_e2e), np.array(gated)
        out["predicted_keypoints"] = {"patients": len(le), "mean_keypoint_error_mm": round(float(np.mean(kp_err)), 3),
                                      "passed_gate": int(g.sum()), **_report(le, pe, thr)}
        if g.any() and not g.all():
            out["predicted_keypoints_gated"] = _report(le[g], pe[g], thr)
        out["true_keypoints_same_patients"] = _report(le, p_true_a[: len(le)], thr)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node evaluate cord-compression", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=200000, help="first held-out seed")
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--e2e", type=int, default=None, help="patients run end to end with predicted keypoints "
                                                         "(default: all)")
    ap.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    ap.add_argument("--no-signs", action="store_true", help="ablation: radiographs without the phantom's signs of "
                                                            "canal encroachment (posterior spurs, calcified herniation)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = evaluate(range(args.seed, args.seed + args.count), args.weights,
                   args.count if args.e2e is None else args.e2e, signs=not args.no_signs)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    short = {k: res[k]["overall"] for k in ("true_keypoints", "predicted_keypoints") if k in res}
    print(json.dumps(short, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
