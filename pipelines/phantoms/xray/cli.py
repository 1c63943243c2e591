"""``cspine-node phantom xray``: write synthetic lateral cervical radiograph studies (DX DICOM), optionally COCO."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray.coco import write_coco
from pipelines.phantoms.xray.sampling import DIFFICULTIES
from pipelines.phantoms.xray.study import generate_study


def cli(argv: list[str] | None = None) -> int:
    """``phantom xray --out DIR --seed N --count K [--shape R C] [--coco] [--difficulty D]``."""
    ap = argparse.ArgumentParser(prog="cspine-node phantom xray",
                                 description="Write synthetic lateral cervical radiograph studies (DX DICOM).")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first study (study i uses seed + i)")
    ap.add_argument("--count", type=int, default=1, help="number of studies")
    ap.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"), help="image size (default realistic)")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="realistic")
    ap.add_argument("--coco", action="store_true", help="also write COCO-keypoints JSON with the ground truth")
    ap.add_argument("--png", action="store_true", help="with --coco: PNG images instead of DICOM for the COCO set")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    studies = []
    for i in range(args.count):
        st = generate_study(args.seed + i, shape=tuple(args.shape) if args.shape else None,
                            difficulty=args.difficulty)
        paths = write_study(st, args.out / f"study_{args.seed + i:06d}")
        print(f"seed {args.seed + i}: {len(paths)} files in {paths[0].parent}")
        studies.append(st)
    if args.coco:
        path = write_coco(studies, args.out / "coco", image_format="png" if args.png else "dcm")
        print(f"COCO keypoints: {path}")
    return 0

