"""The corrections folder's COCO-keypoints document (``annotations.json``), built in memory (no files here).

Layout (``docs/corrections.md``; read by ``pipelines.xray.annotations.read_coco`` and the trainer's
``--from-corrections``): one category ``cervical_spine`` whose ``keypoints`` are the 24 corners (``CORNER_NAMES``,
``KEYPOINT_NAMES`` order); one image entry per corrected radiograph (``file_name`` ``images/<image uid>.png``,
``width``, ``height``, ``pixel_spacing_mm`` [row, col], ``spacing_source``, ``view``, ``study_uid``, ``image_uid``,
``patient_key``: the node's salted key, never a name or ID); one annotation per image with COCO ``keypoints``
``[x, y, v] * 24`` (pixel-centre coordinates; v = 2 for a corner the radiologist moved or let stand, 0 for one the
node did not find and nobody placed) and the provenance fields ``source_sr_uid`` (the latest SR that corrected the
image), ``corrected_model_version`` (``name version`` of the algorithm whose keypoints were corrected),
``corrected_at`` (ISO 8601 UTC, when the node received that SR), ``source_sr_uids`` (every SR applied, in order),
``corrected_keypoints`` (names moved so far), ``moved_mm`` (name -> distance from the node's point, latest SR) and
``corrected_measurements`` ([key, site] of the node's measurements a moved corner feeds).

A second SR on the same image applies on top of the first (the corners it does not move keep their corrected
places); the same SR twice changes nothing (``apply_correction`` returns False).
"""

from __future__ import annotations

import copy
from typing import Any

from pipelines.corrections.match import CORNER_NAMES, ImageCorrection
from pipelines.results import ImageResult

__all__ = ["FORMAT_VERSION", "apply_correction", "empty_document", "image_keypoints"]

FORMAT_VERSION = "1"
COORDINATE_CONVENTION = "pixel-centre: (0,0) is the centre of the top-left pixel; x right, y down"


def empty_document() -> dict[str, Any]:
    skeleton = []
    for v in range(6):  # AS-AI, AI-PI, PI-PS, PS-AS of each body (1-based, COCO style)
        a = 4 * v + 1
        skeleton += [[a, a + 1], [a + 1, a + 3], [a + 3, a + 2], [a + 2, a]]
    return {
        "info": {"description": "cspine-node radiologist corrections (keypoints as corrected in a viewer)",
                 "version": FORMAT_VERSION, "coordinate_convention": COORDINATE_CONVENTION},
        "licenses": [],
        "categories": [{"id": 1, "name": "cervical_spine", "supercategory": "spine", "keypoints": list(CORNER_NAMES),
                        "skeleton": skeleton}],
        "images": [],
        "annotations": [],
    }


def image_keypoints(image: ImageResult, previous: list[float] | None = None) -> list[float]:
    """COCO ``[x, y, v] * 24`` of the node's corners on ``image`` (or of an earlier correction's ``previous``)."""
    if previous is not None:
        return list(previous)
    kp = {k.name: k for k in image.keypoints}
    flat: list[float] = []
    for name in CORNER_NAMES:
        k = kp.get(name)
        flat += [round(k.x, 3), round(k.y, 3), 2] if k is not None else [0.0, 0.0, 0]
    return flat


def _bbox(flat: list[float]) -> list[float]:
    pts = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 3) if flat[i + 2] > 0]
    if not pts:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [round(min(xs), 3), round(min(ys), 3), round(max(xs) - min(xs), 3), round(max(ys) - min(ys), 3)]


def apply_correction(doc: dict[str, Any], image: ImageResult, correction: ImageCorrection, *, file_name: str,
                     study_uid: str, sr_uid: str, model_version: str, received_at: str, patient_key: str = "") -> bool:
    """Add or update ``image``'s example in ``doc`` (in place) with ``correction``; False when ``sr_uid`` was
    already applied to this image (nothing changes)."""
    entry = next((i for i in doc["images"] if i.get("image_uid") == image.image_uid), None)
    ann = None
    if entry is not None:
        ann = next((a for a in doc["annotations"] if a["image_id"] == entry["id"]), None)
        if ann is not None and sr_uid in ann.get("source_sr_uids", []):
            return False
    if entry is None:
        entry = {"id": max((i["id"] for i in doc["images"]), default=0) + 1}
        doc["images"].append(entry)
    sp = image.pixel_spacing_mm
    entry.update({"file_name": file_name, "width": int(image.columns), "height": int(image.rows),
                  "pixel_spacing_mm": [float(sp[0]), float(sp[1])] if sp else None,
                  "spacing_source": "the node's analysis" if sp else "",
                  "view": image.view.value if image.view else None, "study_uid": study_uid,
                  "image_uid": image.image_uid, "patient_key": patient_key})
    flat = image_keypoints(image, ann["keypoints"] if ann is not None else None)
    for name, (x, y) in correction.moved.items():
        j = CORNER_NAMES.index(name)
        flat[3 * j:3 * j + 3] = [round(x, 3), round(y, 3), 2]
    if ann is None:
        ann = {"id": max((a["id"] for a in doc["annotations"]), default=0) + 1, "image_id": entry["id"],
               "category_id": 1, "iscrowd": 0, "source_sr_uids": [], "corrected_keypoints": []}
        doc["annotations"].append(ann)
    bbox = _bbox(flat)
    ann.update({"keypoints": flat, "num_keypoints": sum(1 for i in range(2, len(flat), 3) if flat[i] > 0),
                "bbox": bbox, "area": round(bbox[2] * bbox[3], 3), "source_sr_uid": sr_uid,
                "corrected_model_version": model_version, "corrected_at": received_at,
                "source_sr_uids": [*ann.get("source_sr_uids", []), sr_uid],
                "corrected_keypoints": [n for n in CORNER_NAMES
                                        if n in correction.moved or n in ann.get("corrected_keypoints", [])],
                "moved_mm": dict(correction.moved_mm),
                "corrected_measurements": [list(m) for m in correction.measurements]})
    return True


def copy_document(doc: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(doc)
