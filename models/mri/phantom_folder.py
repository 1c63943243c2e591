"""Write phantom studies as a user's annotated folder (``models/mri/user_data.py`` layout), labels from the truth.

An example of the layout to copy, and a stand-in site for trying the fine-tuning commands:

    python -m models.mri.phantom_folder --out /tmp/site_mri --style b --seed 330000 --count 30

Each study of ``pipelines.phantoms.mri_shift`` (renderer ``a`` or ``b``; ``--shift``, e.g. ``flip``; none by
default) goes to ``OUT/<style>_<seed>/`` as DICOM; ``OUT/labels.json`` holds, per series, the disc centres of its
T2 series projected on the middle file of the series (as an annotator would place them) and the true grades.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pydicom

from pipelines.vocabulary import LEVELS, TASKS


def stored_points(dcm: Path, mm: np.ndarray) -> np.ndarray:
    """Patient mm -> pixel (x, y) of the stored image ``dcm`` (projected on its plane)."""
    ds = pydicom.dcmread(dcm, stop_before_pixels=True)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ps = [float(v) for v in ds.PixelSpacing]
    d = np.asarray(mm, float) - ipp
    return np.stack([d @ iop[:3] / ps[1], d @ iop[3:] / ps[0]], 1)


def write_phantom_folder(out: Path, style: str, seeds: list[int], shifts: list[str] | None = None) -> Path:
    """Write the studies and ``labels.json``; returns the labels path. Only the T2 series is annotated."""
    from pipelines.mri.preprocessing import series_weighting
    from pipelines.phantoms.mri_shift import make_case, parse_shifts, write_case

    out = Path(out)
    images, anns = [], []
    for n, seed in enumerate(seeds, start=1):
        case = make_case(style, seed, parse_shifts(list(shifts or [])))
        files = [Path(p) for p in write_case(case, out / f"{style}_{seed}")]
        t2 = sorted((f for f in files if series_weighting(str(pydicom.dcmread(f, stop_before_pixels=True)
                                                                 .get("SeriesDescription", ""))) == "T2"),
                    key=lambda f: float(np.dot([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True)
                                                .ImagePositionPatient], [1, 0, 0])))
        f = t2[len(t2) // 2]
        pts = stored_points(f, np.array([t.disc_centre_mm for t in case.levels]))
        grades = np.array([[t.disc_herniation, t.canal_stenosis, t.foraminal_stenosis_left, t.foraminal_stenosis_right]
                           for t in case.levels], int)
        images.append({"id": n, "file_name": str(f.relative_to(out))})
        anns.append({"id": n, "image_id": n, "category_id": 1,
                     "keypoints": [round(float(v), 3) for x, y in pts for v in (x, y, 2)],
                     "grades": {lv: {t: int(grades[i, j]) for j, t in enumerate(TASKS)} for i, lv in enumerate(LEVELS)}})
    doc = {"info": {"description": f"phantom {style} studies {seeds[0]}..{seeds[-1]} as a site folder",
                    "coordinate_convention": "pixel-centre: (0,0) is the centre of the top-left pixel; x right, y down"},
           "categories": [{"id": 1, "name": "cervical_discs", "keypoints": list(LEVELS)}],
           "images": images, "annotations": anns}
    path = out / "labels.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.mri.phantom_folder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--style", choices=("a", "b"), default="b")
    ap.add_argument("--seed", type=int, default=330_000)
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--shift", nargs="*", default=[], help="mri_shift shifts applied to every study (e.g. flip)")
    args = ap.parse_args(argv)
    print(write_phantom_folder(args.out, args.style, list(range(args.seed, args.seed + args.count)), args.shift))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
