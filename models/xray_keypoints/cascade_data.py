"""A site's own annotated radiographs (COCO keypoints or labelme) as training views of the cascade.

``cspine-node train xray cascade data --coco FILE.json [--images DIR] | --labelme DIR [--phantom-studies N]`` turns
each annotated image into a :class:`~models.xray_keypoints.cascade_train.StoredView`: the image block-averaged to a
longest side of at most ``max_side`` px (1100 by default: the size the shipped weights were trained at; a stage-2 crop
is about 0.55 mm per crop pixel, so a 3000 px radiograph loses nothing the network sees), with its keypoints, pixel
spacing and view, and ``labelled``: which of the 30 points the annotator placed (COCO visibility 1 or 2; a labelme
label that names a keypoint). Points that are not labelled are left out of the loss (masked):

- stage 1 (12 points): a body centre counts only when all 4 corners of that vertebra are labelled; a spinolaminar
  point when it is labelled;
- stage 2 (per vertebra): crops only for vertebrae whose 4 corners are labelled; the spinolaminar target only
  where labelled. The crop frames need all 6 centres and the anterior direction: missing centres are filled by a
  quadratic fit over the level, missing spinolaminar points (e.g. corrections that give the 24 corners only) by a
  point behind the body (the anterior direction from the corners).

A view with fewer than :data:`MIN_LEVELS` fully labelled vertebrae cannot place the crops and is dropped; the
count of dropped views is printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.xray_keypoints.cascade import N_LEVELS, stage1_targets
from models.xray_keypoints.data import RawSample, shrink

MIN_LEVELS = 3
"""Fully labelled vertebrae (4 corners) a view needs to be used (the frame fit needs 3)."""


def level_labelled(labelled: np.ndarray) -> np.ndarray:
    """(6,) bool: all 4 corners of the vertebra are labelled."""
    return np.asarray(labelled, bool)[:24].reshape(N_LEVELS, 4).all(axis=1)


def stage1_labelled(labelled: np.ndarray | None) -> np.ndarray:
    """(12,) bool: which stage-1 targets (6 centres, 6 spinolaminar points) are known."""
    if labelled is None:
        return np.ones(2 * N_LEVELS, bool)
    return np.concatenate([level_labelled(labelled), np.asarray(labelled, bool)[24:30]])


def frame_points(keypoints: np.ndarray, labelled: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The 6 body centres and 6 spinolaminar points that place the stage-2 crops, filled where not labelled.

    Missing centres: quadratic fit (x and y over the level) through the labelled ones. Missing spinolaminar points:
    the centre moved one body depth posterior (the direction from the anterior to the posterior corners)."""
    pts = stage1_targets(np.nan_to_num(np.asarray(keypoints, float)))
    centres, sl = pts[:N_LEVELS].copy(), pts[N_LEVELS:].copy()
    if labelled is None:
        return centres, sl
    lab = np.asarray(labelled, bool)
    ok = level_labelled(lab)
    good = np.flatnonzero(ok)
    if len(good) < MIN_LEVELS:
        raise ValueError(f"only {len(good)} fully labelled vertebrae (need {MIN_LEVELS})")
    if not ok.all():
        deg = min(2, len(good) - 1)
        fit = [np.polyfit(good, centres[good, d], deg) for d in (0, 1)]
        bad = np.flatnonzero(~ok)
        centres[bad] = np.column_stack([np.polyval(fit[d], bad) for d in (0, 1)])
    missing_sl = ~lab[24:30]
    if missing_sl.any():
        kp = np.nan_to_num(np.asarray(keypoints, float))[:24].reshape(N_LEVELS, 4, 2)
        posterior = (kp[good, 2:4].mean(axis=1) - kp[good, 0:2].mean(axis=1)).mean(axis=0)
        depth = float(np.linalg.norm(posterior))
        direction = posterior / max(depth, 1e-9)
        sl[missing_sl] = centres[missing_sl] + 1.5 * max(depth, 1.0) * direction
    return centres, sl


def stored_view(raw: RawSample, labelled: np.ndarray, *, max_side: int = 1100):  # noqa: ANN201 - StoredView
    """One annotated image -> a training view (image reduced to ``max_side``; uint8, bone bright)."""
    from models.xray_keypoints.cascade_train import StoredView

    lab = np.asarray(labelled, bool)
    kp = np.where(lab[:, None], np.nan_to_num(np.asarray(raw.keypoints, float)), 0.0)
    r = shrink(RawSample(np.asarray(raw.image, np.float32), kp, lab, raw.spacing_mm, raw.view), max_side)
    small = shrink(r, 320)
    return StoredView(np.round(np.clip(r.image, 0, 1) * 255).astype(np.uint8), r.keypoints, lab.copy(),
                      tuple(float(v) for v in r.spacing_mm), r.view, small.image.astype(np.float16), small.keypoints,
                      labelled=lab.copy())


