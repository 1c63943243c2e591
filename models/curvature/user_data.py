"""Training arrays of the curvature classifier (and the spine locator) from a site's annotated radiographs.

Reads the folder of :mod:`models.common.user_labels` (COCO keypoints or labelme, the cascade's layout) with
``"labels": {"curvature_class": "normal" | "straightened" | "reversed"}`` per image (``reversed-kyphotic`` counts
as ``reversed``) and writes the arrays :mod:`models.curvature.data` writes for phantoms: ``crops`` (the
``CONTEXT`` x wider C2-C7 crop from the annotated landmarks), ``labels``, the locator input ``loc`` with its
landmarks ``loc_pts``, ``views``; ``cobb`` is NaN and ``seeds`` -1 (no phantom truth), ``geom`` the class label.
An image needs the keypoints that place the landmarks (C2 antero/postero-superior, the four C4 corners, C7
antero/postero-inferior); any view may be used::

    cspine-node train curvature data --coco site/annotations.json --out /tmp/curv_user.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import UserLabelError, read_folder, select, source_of
from models.curvature import CLASSES
from models.curvature.data import CONTEXT, CROP, three_class
from models.curvature.roi import crop, curvature_box, landmarks_from_keypoints, locator_input
from pipelines.results import View

LABEL_KEY = "curvature_class"
NEEDED_POINTS: tuple[int, ...] = (0, 2, 8, 9, 10, 11, 21, 23)
"""Keypoints (``KEYPOINT_NAMES`` indices) that place the 3 landmarks."""


def class_index(value: object, where: str) -> int:
    name = three_class(str(value).strip().lower())
    if name not in CLASSES:
        raise UserLabelError(f"{where}: '{LABEL_KEY}' must be one of {', '.join(CLASSES)} "
                             f"(or reversed-kyphotic), got {value!r}")
    return CLASSES.index(name)


def prepare_user(out: Path, *, coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                 label_map: Path | None = None,
                 max_side: int = 1100) -> dict:
    """Write the ``.npz``; returns the counts per class and what was left out."""
    source = source_of(coco, labelme)
    sel = select(read_folder(coco, labelme, images, label_map), LABEL_KEY, source, NEEDED_POINTS)
    loc, loc_pts, crops, labels, views = [], [], [], [], []
    for im in sel.images:
        label = class_index(im.labels[LABEL_KEY], f"{source}: image {im.name}")
        img, kp, _ = im.load(max_side)
        pts = landmarks_from_keypoints(np.nan_to_num(kp))
        x, tf = locator_input(img)
        loc.append(to_u8(x * 0.5 + 0.5))
        loc_pts.append(tf.to_model(pts).astype(np.float32))
        crops.append(to_u8(crop(img, curvature_box(pts, CROP, CONTEXT)) * 0.5 + 0.5))
        labels.append(label)
        views.append(list(View).index(im.view) if im.view is not None else -1)
    lab = np.array(labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, loc=np.stack(loc), loc_pts=np.stack(loc_pts), crops=np.stack(crops), labels=lab,
                        geom=np.array([CLASSES[i] for i in lab]), cobb=np.full(len(lab), np.nan, np.float32),
                        views=np.array(views), seeds=np.full(len(lab), -1))
    print(sel.report(source))
    return {"images": len(lab), **{c: int(np.sum(lab == i)) for i, c in enumerate(CLASSES)},
            "left_out": len(sel.dropped)}


def full_arrays(*, coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                label_map: Path | None = None,
                max_side: int = 1100) -> dict[str, np.ndarray]:
    """What :mod:`models.curvature.evaluate` reads from a ``--full`` phantom ``.npz``, from a site's folder: the
    whole images (uint8, an object array: sizes differ), ``spacing``, ``keypoints``, ``labels``, ``geom`` (the
    class from the annotated keypoints' geometry; the label where the 24 corners are not all annotated),
    ``views``; ``cobb`` NaN, ``seeds`` -1."""
    from pipelines.xray.findings import curvature_class
    from pipelines.xray.geometry import GeometryError

    source = source_of(coco, labelme)
    sel = select(read_folder(coco, labelme, images, label_map), LABEL_KEY, source, NEEDED_POINTS)
    print(sel.report(source))
    n = len(sel.images)
    out = {"images": np.empty(n, dtype=object), "spacing": np.zeros((n, 2)), "keypoints": np.zeros((n, 30, 2)),
           "labels": np.zeros(n, int), "geom": np.empty(n, dtype=object), "views": np.full(n, -1),
           "cobb": np.full(n, np.nan), "seeds": np.full(n, -1)}
    for i, im in enumerate(sel.images):
        out["labels"][i] = class_index(im.labels[LABEL_KEY], f"{source}: image {im.name}")
        img, kp, sp = im.load(max_side)
        out["images"][i] = to_u8(img)
        out["spacing"][i] = sp
        out["keypoints"][i] = np.nan_to_num(kp)
        geom = CLASSES[out["labels"][i]]
        if im.labelled[:24].all():
            try:
                geom = curvature_class(np.nan_to_num(kp), sp)
            except (GeometryError, ValueError):
                pass
        out["geom"][i] = geom
        out["views"][i] = list(View).index(im.view) if im.view is not None else -1
    return out


__all__ = ["LABEL_KEY", "NEEDED_POINTS", "class_index", "full_arrays", "prepare_user"]
