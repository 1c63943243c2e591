"""Fit one decision threshold per label on a validation set and store it in the weights file.

The focal loss leaves probabilities of rare labels low, so 0.5 is a poor cut-off; each label gets the
threshold that maximises F1 on validation phantoms (seeds disjoint from training and test), through the
locator as deployed. The predictor uses ``meta["thresholds"]`` when present.

    python -m models.upper_cervical.thresholds --data /tmp/uc_val.npz --weights models/upper_cervical/cervihfenet_v1.pt

``--coco FILE`` / ``--labelme DIR`` instead of ``--data``: a site's validation studies with their
``"upper_cervical"`` labels (:func:`models.upper_cervical.user_data.full_arrays`), e.g. after fine-tuning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import save_checkpoint
from models.common.images import from_u8
from models.common.user_labels import add_folder_args, from_folder
from models.curvature.roi import DEFAULT_LOCATOR, crop, upper_cervical_box
from models.upper_cervical import DEFAULT_WEIGHTS
from models.upper_cervical.predictor import UpperCervicalPredictor
from pipelines.vocabulary import UPPER_CERVICAL_LABELS


def located_probabilities(pr: UpperCervicalPredictor, images: np.ndarray) -> np.ndarray:
    """(N, 3, rows, cols) uint8 views (view order of the model) -> (N, 6) probabilities through the locator."""
    crops = []
    for views in images:
        per = []
        for img in views:
            im = from_u8(img)
            per.append(crop(im, upper_cervical_box(pr.locator.locate(im), pr.input_size)))
        crops.append(np.stack(per))
    return np.concatenate([pr.probabilities(np.stack(crops[i:i + 32])) for i in range(0, len(crops), 32)])


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold (midpoint between neighbouring scores) with the highest F1; 0.5 without positives."""
    y = np.asarray(y, bool)
    if not y.any():
        return 0.5
    s = np.unique(p)
    cands = np.concatenate([(s[:-1] + s[1:]) / 2, [s[0] - 1e-6]]) if len(s) > 1 else s
    best, best_t = -1.0, 0.5
    for t in cands:
        pred = p >= t
        tp = float((pred & y).sum())
        f1 = 2 * tp / max(pred.sum() + y.sum(), 1)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.upper_cervical.thresholds", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="validation .npz (prepared with --full)")
    add_folder_args(ap)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--locator", type=Path, default=DEFAULT_LOCATOR)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if (args.data is None) == (args.coco is None and args.labelme is None):
        ap.error("give --data NPZ or one of --coco FILE / --labelme DIR")
    if args.data is not None:
        d, source = np.load(args.data), str(args.data)
    else:
        from models.upper_cervical.user_data import full_arrays

        d = from_folder(args, full_arrays)
        source = str(args.coco or args.labelme)
    pr = UpperCervicalPredictor.load(args.weights, locator=args.locator)
    probs = located_probabilities(pr, d["images"])
    thresholds = {k: round(best_f1_threshold(d["labels"][:, i] > 0.5, probs[:, i]), 4)
                  for i, k in enumerate(UPPER_CERVICAL_LABELS)}
    ck = UpperCervicalPredictor.read_checkpoint(args.weights)
    meta = {**ck.meta, "thresholds": thresholds,
            "thresholds_data": f"{source} ({len(probs)} studies, max F1 per label)"}
    save_checkpoint(args.weights, ck.model, ck.version, ck.parts, meta, dtype=None)
    print(json.dumps(thresholds))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