@dataclass
class UserData:
    """Views read from a site's annotations, and what was left out."""

    views: list = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """One line per image left out (file name and why)."""
    spacing_missing: int = 0
    """Images without a pixel spacing (0.1 mm assumed: millimetre losses and errors are then nominal)."""


def _add(out: UserData, name: str, raw_fn, labelled: np.ndarray, max_side: int) -> None:  # noqa: ANN001
    n = int(level_labelled(labelled).sum())
    if n < MIN_LEVELS:
        out.dropped.append(f"{name}: {n} fully labelled vertebrae (need {MIN_LEVELS})")
        return
    try:
        raw = raw_fn()
    except (OSError, ValueError) as exc:
        out.dropped.append(f"{name}: image not readable ({exc})")
        return
    out.views.append(stored_view(raw, labelled, max_side=max_side))


def coco_views(json_path: Path, images: Path | None = None, *, max_side: int = 1100) -> UserData:
    """Training views from a COCO-keypoints JSON (``pipelines.xray.annotations`` layout: 30 names, or a subset such
    as the 24 corners); images are DICOM or PNG, found at ``file_name`` (relative to the JSON) or by name in
    ``images``."""
    from models.xray_keypoints.data import _sample_from_file
    from pipelines.xray.annotations import read_coco

    out = UserData()
    for a in read_coco(Path(json_path)):
        path = Path(a.image_path)
        if images is not None and not path.is_file():
            path = Path(images) / path.name
        lab = np.asarray(a.labelled, bool) & np.isfinite(a.keypoints).all(axis=1)
        kp = np.nan_to_num(np.asarray(a.keypoints, float))
        if a.pixel_spacing_mm is None and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            out.spacing_missing += 1
        _add(out, path.name, lambda p=path, k=kp, v=lab, a=a: _sample_from_file(p, k, v, a.pixel_spacing_mm, a.view),
             lab, max_side)
    return out


def labelme_views(folder: Path, label_map: Path | dict[str, str] | None = None, *, max_side: int = 1100) -> UserData:
    """Training views from a folder of labelme JSON files (labels as ``labelme.default_label`` understands them,
    or a map ``{label: keypoint name}``); no pixel spacing in labelme: 0.1 mm assumed unless the image is DICOM."""
    from models.xray_keypoints.data import _sample_from_file
    from models.xray_keypoints.labelme import read_labelme_folder

    lm = json.loads(Path(label_map).read_text()) if isinstance(label_map, (str, Path)) else label_map
    out = UserData()
    for r in read_labelme_folder(Path(folder), lm):
        if Path(r.image_path).suffix.lower() != ".dcm":
            out.spacing_missing += 1
        _add(out, Path(r.image_path).name,
             lambda r=r: _sample_from_file(r.image_path, r.keypoints, r.visible, None, None), r.visible, max_side)
    return out


def user_views(args) -> list:  # noqa: ANN001 - cascade_train data arguments -> StoredView list
    """The site's annotated images (``--coco`` / ``--labelme``), each ``--repeat-user`` times (weighting)."""
    src = str(args.coco if args.coco is not None else args.labelme)
    try:
        if args.coco is not None:
            got = coco_views(args.coco, args.images, max_side=args.max_side)
        else:
            got = labelme_views(args.labelme, args.label_map, max_side=args.max_side)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # JSONDecodeError is a ValueError
        raise SystemExit(f"error: {src}: not readable as {'COCO keypoints' if args.coco else 'labelme'}: {exc}") from exc
    print(f"{len(got.views)} annotated views from {src}; {len(got.dropped)} dropped"
          + "".join(f"\n  dropped {d}" for d in got.dropped[:20]) + ("\n  ..." if len(got.dropped) > 20 else ""))
    if got.spacing_missing:
        print(f"{got.spacing_missing} image(s) without pixel spacing: 0.1 mm per pixel assumed (errors in mm nominal)")
    masked = sum(int((~v.labelled).sum()) for v in got.views)
    if masked:
        print(f"{masked} keypoints not labelled: left out of the loss (masked)")
    return got.views * max(1, args.repeat_user)


__all__ = ["MIN_LEVELS", "UserData", "coco_views", "frame_points", "labelme_views", "level_labelled",
           "stage1_labelled", "stored_view", "user_views"]
