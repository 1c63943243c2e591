"""Phantom data for the upper cervical classifier (``generate_upper_cervical_study``) as an ``.npz``.

Per study: the three views (order :data:`models.upper_cervical.VIEW_ORDER`) cropped ``CONTEXT`` x wider than
the upper cervical ROI of the true landmarks (uint8; training takes jittered windows of ``INPUT`` px), the six
labels, the per-view truths (ADI, BDI, dens above McRae's line) and the locator inputs with their landmarks.
``--coco FILE`` / ``--labelme DIR``: the same arrays from a site's annotated studies instead
(:mod:`models.upper_cervical.user_data`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import add_folder_args, from_folder
from models.curvature.roi import crop, landmarks_from_keypoints, locator_input, upper_cervical_box
from models.upper_cervical import VIEW_ORDER

INPUT = 96
CONTEXT = 1.25
CROP = int(round(INPUT * CONTEXT))


def prepare(out: Path, seeds: range, shape: tuple[int, int], difficulty: str = "realistic",
            full: bool = False) -> dict[str, int]:
    """Write the ``.npz``; ``full`` also stores the whole [0, 1] views (uint8, (N, 3, rows, cols)) and their
    pixel spacing for the evaluation through the locator."""
    from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study
    from pipelines.vocabulary import UPPER_CERVICAL_LABELS

    crops, labels, loc, loc_pts, adi, seed_of = [], [], [], [], [], []
    images, spacing = [], []
    for seed in seeds:
        st = generate_upper_cervical_study(seed, shape=shape, difficulty=difficulty)
        per_view = []
        for view in VIEW_ORDER:
            uv = st.views[view]
            img = uv.unit_image()
            pts = landmarks_from_keypoints(uv.keypoints)
            per_view.append(to_u8(crop(img, upper_cervical_box(pts, CROP, CONTEXT)) * 0.5 + 0.5))
            x, tf = locator_input(img)
            loc.append(to_u8(x * 0.5 + 0.5))
            loc_pts.append(tf.to_model(pts).astype(np.float32))
            adi.append(uv.truth_mm["adi"])
        crops.append(np.stack(per_view))
        if full:
            images.append(np.stack([to_u8(st.views[v].unit_image()) for v in VIEW_ORDER]))
            spacing.append([st.views[v].pixel_spacing_mm for v in VIEW_ORDER])
        labels.append(st.label_vector())
        seed_of.append(seed)
    lab = np.stack(labels)
    extra = {"images": np.stack(images), "spacing": np.array(spacing)} if full else {}
    np.savez_compressed(out, crops=np.stack(crops), labels=lab, loc=np.stack(loc), loc_pts=np.stack(loc_pts),
                        adi=np.array(adi, dtype=np.float32).reshape(-1, 3), seeds=np.array(seed_of), **extra)
    return {k: int(lab[:, i].sum()) for i, k in enumerate(UPPER_CERVICAL_LABELS)}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node train upper-cervical data", description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=200000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--shape", type=int, nargs=2, default=(320, 320))
    ap.add_argument("--full", action="store_true", help="also store the whole images (held-out sets)")
    add_folder_args(ap)
    args = ap.parse_args(argv)
    from models.upper_cervical.user_data import prepare_user  # here: it imports this module

    counts = from_folder(args, prepare_user, args.out)  # a site's folder, else phantoms
    if counts is None:
        counts = prepare(args.out, range(args.seed, args.seed + args.count), tuple(args.shape), full=args.full)
    print(f"wrote {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
