"""Training arrays of the upper cervical classifier from a site's annotated radiographs (three views per study).

Reads the folder of :mod:`models.common.user_labels` (COCO keypoints or labelme, the cascade's layout). A study is
the images with the same ``study_uid``; it needs one ``extension``, one ``neutral`` and one ``flexion`` image
(``view``) and the six labels (keys :data:`pipelines.vocabulary.UPPER_CERVICAL_LABELS`, 0 or 1) on at least one of
its images (given on several, they must agree)::

    "labels": {"upper_cervical": {"atlantoaxial_instability": 0, "os_odontoideum": 1, "odontoid_fracture": 0,
                                  "basilar_invagination": 0, "atlanto_occipital_assimilation": 0,
                                  "atlantodental_osteoarthritis": 0}}

Writes the arrays :mod:`models.upper_cervical.data` writes for phantoms: ``crops`` (N, 3, CROP, CROP) in view
order extension, neutral, flexion from the annotated landmarks, ``labels`` (N, 6), the locator inputs ``loc`` /
``loc_pts`` (3 per study); ``adi`` NaN and ``seeds`` -1 (no phantom truth)::

    cspine-node train upper-cervical data --coco site/annotations.json --out /tmp/uc_user.npz
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import UserLabelError, binary, read_folder, select, source_of
from models.curvature.roi import crop, landmarks_from_keypoints, locator_input, upper_cervical_box
from models.curvature.user_data import NEEDED_POINTS
from models.upper_cervical import VIEW_ORDER
from models.upper_cervical.data import CONTEXT, CROP
from pipelines.vocabulary import UPPER_CERVICAL_LABELS

LABEL_KEY = "upper_cervical"


def _study_labels(values: list[dict], where: str) -> np.ndarray:
    vecs = []
    for v in values:
        if not isinstance(v, dict):
            raise UserLabelError(f"{where}: '{LABEL_KEY}' must be an object of the six finding keys, got {v!r}")
        unknown = sorted(set(v) - set(UPPER_CERVICAL_LABELS))
        missing = [k for k in UPPER_CERVICAL_LABELS if k not in v]
        if unknown or missing:
            raise UserLabelError(f"{where}: '{LABEL_KEY}' needs the keys {', '.join(UPPER_CERVICAL_LABELS)}"
                                 + (f"; missing: {', '.join(missing)}" if missing else "")
                                 + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        vecs.append(np.array([binary(v[k], f"{where}: {k}") for k in UPPER_CERVICAL_LABELS], np.float32))
    if any(not np.array_equal(vecs[0], x) for x in vecs[1:]):
        raise UserLabelError(f"{where}: its images give different '{LABEL_KEY}' labels")
    return vecs[0]


def studies(coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
            label_map: Path | None = None
            ) -> tuple[list[tuple[str, dict, np.ndarray]], list[str], str]:
    """``([(study, {view: LabelledImage}, labels (6,)), ...], left out, source)`` of a site's folder."""
    source = source_of(coco, labelme)
    everything = read_folder(coco, labelme, images, label_map)
    by_study: dict[str, list] = defaultdict(list)
    for im in everything:
        by_study[im.study].append(im)
    labelled_studies = {s for s, ims in by_study.items() if any(LABEL_KEY in im.labels for im in ims)}
    # a study's labels may sit on one of its images: every image of a labelled study takes part
    for s in labelled_studies:
        lab = next(im.labels[LABEL_KEY] for im in by_study[s] if LABEL_KEY in im.labels)
        for im in by_study[s]:
            im.labels.setdefault(LABEL_KEY, lab)
    sel = select(everything, LABEL_KEY, source, NEEDED_POINTS)
    groups: dict[str, list] = defaultdict(list)
    for im in sel.images:
        groups[im.study].append(im)
    found, dropped = [], list(sel.dropped)
    for study, ims in sorted(groups.items()):
        where = f"{source}: study {study or '(no study_uid)'}"
        views = {v: [im for im in ims if im.view == v] for v in VIEW_ORDER}
        if any(len(x) != 1 for x in views.values()):
            got = {v.value: len(x) for v, x in views.items()}
            dropped.append(f"study {study or '(no study_uid)'}: needs one image per view, has {got}")
            continue
        found.append((study, {v: x[0] for v, x in views.items()},
                      _study_labels([im.labels[LABEL_KEY] for im in ims], where)))
    for d in dropped[:20]:
        print(f"  left out {d}")
    if not found:
        raise UserLabelError(f"{source}: no study with '{LABEL_KEY}' labels has its three views "
                             "(extension, neutral, flexion with the same study_uid)")
    return found, dropped, source


def prepare_user(out: Path, *, coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                 label_map: Path | None = None,
                 max_side: int = 1100) -> dict:
    """Write the ``.npz``; returns the studies, the positives per label and what was left out."""
    found, dropped, source = studies(coco, labelme, images, label_map)
    crops, labels, loc, loc_pts = [], [], [], []
    for _, views, lab in found:
        per_view = []
        for v in VIEW_ORDER:
            img, kp, _ = views[v].load(max_side)
            pts = landmarks_from_keypoints(np.nan_to_num(kp))
            per_view.append(to_u8(crop(img, upper_cervical_box(pts, CROP, CONTEXT)) * 0.5 + 0.5))
            x, tf = locator_input(img)
            loc.append(to_u8(x * 0.5 + 0.5))
            loc_pts.append(tf.to_model(pts).astype(np.float32))
        crops.append(np.stack(per_view))
        labels.append(lab)
    lab = np.stack(labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, crops=np.stack(crops), labels=lab, loc=np.stack(loc), loc_pts=np.stack(loc_pts),
                        adi=np.full((len(lab), 3), np.nan, np.float32), seeds=np.full(len(lab), -1))
    print(f"{len(lab)} studies from {source}; {len(dropped)} images/studies left out")
    return {"studies": len(lab), **{k: int(lab[:, i].sum()) for i, k in enumerate(UPPER_CERVICAL_LABELS)},
            "left_out": len(dropped)}


def full_arrays(*, coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                label_map: Path | None = None,
                max_side: int = 1100) -> dict[str, np.ndarray]:
    """What :mod:`models.upper_cervical.thresholds` reads from a ``--full`` phantom ``.npz``, from a site's folder:
    ``images`` (an object array: per study the 3 whole views, uint8, in view order; sizes differ) and ``labels``."""
    found, _, _ = studies(coco, labelme, images, label_map)
    out = np.empty(len(found), dtype=object)
    for i, (_, views, _) in enumerate(found):
        out[i] = [to_u8(views[v].load(max_side)[0]) for v in VIEW_ORDER]
    return {"images": out, "labels": np.stack([lab for _, _, lab in found])}


__all__ = ["LABEL_KEY", "full_arrays", "prepare_user", "studies"]
