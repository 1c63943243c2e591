"""Phantom training data: neutral radiographs of virtual patients, labels from the MRI truth of the same patient.

Per seed: ``vp = virtual_patient(seed)`` (``pipelines.phantoms.patient``), the labels
``cord_compression_truth(vp)`` (the ``LevelTruth.cord_compression`` that ``generate_series(seed, patient=vp)``
would give, computed without rendering the MRI), the neutral view ``generate_study(seed, views=(neutral,),
anatomy=xray_anatomy(vp))`` at one of ``SHAPES``, and per segment ``jittered`` crops from the true keypoints
(``roi.segment_crops`` with ``jitter``) plus one clean crop. Stored as uint8 in an ``.npz``::

    python -m models.cord_compression.data --out /tmp/cc_train.npz --seed 0 --count 3000

``--coco FILE`` / ``--labelme DIR``: the same arrays from a site's annotated radiographs instead
(:mod:`models.cord_compression.user_data`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import add_folder_args, from_folder
from models.cord_compression.roi import segment_crops
from pipelines.results import View

SHAPES: tuple[tuple[int, int], ...] = ((640, 544), (768, 640), (896, 768))
JITTER = 0.04


def patient_view(seed: int, shape: tuple[int, int] | None = None, difficulty: str = "realistic", signs: bool = True):
    """``(virtual patient, labels (5,) bool, PhantomView of the neutral radiograph)`` of one seed (``signs=False``:
    without the radiographic signs of canal encroachment, for the ablation in the evaluation)."""
    from pipelines.phantoms.mri import cord_compression_truth
    from pipelines.phantoms.patient import virtual_patient, xray_anatomy
    from pipelines.phantoms.xray import generate_study

    vp = virtual_patient(seed)
    labels = np.array(cord_compression_truth(vp), dtype=bool)
    if shape is None:
        shape = SHAPES[int(np.random.default_rng([seed, 404]).integers(len(SHAPES)))]
    st = generate_study(seed, views=(View.NEUTRAL,), shape=shape, difficulty=difficulty,
                        anatomy=xray_anatomy(vp, signs=signs))
    return vp, labels, st.views[View.NEUTRAL]


def prepare(out: Path, seeds: range, jittered: int = 2, difficulty: str = "realistic") -> dict:
    """Write ``crops`` (N, 1 + jittered, 5, H, W) uint8, ``labels`` (N, 5) bool, ``seeds`` (N,)."""
    from pipelines.phantoms.xray import unit_image

    crops, labels = [], []
    t0 = time.time()
    for seed in seeds:
        _, lab, pv = patient_view(seed, difficulty=difficulty)
        img = unit_image(pv.pixels, pv.photometric)
        rng = np.random.default_rng([seed, 4041])
        per = [segment_crops(img, pv.keypoints)[0]]
        per += [segment_crops(img, pv.keypoints, rng=rng, jitter=JITTER)[0] for _ in range(jittered)]
        crops.append(to_u8(np.stack(per)))
        labels.append(lab)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, crops=np.stack(crops), labels=np.stack(labels), seeds=np.array(list(seeds)))
    return {"patients": len(labels), "segments": 5 * len(labels), "positive": int(np.sum(labels)),
            "seconds": round(time.time() - t0, 1), "out": str(out)}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node train cord-compression data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--jittered", type=int, default=2, help="jittered crops per segment (plus one clean)")
    ap.add_argument("--difficulty", default="realistic")
    add_folder_args(ap)
    args = ap.parse_args(argv)
    from models.cord_compression.user_data import prepare_user  # here: it imports this module

    done = from_folder(args, prepare_user, args.out, jittered=args.jittered)  # a site's folder, else phantoms
    print(done if done is not None else prepare(args.out, range(args.seed, args.seed + args.count), args.jittered,
                                                args.difficulty))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
