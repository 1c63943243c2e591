"""Time MriPipeline on written phantom series (CPU): read + localise + classify, per series.

``.venv/bin/python bench/mri_inference.py --count 5 --threads 1``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7_000_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from models.registry import entry
    from pipelines.mri.pipeline import MriPipeline
    from pipelines.phantoms.dicom import write_series
    from pipelines.phantoms.mri import generate_series
    from pipelines.route import route
    from pipelines.study import Study

    pipe = MriPipeline(entry("mri").load(None, "cpu"))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.count):
            d = Path(tmp) / str(i)
            files = write_series(generate_series(args.seed + i), d)
            study = Study.from_paths(files)[0]
            (r,) = route(study)
            t0 = time.perf_counter()
            pipe.run(study, r.instances)
            times.append(time.perf_counter() - t0)
    print(f"first (includes model load) {times[0]:.2f} s; warm median {statistics.median(times[1:] or times):.2f} s, "
          f"max {max(times[1:] or times):.2f} s per 11-slice 256x256 series, {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
