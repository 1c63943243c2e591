"""CPU latency of the seed-model predictors: curvature class (S-ResNet-34) and upper cervical (CerviHFENet).

    .venv/bin/python bench/seed_models.py [--studies 6] [--threads 1] [--shape 1024 1024]

Phantom studies are rendered at ``--shape`` (realistic detector sizes are 1100-3000 px; the predictors
resample to 96-128 px, so time grows only with the resampling). Curvature: one neutral image per call
(locator + ROI + classifier). Upper cervical: three views per call (3 x locator + ROI, one network pass).
Prints mean / median / max milliseconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    ap.add_argument("--seed", type=int, default=960_000)
    args = ap.parse_args(argv)

    import torch

    from models.curvature.predictor import CurvaturePredictor
    from models.upper_cervical.predictor import UpperCervicalPredictor
    from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study
    from pipelines.results import View

    torch.set_num_threads(args.threads)
    curvature, upper = CurvaturePredictor.load(), UpperCervicalPredictor.load()  # outside the timing
    t_curv, t_upper = [], []
    for i in range(args.studies):
        st = generate_upper_cervical_study(args.seed + i, shape=tuple(args.shape))
        views = {v: uv.unit_image() for v, uv in st.views.items()}
        t0 = time.perf_counter()
        curvature.classify(views, {View.NEUTRAL: st.views[View.NEUTRAL].pixel_spacing_mm})
        t_curv.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        upper.classify(views, {})
        t_upper.append((time.perf_counter() - t0) * 1000)
    for name, t in (("curvature (1 image)", t_curv), ("upper cervical (3 views)", t_upper)):
        print(f"{name:26s} mean {statistics.mean(t):7.1f} ms  median {statistics.median(t):7.1f} ms  "
              f"max {max(t):7.1f} ms  ({len(t)} calls, {args.threads} thread(s), {args.shape[0]}x{args.shape[1]} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
