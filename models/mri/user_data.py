"""Training examples for the MRI networks from a user's annotated sagittal series (fine-tuning on site data).

Folder layout (``FOLDER``)::

    FOLDER/labels.json                 COCO-keypoints style labels (below)
    FOLDER/<series>/*.dcm              one sub-folder per sagittal series (single-frame MR images, any file names)

``labels.json``:

* ``categories``: one category (any ``id``, e.g. name ``cervical_discs``) whose ``keypoints`` are the five disc
  levels of :data:`pipelines.vocabulary.LEVELS` (``"C2-C3"`` .. ``"C6-C7"``; any order, every one present);
* ``images``: one entry per annotated series: ``id`` and ``file_name``, the DICOM file (relative to
  ``labels.json``) of the slice the disc centres were placed on (normally the mid-sagittal slice); the other
  files of its folder with the same SeriesInstanceUID are the rest of the series;
* ``annotations``: one per image: ``image_id``, ``category_id``, ``keypoints`` ``[x1, y1, v1, ...]`` (one
  triple per name of the category, every ``v`` > 0: each disc centre must be placed), and ``grades``: for
  every level a mapping of every task of :data:`pipelines.vocabulary.TASKS` to 0 or 1 (the positive class as in
  ``TRUTH_RULES``: herniation = protrusion/extrusion; canal stenosis = Kang >= 2; foraminal stenosis = AP
  narrowing >= 50 %), e.g. ``{"C2-C3": {"disc_degeneration": 0, "canal_stenosis": 0,
  "foraminal_stenosis_left": 1, "foraminal_stenosis_right": 0}, ...}``.

Coordinates: pixels of the stored image, x right (column), y down (row), ``(0, 0)`` the centre of the top-left
pixel (the X-ray annotations' convention). The points are mapped to patient coordinates and projected on the
slice the pipeline analyses (``load_series``: canonical orientation, the mid slice), so a series stored flipped
or a point placed on a neighbouring slice gives the same training target as inference sees.

Each series gives what ``data.make_mixed_dataset`` gives per series: ``views`` localiser windows (the first the
inference window, the others random), mid/foraminal crops at the annotated centres jittered by 0.8 and 2 mm,
the (5, 4) labels; no mask targets (``loc_has_mask`` False). :func:`merge` concatenates with phantom data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.mri.data import _crops, _view
from pipelines.vocabulary import LEVELS, TASKS

LABELS_FILE = "labels.json"


class UserLabelError(ValueError):
    """The labels file or a series it names cannot be used (the message names the file and the entry)."""


def _grades(where: str, grades: object) -> np.ndarray:
    if not isinstance(grades, dict):
        raise UserLabelError(f"{where}: 'grades' must map each level {list(LEVELS)} to its task grades")
    out = np.zeros((len(LEVELS), len(TASKS)), np.uint8)
    for i, lv in enumerate(LEVELS):
        g = grades.get(lv)
        if not isinstance(g, dict):
            raise UserLabelError(f"{where}: no grades for level {lv}")
        for j, task in enumerate(TASKS):
            v = g.get(task)
            if isinstance(v, bool):
                v = int(v)
            if v not in (0, 1):
                raise UserLabelError(f"{where}: level {lv} task {task}: grade must be 0 or 1, got {v!r}")
            out[i, j] = v
    unknown = set(grades) - set(LEVELS)
    if unknown:
        raise UserLabelError(f"{where}: unknown level(s) {sorted(unknown)[:3]} (levels are {list(LEVELS)})")
    return out


def read_labels(folder: Path) -> list[dict]:
    """``[{"file": Path, "points": (5, 2) stored pixels in LEVELS order, "labels": (5, 4) uint8, "name": str}]``;
    :class:`UserLabelError` for a missing/unreadable file or an incomplete annotation."""
    path = Path(folder) / LABELS_FILE
    if not path.is_file():
        raise UserLabelError(f"{path}: no labels file (see models/mri/user_data.py for the layout)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserLabelError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise UserLabelError(f"{path}: needs the COCO lists 'images', 'annotations' and 'categories'")
    cats = {c.get("id"): c for c in doc["categories"] if isinstance(c, dict)}
    images = {im.get("id"): im for im in doc["images"] if isinstance(im, dict)}
    out, seen = [], set()
    for n, a in enumerate(doc["annotations"]):
        where = f"{path}: annotation {n}"
        if not isinstance(a, dict) or a.get("image_id") not in images:
            raise UserLabelError(f"{where}: image_id does not name an entry of 'images'")
        if a["image_id"] in seen:
            raise UserLabelError(f"{where}: a second annotation for image {a['image_id']}")
        seen.add(a["image_id"])
        names = cats.get(a.get("category_id"), {}).get("keypoints")
        if not isinstance(names, list) or sorted(names) != sorted(LEVELS):
            raise UserLabelError(f"{where}: its category's keypoints must be the five levels {list(LEVELS)}, "
                                 f"got {names!r}")
        try:
            flat = np.asarray(a.get("keypoints"), float).reshape(-1, 3)
        except (TypeError, ValueError) as exc:
            raise UserLabelError(f"{where}: keypoints must be [x1, y1, v1, ...] numbers") from exc
        if len(flat) != len(names):
            raise UserLabelError(f"{where}: {len(flat)} keypoints, expected {len(names)}")
        missing = [nm for nm, (x, y, v) in zip(names, flat, strict=True) if v <= 0 or not np.isfinite([x, y]).all()]
        if missing:
            raise UserLabelError(f"{where}: disc centre(s) not placed: {missing}")
        pts = np.array([flat[names.index(lv), :2] for lv in LEVELS], float)
        fname = images[a["image_id"]].get("file_name")
        if not isinstance(fname, str) or not fname:
            raise UserLabelError(f"{where}: its image has no file_name")
        f = Path(fname) if Path(fname).is_absolute() else path.parent / fname
        if not f.is_file():
            raise UserLabelError(f"{where}: image file {fname} not found")
        out.append({"file": f, "points": pts, "labels": _grades(where, a.get("grades")), "name": fname})
    if not out:
        raise UserLabelError(f"{path}: no annotations")
    return out


def dicom_files(paths: list[Path]) -> list[Path]:
    """The files of ``paths`` that are DICOM images with study and instance UIDs (a DICOMDIR, a text file or a
    thumbnail beside the images is skipped)."""
    import pydicom

    out = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
        if "StudyInstanceUID" in ds and "SOPInstanceUID" in ds:
            out.append(p)
    return out


def series_example(entry: dict, views: int, rng: np.random.Generator) -> dict:
    """One annotated series -> its samples (``data.case_samples`` layout) plus ``centres``: the disc centres in
    canonical pixels of the analysed slice and ``off_slice_mm``: how far the annotated slice is from it."""
    import pydicom

    from pipelines.mri.preprocessing import load_series
    from pipelines.study import Study

    f = Path(entry["file"])
    try:
        ann = pydicom.dcmread(f, stop_before_pixels=True)
        series_uid = str(ann.SeriesInstanceUID)
        studies = Study.from_paths(dicom_files(sorted(p for p in f.parent.iterdir() if p.is_file())))
        insts = [i for s in studies for i in s.instances if i.series_uid == series_uid]
        sv = load_series(insts)
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise UserLabelError(f"{entry['name']}: series not readable ({type(exc).__name__}: {exc})") from exc
    if len(sv.sop_uids) < 3:
        raise UserLabelError(f"{entry['name']}: {len(sv.sop_uids)} slice(s) in its series folder (need at least 3)")

    def geom(ds) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:  # noqa: ANN001
        return (np.array([float(v) for v in ds.ImagePositionPatient]),
                np.array([float(v) for v in ds.ImageOrientationPatient]),
                (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])))

    ipp_a, iop_a, ps_a = geom(ann)
    pts = np.asarray(entry["points"], float)
    mm = ipp_a + pts[:, :1] * ps_a[1] * iop_a[:3] + pts[:, 1:] * ps_a[0] * iop_a[3:]
    mid, left, right = sv.mid_slice, sv.lateral_slice("left"), sv.lateral_slice("right")
    mid_ds = next(i for i in insts if i.sop_instance_uid == sv.sop_uids[mid]).read(pixels=False)
    ipp, iop, ps = geom(mid_ds)
    d3 = mm - ipp
    x, y = d3 @ iop[:3] / ps[1], d3 @ iop[3:] / ps[0]
    off = float(np.abs(d3 @ np.cross(iop[:3], iop[3:])).mean())
    centres = np.stack([sv.columns - 1 - x if sv.flip_x else x, sv.rows - 1 - y if sv.flip_y else y], 1)
    inside = (centres >= 0).all(1) & (centres[:, 0] <= sv.columns - 1) & (centres[:, 1] <= sv.rows - 1)
    if not inside.all():
        raise UserLabelError(f"{entry['name']}: disc centre(s) {[lv for lv, ok in zip(LEVELS, inside, strict=True) if not ok]} "
                             "fall outside the image")
    if not (np.diff(centres[:, 1]) > 0).all():
        raise UserLabelError(f"{entry['name']}: the disc centres are not in cranio-caudal order C2-C3 .. C6-C7 "
                             "(check the keypoint names)")
    vs = [_view(sv.volume[mid], sv.pixel_spacing_mm, None if v == 0 else rng, centres, None) for v in range(views)]
    mc, sc = _crops(sv.volume, mid, left, right, centres, sv.pixel_spacing_mm, rng, (0.8, 2.0))
    return {"loc_image": np.stack([v[0] for v in vs]).astype(np.float32), "loc_centres": np.stack([v[1] for v in vs]),
            "mid_crops": mc, "side_crops": sc, "labels": entry["labels"], "centres": centres, "off_slice_mm": off}


def user_dataset(folders: list[Path], views: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Samples of every annotated series of ``folders`` (arrays as ``data.make_mixed_dataset``)."""
    loc_i, loc_c, mids, sides, labels, offs = [], [], [], [], [], []
    for fi, folder in enumerate(folders):
        for si, entry in enumerate(read_labels(Path(folder))):
            p = series_example(entry, views, np.random.default_rng([seed, fi, si, 99]))
            loc_i.append(p["loc_image"])
            loc_c.append(p["loc_centres"])
            mids.append(p["mid_crops"])
            sides.append(p["side_crops"])
            labels.append(p["labels"])
            offs.append(p["off_slice_mm"])
    n = sum(len(x) for x in loc_i)
    return {"loc_image": np.concatenate(loc_i), "loc_centres": np.concatenate(loc_c).astype(np.float32),
            "loc_masks": np.zeros((n, 2, *loc_i[0].shape[1:]), np.uint8), "loc_has_mask": np.zeros(n, bool),
            "mid_crops": np.stack(mids), "side_crops": np.stack(sides), "labels": np.stack(labels),
            "off_slice_mm": np.array(offs, np.float32)}


def merge(*parts: dict[str, np.ndarray] | None, repeat_last: int = 1) -> dict[str, np.ndarray]:
    """Concatenate datasets (phantom ``make_dataset``/``make_mixed_dataset`` and ``user_dataset`` outputs); the
    last part is repeated ``repeat_last`` times (to weight a small user set against many phantoms)."""
    ds = [p for p in parts if p is not None and len(p["labels"])]
    if not ds:
        raise ValueError("no training data (no phantoms and no user series)")
    if repeat_last > 1:
        ds = ds[:-1] + [ds[-1]] * repeat_last
    keys = ("loc_image", "loc_centres", "loc_masks", "mid_crops", "side_crops", "labels")
    out = {k: np.concatenate([d[k] for d in ds]) for k in keys}
    out["loc_image"] = out["loc_image"].astype(np.float32)
    out["loc_has_mask"] = np.concatenate([d.get("loc_has_mask", np.ones(len(d["loc_image"]), bool)) for d in ds])
    return out
