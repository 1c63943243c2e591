"""A tiny site folder written by tests: phantom radiographs as 8-bit PNG plus one COCO-keypoints JSON whose images
carry per-image ``labels`` (the layout of ``models.common.user_labels``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.xray.annotations import AnnotatedImage, write_coco_json


def write_folder(folder: Path, items: list[dict[str, Any]]) -> Path:
    """``items``: dicts with ``image`` ([0, 1] bone bright), ``keypoints`` (30, 2), ``spacing``, ``view``, and
    optional ``study_uid``, ``labels``, ``labelled`` (30,) bool. Returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, it in enumerate(items):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(np.round(np.clip(it["image"], 0, 1) * 255).astype(np.uint8)).save(path)
        kp = np.asarray(it["keypoints"], float).copy()
        lab = np.asarray(it.get("labelled", np.ones(30, bool)), bool)
        kp[~lab] = np.nan
        extra = {"labels": it["labels"]} if "labels" in it else {}
        records.append(AnnotatedImage(path, kp, lab.copy(), pixel_spacing_mm=tuple(it["spacing"]), view=it["view"],
                                      width=it["image"].shape[1], height=it["image"].shape[0],
                                      study_uid=it.get("study_uid", ""), labelled=lab, extra=extra))
    return write_coco_json(records, folder / "annotations.json")
