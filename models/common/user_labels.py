"""A site's own annotated radiographs with per-image labels, for training the X-ray seed classifiers.

The folder is the one the X-ray keypoint cascade reads (``cspine-node train xray --data``): a COCO-keypoints JSON
(:mod:`pipelines.xray.annotations`: 30 keypoint names, or a subset such as the 24 corners; images DICOM or PNG)
or a folder of labelme JSON files. A model's labels are an extra field of each image: in the COCO JSON's
``images[i]`` (``read_coco`` keeps unknown fields), in a labelme file at its top level::

    "labels": {"curvature_class": "reversed"}                                  # models.curvature
    "labels": {"upper_cervical": {"os_odontoideum": 1, "odontoid_fracture": 0, ...}}   # all six keys
    "labels": {"cord_compression": {"C2-C3": 0, "C3-C4": 0, "C4-C5": 1, "C5-C6": 1, "C6-C7": 0}}

plus, for the three-view upper cervical model, ``study_uid`` (which images form one study) and ``view``
(``extension`` / ``neutral`` / ``flexion``): standard fields of the COCO layout, top-level keys of a labelme file.
Finding keys are those of :mod:`pipelines.vocabulary`. Images without the model's labels are left out (a folder
may carry labels of several models); a folder where no image has them is refused with :class:`UserLabelError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipelines.vocabulary import KEYPOINT_NAMES, View

T = TypeVar("T")
SHIPPED = "shipped"
"""``--init shipped``: fine-tune from the model's shipped weights."""


class UserLabelError(ValueError):
    """A user folder that cannot give the training arrays of a model (the message says why and where)."""


@dataclass
class LabelledImage:
    """One annotated radiograph with its labels."""

    name: str
    image_path: Path
    keypoints: np.ndarray
    """(30, 2) x, y px of the image; NaN where not labelled."""
    labelled: np.ndarray
    """(30,) bool."""
    spacing_mm: tuple[float, float] | None
    view: View | None
    study: str
    labels: dict[str, Any] = field(default_factory=dict)

    def load(self, max_side: int = 1100) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """``(image [0, 1] bone bright float32, keypoints (30, 2), spacing)``, block-averaged to ``max_side``."""
        from models.xray_keypoints.data import RawSample, _sample_from_file, shrink

        kp = np.nan_to_num(self.keypoints)
        raw = _sample_from_file(self.image_path, kp, self.labelled, self.spacing_mm, None)
        r = shrink(RawSample(np.asarray(raw.image, np.float32), kp, self.labelled, raw.spacing_mm), max_side)
        return np.asarray(r.image, np.float32), np.where(self.labelled[:, None], r.keypoints, np.nan), r.spacing_mm


@dataclass
class Selected:
    """The images that carry a model's labels, and what was left out."""

    images: list[LabelledImage]
    dropped: list[str] = field(default_factory=list)

    def report(self, source: str) -> str:
        lines = [f"{len(self.images)} labelled images from {source}; {len(self.dropped)} left out"]
        lines += [f"  left out {d}" for d in self.dropped[:20]] + (["  ..."] if len(self.dropped) > 20 else [])
        return "\n".join(lines)


