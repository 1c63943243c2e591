"""Training arrays of the cord-compression CNN from a site's annotated radiographs.

Reads the folder of :mod:`models.common.user_labels` (COCO keypoints or labelme, the cascade's layout) with the
per-segment labels (0 or 1 for each of the five segments of :data:`pipelines.vocabulary.SEGMENTS`, e.g. from the
patient's MRI)::

    "labels": {"cord_compression": {"C2-C3": 0, "C3-C4": 0, "C4-C5": 1, "C5-C6": 1, "C6-C7": 0}}

and writes the arrays :mod:`models.cord_compression.data` writes for phantoms: ``crops`` (N, 1 + jittered, 5, H, W)
uint8 (one clean crop per segment from the annotated keypoints plus ``jittered`` ones, the same jitter),
``labels`` (N, 5) bool, ``seeds`` -1. The crops are placed by all 30 keypoints: an image without its 24 corners
and 6 spinolaminar points is left out (filling the spinolaminar points from the corners, as the cascade does,
moved the crop centre by a median 0.11 and up to 0.33 body depths on phantoms: three times the training jitter)::

    cspine-node train cord-compression data --coco site/annotations.json --out /tmp/cc_user.npz
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.common.user_labels import UserLabelError, binary, read_folder, select, source_of
from models.cord_compression.data import JITTER
from models.cord_compression.roi import segment_crops
from pipelines.vocabulary import KEYPOINT_NAMES, SEGMENTS

LABEL_KEY = "cord_compression"
NEEDED_POINTS: tuple[int, ...] = tuple(range(len(KEYPOINT_NAMES)))


def segment_labels(value: object, where: str) -> np.ndarray:
    """``{"C2-C3": 0|1, ...}`` (all five segments) -> (5,) bool."""
    if not isinstance(value, dict):
        raise UserLabelError(f"{where}: '{LABEL_KEY}' must be an object {{segment: 0 or 1}}, got {value!r}")
    missing = [s for s in SEGMENTS if s not in value]
    unknown = sorted(set(value) - set(SEGMENTS))
    if missing or unknown:
        raise UserLabelError(f"{where}: '{LABEL_KEY}' needs the segments {', '.join(SEGMENTS)}"
                             + (f"; missing: {', '.join(missing)}" if missing else "")
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return np.array([binary(value[s], f"{where}: {s}") for s in SEGMENTS], dtype=bool)


def prepare_user(out: Path, *, coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                 label_map: Path | None = None,
                 jittered: int = 2, max_side: int = 1100) -> dict:
    """Write the ``.npz``; returns the images, segments, positives and what was left out."""
    source = source_of(coco, labelme)
    sel = select(read_folder(coco, labelme, images, label_map), LABEL_KEY, source, NEEDED_POINTS)
    crops, labels = [], []
    for im in sel.images:
        lab = segment_labels(im.labels[LABEL_KEY], f"{source}: image {im.name}")
        img, kp, _ = im.load(max_side)
        rng = np.random.default_rng([zlib.crc32(im.name.encode()), 4041])
        per = [segment_crops(img, kp)[0]]
        per += [segment_crops(img, kp, rng=rng, jitter=JITTER)[0] for _ in range(jittered)]
        crops.append(to_u8(np.stack(per)))
        labels.append(lab)
    out.parent.mkdir(parents=True, exist_ok=True)
    lab = np.stack(labels)
    np.savez_compressed(out, crops=np.stack(crops), labels=lab, seeds=np.full(len(lab), -1))
    print(sel.report(source))
    return {"images": len(lab), "segments": int(lab.size), "positive": int(lab.sum()), "left_out": len(sel.dropped),
            "out": str(out)}


__all__ = ["LABEL_KEY", "NEEDED_POINTS", "prepare_user", "segment_labels"]
