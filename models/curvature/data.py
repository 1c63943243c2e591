"""Phantom training data for the curvature classifier and the spine locator (written to an ``.npz``).

Per image (every view of each study, ``generate_study(seed, shape=...)``): the 96 x 96 locator input with the
3 true landmarks, a ``CONTEXT`` x wider curvature crop (uint8) from the true landmarks (training takes a
jittered window of it, mimicking locator error), the 3-class label from the true Cobb angle and, for the
evaluation, the geometry class from the true keypoints (:func:`pipelines.xray.geometry.curvature_class`).
``--coco FILE`` / ``--labelme DIR``: the same arrays from a site's annotated radiographs instead
(:mod:`models.curvature.user_data`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import add_folder_args, from_folder
from models.curvature import CLASSES
from models.curvature.roi import crop, curvature_box, landmarks_from_keypoints, locator_input
from pipelines.results import View
from pipelines.xray.findings import classify_curvature, curvature_class

INPUT = 128
"""Classifier input size (pixels)."""
CONTEXT = 1.25
CROP = int(round(INPUT * CONTEXT))


def three_class(label: str) -> str:
    """Geometry class -> the classifier's 3 classes (``reversed-kyphotic`` -> ``reversed``; S-shaped by Cobb)."""
    return {"reversed-kyphotic": "reversed"}.get(label, label)


def class_from_cobb(cobb_deg: float) -> str:
    return three_class(classify_curvature(cobb_deg, None))


def prepare(out: Path, seeds: range, shape: tuple[int, int], difficulty: str = "realistic",
            full: bool = False) -> dict[str, int]:
    """Write the ``.npz``; ``full`` also stores the whole [0, 1] images as uint8 (held-out sets: the
    evaluation runs the locator on them) with their pixel spacing and true keypoints."""
    from pipelines.phantoms.xray import generate_study, unit_image

    loc, loc_pts, crops, labels, geom, cobb, views, seed_of = [], [], [], [], [], [], [], []
    images, spacing, keypoints = [], [], []
    for seed in seeds:
        st = generate_study(seed, shape=shape, difficulty=difficulty)
        for view, pv in st.views.items():
            img = unit_image(pv.pixels, pv.photometric)
            pts = landmarks_from_keypoints(pv.keypoints)
            x, tf = locator_input(img)
            loc.append(to_u8(x * 0.5 + 0.5))
            loc_pts.append(tf.to_model(pts).astype(np.float32))
            crops.append(to_u8(crop(img, curvature_box(pts, CROP, CONTEXT)) * 0.5 + 0.5))
            c = next(m.value for m in pv.truth if m.key == "cobb_c2_c7")
            labels.append(CLASSES.index(class_from_cobb(c)))
            geom.append(curvature_class(pv.keypoints, pv.pixel_spacing_mm))
            cobb.append(c)
            views.append(list(View).index(view))
            seed_of.append(seed)
            if full:
                images.append(to_u8(img))
                spacing.append(pv.pixel_spacing_mm)
                keypoints.append(pv.keypoints.astype(np.float32))
    extra = {"images": np.stack(images), "spacing": np.array(spacing), "keypoints": np.stack(keypoints)} if full else {}
    np.savez_compressed(out, loc=np.stack(loc), loc_pts=np.stack(loc_pts), crops=np.stack(crops),
                        labels=np.array(labels), geom=np.array(geom), cobb=np.array(cobb, dtype=np.float32),
                        views=np.array(views), seeds=np.array(seed_of), **extra)
    return {c: int(np.sum(np.array(labels) == i)) for i, c in enumerate(CLASSES)}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node train curvature data", description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=100000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--shape", type=int, nargs=2, default=(256, 256))
    ap.add_argument("--full", action="store_true", help="also store the whole images (held-out sets)")
    add_folder_args(ap)
    args = ap.parse_args(argv)
    from models.curvature.user_data import prepare_user  # here: it imports this module

    counts = from_folder(args, prepare_user, args.out)  # a site's annotated folder, else phantoms
    if counts is None:
        counts = prepare(args.out, range(args.seed, args.seed + args.count), tuple(args.shape), full=args.full)
    print(f"wrote {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
