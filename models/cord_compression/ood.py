"""Out-of-distribution gate of the cord-compression classifier: fit on renderer-A phantoms, store in the weights' meta.

Features: the pooled last conv block (64 values, what the head reads beside the segment's one-hot) of each segment
crop, placed by the true keypoints (the deployed model gets the keypoint model's, which on renderer A are within
0.3 mm). One mean per segment (the segment is known at inference), one shared shrunk covariance; the distance is to
the crop's own segment mean (``models.common.ood``). Sets (neutral views of virtual patients, renderer A only; half at
a training size, half at realistic detector sizes): fit on training seeds, threshold (99th percentile over all
segments) on fresh seeds, test on the card's held-out seeds and on fresh realistic-size seeds::

    nice -n 10 python -m models.cord_compression.ood --cache /tmp/ood --json /tmp/ood/cord.json [--update-weights]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.common.metrics import binary_metrics
from models.common.ood_fit import Extracted, GateSpec, SetSpec, main
from models.cord_compression.predictor import CordCompressionPredictor
from models.cord_compression.roi import normalise, segment_crops
from pipelines.results import SEGMENTS, View

FIT = (SetSpec(0, 100, (768, 640)), SetSpec(100, 100, None))
THRESHOLD = (SetSpec(940_000, 100, (768, 640)), SetSpec(940_100, 100, None))
TEST = (SetSpec(200_000, 120, (768, 640)), SetSpec(950_000, 100, None))


def extract(pred: CordCompressionPredictor, s: SetSpec) -> Extracted:
    """Features of the five segment crops of every patient's neutral view (true keypoints)."""
    from pipelines.phantoms.mri import cord_compression_truth
    from pipelines.phantoms.patient import virtual_patient, xray_anatomy
    from pipelines.phantoms.xray import generate_study, unit_image

    feats, groups, recs = [], [], []
    seg = torch.arange(len(SEGMENTS))
    for seed in range(s.seed, s.seed + s.count):
        vp = virtual_patient(seed)
        labels = cord_compression_truth(vp)
        pv = generate_study(seed, views=(View.NEUTRAL,), shape=s.shape, anatomy=xray_anatomy(vp)).views[View.NEUTRAL]
        crops, _ = segment_crops(unit_image(pv.pixels, pv.photometric).astype(np.float32), pv.keypoints)
        x = torch.from_numpy(normalise(crops)).unsqueeze(1)
        with torch.no_grad():
            probs = torch.sigmoid(pred.net(x, seg)).numpy()
        feats.append(pred.features(x))
        groups.extend(range(len(SEGMENTS)))
        recs.extend({"seed": seed, "segment": sg, "label": int(bool(labels[j])), "prob": round(float(probs[j]), 5)}
                    for j, sg in enumerate(SEGMENTS))
    return Extracted(np.concatenate(feats), np.array(groups), recs)


def summarize(records: list[dict[str, Any]], accepted: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity, AUC over segments, all vs those the gate accepts."""
    thr = threshold if threshold is not None else float(CordCompressionPredictor.read_checkpoint().meta["threshold"])
    y = np.array([r["label"] for r in records])
    p = np.array([r["prob"] for r in records])
    out: dict[str, Any] = {"studies_with_a_rejected_segment": len({r["seed"] for r, a in zip(records, accepted,
                                                                                            strict=True) if not a})}
    for name, keep in (("all", np.ones(len(y), bool)), ("accepted", np.asarray(accepted, bool))):
        m = binary_metrics(y[keep], p[keep], thr)
        out[name] = {"segments": int(keep.sum()), "positives": int(y[keep].sum()),
                     **{k: m[k] for k in ("accuracy", "sensitivity", "specificity", "auc") if k in m}}
    return out


def _load(weights: Path | None) -> CordCompressionPredictor:
    return CordCompressionPredictor.load(weights, "cpu")


SPEC = GateSpec("cord_compression", _load, extract, FIT, THRESHOLD, TEST, tuple(SEGMENTS), True, summarize,
                "pooled last conv block (64 values), per segment")

if __name__ == "__main__":
    raise SystemExit(main(SPEC, CordCompressionPredictor))