def read_folder(coco: Path | None = None, labelme: Path | None = None, images: Path | None = None,
                label_map: Path | dict[str, str] | None = None) -> list[LabelledImage]:
    """Every annotated image of a COCO JSON (``images``: where to find files not at their ``file_name``) or a
    labelme folder (``label_map``: a JSON file or dict ``{label: keypoint name}``, as ``train xray --label-map``),
    with its labels; :class:`UserLabelError` when the file is not readable as such."""
    if (coco is None) == (labelme is None):
        raise UserLabelError("give one of a COCO-keypoints JSON (--coco) or a labelme folder (--labelme)")
    src = Path(coco if coco is not None else labelme)
    try:
        if isinstance(label_map, (str, Path)):
            label_map = json.loads(Path(label_map).read_text())
        return _read_coco(src, images) if coco is not None else _read_labelme(src, label_map)
    except (KeyError, TypeError, ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
        if isinstance(exc, UserLabelError):
            raise
        raise UserLabelError(f"{src}: not readable as {'COCO keypoints' if coco else 'labelme'}: {exc}") from exc


def _read_coco(path: Path, images: Path | None) -> list[LabelledImage]:
    from pipelines.xray.annotations import read_coco

    out = []
    for a in read_coco(path):
        p = Path(a.image_path)
        if images is not None and not p.is_file():
            p = Path(images) / p.name
        lab = np.asarray(a.labelled, bool) & np.isfinite(a.keypoints).all(axis=1)
        labels = a.extra.get("labels") or {}
        if not isinstance(labels, dict):
            raise UserLabelError(f"{path}: image {p.name}: 'labels' must be an object, got {type(labels).__name__}")
        out.append(LabelledImage(p.name, p, np.where(lab[:, None], a.keypoints, np.nan), lab, a.pixel_spacing_mm,
                                 a.view, a.study_uid or "", labels))
    return out


def _read_labelme(folder: Path, label_map: dict[str, str] | None) -> list[LabelledImage]:
    from models.xray_keypoints.labelme import read_labelme

    if not Path(folder).is_dir():
        raise UserLabelError(f"{folder}: not a folder of labelme JSON files")
    out = []
    for jp in sorted(Path(folder).glob("*.json")):
        rec = read_labelme(jp, label_map)
        doc = json.loads(jp.read_text())
        labels = doc.get("labels") or {}
        if not isinstance(labels, dict):
            raise UserLabelError(f"{jp}: 'labels' must be an object, got {type(labels).__name__}")
        sp = doc.get("pixel_spacing_mm")
        view = View(doc["view"]) if doc.get("view") else None
        out.append(LabelledImage(Path(rec.image_path).name, Path(rec.image_path),
                                 np.where(rec.visible[:, None], rec.keypoints, np.nan), rec.visible.copy(),
                                 (float(sp[0]), float(sp[1])) if sp else None, view, str(doc.get("study_uid", "")),
                                 labels))
    return out


def select(images: list[LabelledImage], key: str, source: str, needed_points: tuple[int, ...]) -> Selected:
    """The images whose ``labels`` hold ``key`` and whose keypoints ``needed_points`` (indices into
    ``KEYPOINT_NAMES``) are labelled; the others are listed in ``dropped``. :class:`UserLabelError` when no image
    holds ``key`` (the folder lacks this model's labels) or none is usable."""
    have = [im for im in images if key in im.labels]
    if not have:
        raise UserLabelError(
            f"{source}: none of its {len(images)} images has labels for this model: add "
            f"\"labels\": {{\"{key}\": ...}} to each image (see docs/training_user_data.md)")
    out = Selected([], [f"{im.name}: no '{key}' label" for im in images if key not in im.labels])
    for im in have:
        missing = [KEYPOINT_NAMES[i] for i in needed_points if not im.labelled[i]]
        if missing:
            out.dropped.append(f"{im.name}: keypoints not labelled: {', '.join(missing[:4])}"
                               + (" ..." if len(missing) > 4 else ""))
        else:
            out.images.append(im)
    if not out.images:
        raise UserLabelError(f"{source}: no image with '{key}' labels is usable:\n" + "\n".join(out.dropped[:10]))
    return out


def binary(value: Any, where: str) -> int:  # noqa: ANN401 - a JSON value
    """A 0/1 label (``0``, ``1``, ``true``, ``false``) as an int; :class:`UserLabelError` otherwise."""
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise UserLabelError(f"{where}: expected 0 or 1, got {value!r}")


def source_of(coco: Path | None, labelme: Path | None) -> str:
    return str(coco if coco is not None else labelme)


def init_weights(value: str | Path | None, shipped: Path) -> Path | None:
    """``--init``: None (train from scratch), ``"shipped"`` (the shipped weights) or a weights file."""
    if value is None:
        return None
    path = shipped if str(value) == SHIPPED else Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"--init: weights not found: {path}")
    return path


def add_folder_args(ap) -> None:  # noqa: ANN001 - argparse.ArgumentParser
    """The ``--coco`` / ``--images`` / ``--labelme`` options of a model's data CLI."""
    ap.add_argument("--coco", type=Path, default=None,
                    help="your COCO-keypoints JSON with per-image \"labels\" (instead of phantoms)")
    ap.add_argument("--images", type=Path, default=None, help="folder of the COCO JSON's images (by file name)")
    ap.add_argument("--labelme", type=Path, default=None,
                    help="your folder of labelme JSON files with a top-level \"labels\" (instead of phantoms)")
    ap.add_argument("--label-map", type=Path, default=None,
                    help="labelme: JSON {label: keypoint name} for labels other than C3_1 / C3_sl / keypoint names")


def from_folder(args, read: Callable[..., T], *read_args: Any, **read_kwargs: Any) -> T | None:  # noqa: ANN001
    """The site-folder branch of a model's data / evaluate / thresholds CLI (options of :func:`add_folder_args`):
    None when neither ``--coco`` nor ``--labelme`` is given (the CLI then uses phantoms or ``--data``), else
    ``read(*read_args, coco=..., labelme=..., images=..., label_map=..., **read_kwargs)`` (a model's
    ``user_data.prepare_user`` or ``full_arrays``); a :class:`UserLabelError` ends the CLI with ``error: <why>``."""
    if args.coco is None and args.labelme is None:
        return None
    try:
        return read(*read_args, coco=args.coco, labelme=args.labelme, images=args.images, label_map=args.label_map,
                    **read_kwargs)
    except UserLabelError as exc:
        raise SystemExit(f"error: {exc}") from exc


__all__ = ["SHIPPED", "LabelledImage", "Selected", "UserLabelError", "add_folder_args", "binary", "from_folder",
           "init_weights", "read_folder", "select", "source_of"]
