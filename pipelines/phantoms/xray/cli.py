"""``cspine-node phantom xray``: write synthetic lateral cervical radiograph studies (DX DICOM), optionally COCO.

``--style a`` (default) is renderer A (``pipelines.phantoms.xray``), ``--style b`` the independently written renderer
B (``pipelines.phantoms.xray_b``); ``--shift NAME[:VALUE][,...]`` applies the shift suite
(``pipelines.phantoms.shifts``) on top of either."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.shifts import DEFAULTS, parse, shift_study
from pipelines.phantoms.xray.coco import write_coco
from pipelines.phantoms.xray.sampling import DIFFICULTIES
from pipelines.phantoms.xray.study import generate_study


def cli(argv: list[str] | None = None) -> int:
    """``phantom xray --out DIR --seed N --count K [--style a|b] [--shift S] [--shape R C] [--coco] [--difficulty D]``."""
    ap = argparse.ArgumentParser(prog="cspine-node phantom xray",
                                 description="Write synthetic lateral cervical radiograph studies (DX DICOM).")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first study (study i uses seed + i)")
    ap.add_argument("--count", type=int, default=1, help="number of studies")
    ap.add_argument("--style", choices=("a", "b"), default="a", help="renderer A (default) or the independent B")
    ap.add_argument("--shift", default="", help=f"shifts on top, NAME[:VALUE],...: {', '.join(DEFAULTS)}")
    ap.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                    help="image size (default realistic); style b: the largest side")
    ap.add_argument("--field", choices=("tight", "wide"), help="style b: collimated field (default: either)")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="realistic", help="style a only")
    ap.add_argument("--coco", action="store_true", help="also write COCO-keypoints JSON with the ground truth")
    ap.add_argument("--png", action="store_true", help="with --coco: PNG images instead of DICOM for the COCO set")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be >= 1")
    try:
        parse(args.shift)
    except ValueError as exc:
        ap.error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    studies = []
    for i in range(args.count):
        if args.style == "b":
            from pipelines.phantoms.xray_b import generate_study_b

            st = generate_study_b(args.seed + i, field=args.field, max_size=max(args.shape) if args.shape else None)
        else:
            st = generate_study(args.seed + i, shape=tuple(args.shape) if args.shape else None,
                                difficulty=args.difficulty)
        st = shift_study(st, args.shift)
        paths = write_study(st, args.out / f"study_{args.seed + i:06d}")
        print(f"seed {args.seed + i}: {len(paths)} files in {paths[0].parent}")
        studies.append(st)
    if args.coco:
        path = write_coco(studies, args.out / "coco", image_format="png" if args.png else "dcm")
        print(f"COCO keypoints: {path}")
    return 0

