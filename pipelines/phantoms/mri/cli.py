"""``cspine-node phantom mri``: write synthetic sagittal MR series (MR Image Storage) with their truth JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.phantoms.dicom import write_series
from pipelines.phantoms.mri.series import SIGNAL, generate_series
from pipelines.phantoms.mri.truth import write_truth


def cli(argv: list[str] | None = None) -> int:
    """``cspine-node phantom mri --out DIR --seed N --count K [--weighting T2 T1]``.

    Writes ``DIR/mri_<seed>/`` per patient: one series per weighting (same study, same patient) and
    ``truth.json``.
    """
    ap = argparse.ArgumentParser(prog="cspine-node phantom mri", description=cli.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--weighting", nargs="+", default=["T2"], choices=sorted(SIGNAL))
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--columns", type=int, default=256)
    ap.add_argument("--slices", type=int, default=11)
    args = ap.parse_args(argv)
    import pydicom

    for seed in range(args.seed, args.seed + args.count):
        d = args.out / f"mri_{seed:06d}"
        study_uid = None
        for wt in args.weighting:
            ph = generate_series(seed, weighting=wt, shape=(args.rows, args.columns), n_slices=args.slices)
            files = write_series(ph, d, study_uid=study_uid)
            study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            if wt == args.weighting[0]:
                write_truth(ph, d / "truth.json")
        pos = sum(t.disc_herniation for t in ph.levels)
        print(f"{d}: {len(args.weighting)} series x {args.slices} slices, {pos} herniated disc(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
