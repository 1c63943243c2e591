"""Annotated lateral cervical radiographs: the in-memory record and its COCO-keypoints JSON form.

The same format serves the phantom's ground truth and real annotated data, so that training and evaluation
code read one thing. JSON layout (standard COCO keypoints plus a few extra fields):

* ``categories``: one category ``cervical_spine`` whose ``keypoints`` are the 30 names of
  :data:`pipelines.results.KEYPOINT_NAMES` (24 corners C2-C7 in paper 002 order, 6 spinolaminar points).
* ``images[i]``: ``id``, ``file_name`` (relative to the JSON file), ``width``, ``height`` plus
  ``pixel_spacing_mm`` ``[row, col]`` at the patient plane (or null), ``spacing_source``, ``view``
  (``neutral``/``flexion``/``extension`` or null), ``study_uid``, ``image_uid`` and ``measurements`` (true
  values: ``key``, ``site``, ``value``, ``unit``, ``view``) when known.
* ``annotations[i]``: ``image_id``, ``category_id`` 1, ``keypoints`` ``[x1, y1, v1, ...]`` with COCO
  visibility ``v`` = 0 not labelled, 1 labelled but not visible (e.g. hidden by the shoulders), 2 visible;
  ``num_keypoints`` (v > 0), ``bbox`` and ``area``.

Coordinates are the project's convention (``pipelines.results``): x right, y down, in pixels of the
original image with ``(0, 0)`` the *centre* of the top-left pixel (``info.coordinate_convention`` says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.results import KEYPOINT_NAMES, Measurement, View

__all__ = ["AnnotatedImage", "read_coco", "write_coco_json", "COORDINATE_CONVENTION"]

COORDINATE_CONVENTION = "pixel-centre: (0,0) is the centre of the top-left pixel; x right, y down"
_N = len(KEYPOINT_NAMES)


@dataclass
class AnnotatedImage:
    """One radiograph with its 30 keypoints (and true measurements when known)."""

    image_path: Path
    keypoints: np.ndarray
    """(30, 2) float x, y px; NaN where not labelled."""
    visible: np.ndarray
    """(30,) bool: labelled and visible."""
    pixel_spacing_mm: tuple[float, float] | None = None
    """(row, col) mm/px at the patient plane."""
    view: View | None = None
    measurements: list[Measurement] | None = None
    width: int = 0
    height: int = 0
    study_uid: str = ""
    image_uid: str = ""
    spacing_source: str = ""
    labelled: np.ndarray | None = None
    """(30,) bool: a location is given (visible or not); defaults to ``isfinite(keypoints)``."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.visible = np.asarray(self.visible, dtype=bool)
        if self.keypoints.shape != (_N, 2) or self.visible.shape != (_N,):
            raise ValueError(f"keypoints must be (30, 2) and visible (30,), got {self.keypoints.shape}, "
                             f"{self.visible.shape}")
        if self.labelled is None:
            self.labelled = np.all(np.isfinite(self.keypoints), axis=1)
        self.visible = self.visible & self.labelled


def _measurement_to_json(m: Measurement) -> dict[str, Any]:
    return {"key": m.key, "name": m.name, "site": m.site, "value": m.value, "unit": m.unit,
            "view": m.view.value if m.view else None}


def _measurement_from_json(d: dict[str, Any]) -> Measurement:
    return Measurement(key=str(d["key"]), name=str(d.get("name", d["key"])),
                       value=None if d.get("value") is None else float(d["value"]), unit=str(d.get("unit", "")),
                       site=str(d["site"]), view=View(d["view"]) if d.get("view") else None,
                       reason="from annotation file")


