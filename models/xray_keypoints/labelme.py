"""Import labelme-style keypoint JSON (as used by e.g. the public CSXA data set) into training samples.

A labelme file holds ``imagePath``, ``imageHeight``, ``imageWidth`` and ``shapes``: each shape has a ``label``
and ``points`` (``[[x, y], ...]`` in pixels, x right, y down). A label is matched to ``KEYPOINT_NAMES`` by a
label map (``{"label": "C3 antero-superior", ...}``); without one, labels that already are keypoint names,
or look like ``C3_1`` .. ``C3_4`` / ``C3-1`` (corner number in paper-002 order: antero-superior,
antero-inferior, postero-superior, postero-inferior) or ``C3_sl`` (spinolaminar), are understood.
Missing keypoints are marked not visible.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.results import CORNER_ROLES, KEYPOINT_NAMES

_CORNER_RE = re.compile(r"^\s*(C[2-7])\s*[-_ ]\s*([1-4])\s*$", re.I)
_SL_RE = re.compile(r"^\s*(C[2-7])\s*[-_ ]\s*(sl|spinolaminar)\s*$", re.I)


@dataclass
class LabelmeRecord:
    """One annotated image: keypoints ``(30, 2)`` (x, y) px with ``visible`` ``(30,)``."""

    image_path: Path
    rows: int
    cols: int
    keypoints: np.ndarray
    visible: np.ndarray


def default_label(label: str) -> str | None:
    """The ``KEYPOINT_NAMES`` entry a labelme label stands for, or None."""
    if label in KEYPOINT_NAMES:
        return label
    m = _CORNER_RE.match(label)
    if m:
        return f"{m.group(1).upper()} {CORNER_ROLES[int(m.group(2)) - 1]}"
    m = _SL_RE.match(label)
    if m:
        return f"{m.group(1).upper()} spinolaminar"
    return None


def read_labelme(path: Path, label_map: dict[str, str] | None = None) -> LabelmeRecord:
    """Read one labelme JSON; raise ``ValueError`` with the file name when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        shapes = doc["shapes"]
        image_path = path.parent / doc["imagePath"]
        rows, cols = int(doc["imageHeight"]), int(doc["imageWidth"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a labelme keypoint file ({exc})") from exc
    kp = np.zeros((len(KEYPOINT_NAMES), 2))
    vis = np.zeros(len(KEYPOINT_NAMES), dtype=bool)
    index = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
    for shape in shapes:
        label = str(shape.get("label", ""))
        name = label_map.get(label) if label_map else default_label(label)
        pts = shape.get("points") or []
        if name is None or name not in index or not pts:
            continue
        kp[index[name]] = np.asarray(pts[0], dtype=float)[:2]
        vis[index[name]] = True
    return LabelmeRecord(image_path, rows, cols, kp, vis)


def read_labelme_folder(folder: Path, label_map: dict[str, str] | None = None) -> list[LabelmeRecord]:
    """All ``*.json`` labelme files of a folder (sorted) that name at least one keypoint."""
    records = [read_labelme(p, label_map) for p in sorted(Path(folder).glob("*.json"))]
    return [r for r in records if r.visible.any()]
