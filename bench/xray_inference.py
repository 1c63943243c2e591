"""CPU latency of the X-ray keypoint model per radiograph (preprocess + forward + postprocess).

    .venv/bin/python bench/xray_inference.py [--weights PATH] [--images 12] [--threads 2] [--batch 6]

Radiographs are realistic-size phantom DX images (about 1100-3000 px a side) written as DICOM, so the time
includes reading and decoding the file, windowing, MONOCHROME1 inversion and the resampling; the model runs
its passes (cascade weights: the whole-image stage, then ``iterations`` x 6 vertebra crops, once per test-time
variant stored with the weights, ``--no-tta``: once; one-stage weights: whole image, then the spine box).
Prints per-image latency (mean, median, p95) at batch 1 and
images/s with batched inference, with the torch threads and the 1-minute load average (a busy CPU is slower).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--images", type=int, default=12, help="radiographs (3 per phantom study)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU)")
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--seed", type=int, default=950_000)
    ap.add_argument("--no-tta", action="store_true", help="the plain pass only (no test-time variants)")
    args = ap.parse_args(argv)

    import os

    import numpy as np
    import pydicom
    import torch

    from models.xray_keypoints.predictor import KeypointPredictor
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.xray import generate_study
    from pipelines.xray.preprocessing import image_from_dataset

    torch.set_num_threads(args.threads)
    predictor = KeypointPredictor.load(args.weights, torch.device("cpu"))
    if args.no_tta:
        predictor.variants = predictor.variants[:1]
    tmp = Path(tempfile.mkdtemp(prefix="xray_bench_"))
    files: list[Path] = []
    s = args.seed
    while len(files) < args.images:
        files += write_study(generate_study(s), tmp / str(s))
        s += 1
    files = files[: args.images]
    sizes = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    print(f"{len(files)} DX radiographs, {min(d.Rows for d in sizes)}-{max(d.Rows for d in sizes)} rows, "
          f"{min(d.Columns for d in sizes)}-{max(d.Columns for d in sizes)} cols; torch threads {args.threads}; "
          f"model input {predictor.size} px, version {predictor.version}, stage-2 iterations {predictor.iterations}, "
          f"test-time variants {len(predictor.variants)}; "
          f"load average {os.getloadavg()[0]:.2f}")
    predictor.predict(image_from_dataset(pydicom.dcmread(files[0])))  # warm-up

    pre, fwd = [], []
    for f in files:
        t0 = time.perf_counter()
        img = image_from_dataset(pydicom.dcmread(f))
        t1 = time.perf_counter()
        predictor.predict(img)
        t2 = time.perf_counter()
        pre.append(t1 - t0)
        fwd.append(t2 - t1)
    tot = [a + b for a, b in zip(pre, fwd, strict=True)]
    print(f"batch 1: {statistics.mean(tot) * 1000:.0f} ms per radiograph (median {statistics.median(tot) * 1000:.0f}, "
          f"p95 {np.percentile(tot, 95) * 1000:.0f}); read+preprocess {statistics.mean(pre) * 1000:.0f} ms, "
          f"model + postprocess {statistics.mean(fwd) * 1000:.0f} ms; {1 / statistics.mean(tot):.1f} images/s")

    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(files), args.batch):
        imgs = [image_from_dataset(pydicom.dcmread(f)) for f in files[i : i + args.batch]]
        predictor.predict_batch(imgs)
        n += len(imgs)
    dt = time.perf_counter() - t0
    print(f"batch {args.batch}: {dt / n * 1000:.0f} ms per radiograph, {n / dt:.1f} images/s (including reading); "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