def write_coco_json(images: list[AnnotatedImage], json_path: Path, *,
                    extra_info: dict[str, Any] | None = None) -> Path:
    """Write ``images`` as COCO-keypoints JSON; ``file_name`` is stored relative to the JSON's folder."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    root = json_path.parent.resolve()
    out_images, out_anns = [], []
    for i, im in enumerate(images, start=1):
        path = im.image_path.resolve()
        try:
            fname = str(path.relative_to(root))
        except ValueError:
            fname = str(path)
        rec: dict[str, Any] = {"id": i, "file_name": fname, "width": int(im.width), "height": int(im.height),
                               "pixel_spacing_mm": list(im.pixel_spacing_mm) if im.pixel_spacing_mm else None,
                               "spacing_source": im.spacing_source, "view": im.view.value if im.view else None,
                               "study_uid": im.study_uid, "image_uid": im.image_uid}
        if im.measurements is not None:
            rec["measurements"] = [_measurement_to_json(m) for m in im.measurements]
        rec.update(im.extra)
        out_images.append(rec)
        kps: list[float] = []
        labelled = im.labelled if im.labelled is not None else np.ones(_N, bool)
        for (x, y), lab, vis in zip(im.keypoints, labelled, im.visible, strict=True):
            if not lab or not (np.isfinite(x) and np.isfinite(y)):
                kps += [0.0, 0.0, 0]
            else:
                kps += [round(float(x), 3), round(float(y), 3), 2 if vis else 1]
        pts = im.keypoints[labelled & np.all(np.isfinite(im.keypoints), axis=1)]
        if len(pts):
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        else:
            bbox = [0.0, 0.0, 0.0, 0.0]
        out_anns.append({"id": i, "image_id": i, "category_id": 1, "keypoints": kps,
                         "num_keypoints": int(np.count_nonzero(labelled)), "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": 0})
    skeleton = []
    for v in range(6):  # corners of each body: AS-AI, AI-PI, PI-PS, PS-AS (1-based indices, COCO style)
        a = 4 * v + 1
        skeleton += [[a, a + 1], [a + 1, a + 3], [a + 3, a + 2], [a + 2, a]]
    doc = {
        "info": {"description": "cspine-node lateral cervical keypoints", "version": "1",
                 "coordinate_convention": COORDINATE_CONVENTION, **(extra_info or {})},
        "licenses": [],
        "categories": [{"id": 1, "name": "cervical_spine", "supercategory": "spine",
                        "keypoints": list(KEYPOINT_NAMES), "skeleton": skeleton}],
        "images": out_images,
        "annotations": out_anns,
    }
    json_path.write_text(json.dumps(doc, indent=1))
    return json_path


def read_coco(json_path: Path) -> list[AnnotatedImage]:
    """Read a COCO-keypoints JSON written by :func:`write_coco_json` (or a compatible one).

    The category's keypoint names must be :data:`KEYPOINT_NAMES` or a subset of them, e.g. the 24 corners of a
    corrections folder (order may differ: it is remapped; names not given are not labelled).
    Images without an annotation are returned with all keypoints NaN.
    """
    json_path = Path(json_path)
    doc = json.loads(json_path.read_text())
    cats = {c["id"]: c for c in doc.get("categories", [])}
    anns: dict[int, dict[str, Any]] = {}
    for a in doc.get("annotations", []):
        if a["image_id"] in anns:
            raise ValueError(f"{json_path}: more than one annotation for image {a['image_id']}")
        anns[a["image_id"]] = a
    out: list[AnnotatedImage] = []
    known = {"id", "file_name", "width", "height", "pixel_spacing_mm", "spacing_source", "view", "study_uid",
             "image_uid", "measurements"}
    for im in doc.get("images", []):
        kp = np.full((_N, 2), np.nan)
        vis = np.zeros(_N, bool)
        lab = np.zeros(_N, bool)
        a = anns.get(im["id"])
        if a is not None:
            names = cats.get(a.get("category_id", 1), {}).get("keypoints", list(KEYPOINT_NAMES))
            unknown = set(names) - set(KEYPOINT_NAMES)
            if unknown or not names or len(set(names)) != len(names):
                raise ValueError(f"{json_path}: category keypoints are not (a subset of) the 30 cervical keypoints"
                                 + (f" (unknown: {sorted(unknown)[:3]})" if unknown else ""))
            flat = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
            if len(flat) != len(names):
                raise ValueError(f"{json_path}: image {im['id']} has {len(flat)} keypoints, expected {len(names)}")
            for name, (x, y, v) in zip(names, flat, strict=True):
                j = KEYPOINT_NAMES.index(name)
                if v > 0:
                    kp[j] = (x, y)
                    lab[j] = True
                    vis[j] = v >= 2
        fname = Path(im["file_name"])
        path = fname if fname.is_absolute() else json_path.parent / fname
        sp = im.get("pixel_spacing_mm")
        meas = im.get("measurements")
        out.append(AnnotatedImage(
            image_path=path, keypoints=kp, visible=vis, labelled=lab,
            pixel_spacing_mm=(float(sp[0]), float(sp[1])) if sp else None,
            view=View(im["view"]) if im.get("view") else None,
            measurements=[_measurement_from_json(m) for m in meas] if meas is not None else None,
            width=int(im.get("width", 0)), height=int(im.get("height", 0)), study_uid=im.get("study_uid", ""),
            image_uid=im.get("image_uid", ""), spacing_source=im.get("spacing_source", ""),
            extra={k: v for k, v in im.items() if k not in known}))
    return out
