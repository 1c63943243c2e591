"""Out-of-distribution gate of the upper cervical classifier: fit on renderer-A phantoms, store in the weights' meta.

Features: the hidden layer of the head after its ReLU (128 values; it reads the three views' encodings, their
differences, the GRU state and the early-fusion encoder) of the three C0-C2 crops the deployed predictor makes
(spine locator per view). One pooled mean (the six labels are not exclusive classes), one shrunk covariance
(``models.common.ood``). Sets (``generate_upper_cervical_study``, renderer A only; half at the training size, half at
realistic detector sizes): fit on training seeds, threshold (99th percentile) on fresh seeds, test on the card's
held-out seeds (320 px) and on fresh realistic-size seeds::

    nice -n 10 python -m models.upper_cervical.ood --cache /tmp/ood --json /tmp/ood/upper.json [--update-weights]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.common.ood_fit import Extracted, GateSpec, SetSpec, main
from models.curvature.roi import crop, upper_cervical_box
from models.upper_cervical import VIEW_ORDER
from models.upper_cervical.predictor import UpperCervicalPredictor
from pipelines.vocabulary import UPPER_CERVICAL_LABELS

FIT = (SetSpec(200_000, 100, (320, 320)), SetSpec(200_100, 100, None))
THRESHOLD = (SetSpec(940_000, 100, (320, 320)), SetSpec(940_100, 100, None))
TEST = (SetSpec(910_000, 200, (320, 320)), SetSpec(950_000, 100, None))


def extract(pred: UpperCervicalPredictor, s: SetSpec) -> Extracted:
    """Features of every study of the set (three views through the locator, as deployed)."""
    from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study

    feats, recs = [], []
    for seed in range(s.seed, s.seed + s.count):
        st = generate_upper_cervical_study(seed, shape=s.shape)
        crops = []
        for v in VIEW_ORDER:
            img = st.views[v].unit_image().astype(np.float32)
            crops.append(crop(img, upper_cervical_box(pred.locator.locate(img), pred.input_size)))
        p, f = pred.probabilities_and_features(np.stack(crops)[None])
        feats.append(f[0])
        recs.append({"seed": seed, "labels": st.label_vector().astype(int).tolist(),
                     "probs": [round(float(q), 5) for q in p[0]]})
    return Extracted(np.stack(feats), np.zeros(len(feats), int), recs)


def summarize(records: list[dict[str, Any]], accepted: np.ndarray) -> dict[str, Any]:
    """Mean AUC and mAP (per-label AUC too) on all studies vs those the gate accepts."""
    from models.upper_cervical.evaluate import scores

    y = np.array([r["labels"] for r in records], float)
    p = np.array([r["probs"] for r in records], float)
    out: dict[str, Any] = {}
    for name, keep in (("all", np.ones(len(y), bool)), ("accepted", np.asarray(accepted, bool))):
        sc = scores(y[keep], p[keep])
        out[name] = {"studies": int(keep.sum()), "mean_auc": sc["mean_auc"], "map": sc["map"],
                     "auc": {k: sc["per_label"][k]["auc"] for k in UPPER_CERVICAL_LABELS}}
    return out


def _load(weights: Path | None) -> UpperCervicalPredictor:
    return UpperCervicalPredictor.load(weights, "cpu")


SPEC = GateSpec("upper_cervical", _load, extract, FIT, THRESHOLD, TEST, None, False, summarize,
                "hidden layer of the head after its ReLU (128 values)")

if __name__ == "__main__":
    raise SystemExit(main(SPEC, UpperCervicalPredictor))
