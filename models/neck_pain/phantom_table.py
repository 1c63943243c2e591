"""Write paired phantom patients as a site's table (``models/neck_pain/user_data.py`` layout).

An example of the layout to copy, and a stand-in site for trying the fine-tuning commands:

    python -m models.neck_pain.phantom_table --out /tmp/site_neck --seed 200000 --count 40

Each virtual patient (``pipelines.phantoms.paired``, with the synthetic outcome) goes to ``OUT/p<seed>/xray`` and
``OUT/p<seed>/mri`` as DICOM; ``OUT/patients.csv`` holds the paths, the five clinical variables and the outcome.
``--dicom-only`` leaves duration, NDI and VAS empty (unknown), as a site without them would.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from pipelines.vocabulary import CLINICAL_VARIABLES


def write_phantom_table(out: Path, seeds: list[int], dicom_only: bool = False) -> Path:
    from pipelines.phantoms.paired import paired_phantom_studies

    out = Path(out)
    rows = []
    for seed in seeds:
        d = out / f"p{seed}"
        paired_phantom_studies(seed, d, outcome=True)
        case = json.loads((d / "outcome.json").read_text())
        (d / "outcome.json").unlink()
        clinical = dict(case["clinical"])
        if dicom_only:
            clinical = {k: (v if k in ("age", "female") else None) for k, v in clinical.items()}
        rows.append({"patient": f"phantom-{seed}", "xray": f"p{seed}/xray", "mri": f"p{seed}/mri",
                     **{k: "" if clinical.get(k) is None else clinical[k] for k in CLINICAL_VARIABLES},
                     "recovered": int(case["recovered"])})
    path = out / "patients.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["patient", "xray", "mri", *CLINICAL_VARIABLES, "recovered"])
        w.writeheader()
        w.writerows(rows)
    return path


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.neck_pain.phantom_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=200_000)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--dicom-only", action="store_true", help="leave duration, NDI and VAS unknown")
    args = ap.parse_args(argv)
    print(write_phantom_table(args.out, list(range(args.seed, args.seed + args.count)), args.dicom_only))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
