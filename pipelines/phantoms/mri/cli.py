"""``cspine-node phantom mri``: write synthetic sagittal MR series (MR Image Storage) with their truth JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.phantoms.dicom import write_series
from pipelines.phantoms.mri.series import SIGNAL, generate_series
from pipelines.phantoms.mri.truth import write_truth


def cli(argv: list[str] | None = None) -> int:
    """``cspine-node phantom mri --out DIR --seed N --count K [--style a|b|c] [--shift NAME[:VALUE] ...]
    [--weighting T2 T1 STIR] [--upper]``.

    Writes ``DIR/mri_<seed>/`` per patient: one series per weighting (same study, same patient) and
    ``truth.json``. ``--style a`` (default) is renderer A (``pipelines.phantoms.mri``), ``--style b`` renderer B
    (``pipelines.phantoms.mri_b``: its own anatomy and acquisition), ``--style c`` renderer C (``pipelines.phantoms.mri_c``,
    a third, written apart from both; no ``--shift``, ``--weighting``, ``--rows``/``--columns``/``--slices``: it
    draws its own acquisition and adds a T1 series to some studies). ``--shift`` applies shifts of the suite
    (``pipelines.phantoms.mri_shift.spec``; ``suite`` cycles through them one per study); with a shift or style b
    the truth JSON holds the disc centres in patient coordinates and on the stored pixels.
    """
    ap = argparse.ArgumentParser(prog="cspine-node phantom mri", description=cli.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--style", choices=("a", "b", "c"), default="a")
    ap.add_argument("--shift", nargs="+", default=[], metavar="NAME[:VALUE]")
    ap.add_argument("--weighting", nargs="+", default=["T2"], choices=sorted({*SIGNAL, "STIR"}))
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--columns", type=int, default=None)
    ap.add_argument("--slices", type=int, default=None)
    ap.add_argument("--upper", action="store_true", help="renderer A only, no --shift: draw the anatomy above C2 "
                    "(dens, C1, clivus, foramen magnum, brainstem, cerebellum) with the field of view moved up "
                    "(pipelines.phantoms.mri.upper)")
    args = ap.parse_args(argv)
    if args.style == "c" and (args.shift or args.weighting != ["T2"] or args.rows or args.columns or args.slices
                              or args.upper):
        ap.error("--style c draws its own acquisition: no --shift, --weighting, --rows, --columns, --slices, --upper")
    if args.upper and (args.style == "b" or args.shift or "STIR" in args.weighting):
        ap.error("--upper is for renderer A without --shift (and without STIR)")
    if args.weighting[0] != "T2" and (args.style == "b" or args.shift):
        ap.error("with --style b or --shift the first weighting is T2 (the series the truth refers to)")
    if args.style == "a" and not args.shift and "STIR" not in args.weighting:
        return _renderer_a(args)
    return _cases(args)


def _renderer_a(args: argparse.Namespace) -> int:
    import pydicom

    rows, cols, slices = args.rows or 256, args.columns or 256, args.slices or 11
    for seed in range(args.seed, args.seed + args.count):
        d = args.out / f"mri_{seed:06d}"
        study_uid = None
        for wt in args.weighting:
            ph = generate_series(seed, weighting=wt, shape=(rows, cols), n_slices=slices, upper=args.upper)
            files = write_series(ph, d, study_uid=study_uid)
            study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            if wt == args.weighting[0]:
                write_truth(ph, d / "truth.json")
        pos = sum(t.disc_herniation for t in ph.levels)
        print(f"{d}: {len(args.weighting)} series x {slices} slices, {pos} herniated disc(s)")
    return 0


def _cases(args: argparse.Namespace) -> int:
    from pipelines.phantoms.mri_shift import make_case, parse_shifts, suite_shift, write_case

    base = [s for s in args.shift if s != "suite"]
    base += [w.lower() for w in args.weighting[1:]]
    if args.slices:
        base.append(f"slices:{args.slices}")
    if args.rows or args.columns:
        base.append(f"matrix:{args.rows or args.columns}x{args.columns or args.rows}")
    for i, seed in enumerate(range(args.seed, args.seed + args.count)):
        items = list(base)
        if "suite" in args.shift:
            items.append(suite_shift(i, exclude=("oblique", "stir") if args.style == "a" else ()))
        case = make_case(args.style, seed, parse_shifts(items))
        d = args.out / f"mri_{args.style}_{seed:06d}"
        write_case(case, d)
        shifted = ", ".join(f"{k}:{v}" if v else k for k, v in case.shifts.items()) or "none"
        pos = sum(t.disc_herniation for t in case.levels)
        print(f"{d}: renderer {args.style.upper()}, {len(case.series)} series x {case.series[0].volume.shape[0]} "
              f"slices, shifts {shifted}, {pos} herniated disc(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
