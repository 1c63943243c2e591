"""X-ray keypoint images/s on this machine's device: raw network forward vs the full batched predictor path.

    .venv/bin/python bench/gpu_throughput.py [--device auto] [--batch 32] [--callers 32] [--images 256]

In one run, on one device (``auto``: CUDA when visible, else the CPU):

* **raw**: the cascade's network forwards only, tensors already on the device: per batch of B images one stage-1
  forward (B x 1 x S1 x S1) and ``iterations`` stage-2 forwards (6 B vertebra crops x 2 x S2 x S2), no
  preprocessing, no decoding, no host transfer of inputs.
* **full**: what a worker does: K caller threads (``--callers``, like ``--pool threads --concurrency K``) each ask
  :class:`models.xray_keypoints.batching.BatchingPredictor` for the keypoints of decoded [0, 1] radiographs (phantoms
  of ``--shape``); the batcher groups up to B of them per forward (``--wait-ms``), and the path includes letterboxing,
  host-to-device copies, both stages with their crops (resampled with torch on the device on a GPU, with scipy
  on the CPU; ``--preprocess``), DSNT decoding, the stage-2 fallback re-crops, and mapping back to image pixels.

It prints both rates in images/s, their ratio (goal on a GPU: full >= 0.9 x raw), and the batch sizes the batcher
formed. ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_images(n: int, shape: tuple[int, int], seed: int) -> list:
    """``n`` decoded phantom radiographs ([0, 1], bone bright) of about ``shape``."""
    import numpy as np

    from pipelines.phantoms.xray import generate_study
    from pipelines.xray.preprocessing import to_unit_range

    out = []
    while len(out) < n:
        st = generate_study(seed, shape=shape)
        for v in st.views.values():
            out.append(to_unit_range(v.pixels.astype(np.float64), monochrome1=v.photometric == "MONOCHROME1"))
        seed += 1
    return out[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--batch", type=int, default=None, help="images per forward (default 32 on CUDA, 4 on the CPU)")
    ap.add_argument("--callers", type=int, default=None, help="concurrent caller threads (default = batch)")
    ap.add_argument("--images", type=int, default=None, help="images predicted in the full path (default 8 x batch)")
    ap.add_argument("--unique", type=int, default=12, help="distinct phantom images to cycle through")
    ap.add_argument("--shape", default="1024x832", help="phantom rows x cols")
    ap.add_argument("--wait-ms", type=float, default=20.0, help="batcher wait for more images (ms)")
    ap.add_argument("--reps", type=int, default=None, help="raw forward repetitions (default: as many batches as full)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--preprocess", choices=["auto", "host", "device"], default="auto",
                    help="letterbox and crops with scipy on the host or torch on the device (auto: device on a GPU)")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--seed", type=int, default=970_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    from models.common.predictor import resolve_device
    from models.xray_keypoints.batching import BatchingPredictor
    from models.xray_keypoints.cascade import N_LEVELS
    from models.xray_keypoints.predictor import KeypointPredictor

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (32 if cuda else 4)
    callers = args.callers or batch
    n_images = args.images or 8 * batch
    reps = args.reps or max(1, n_images // batch)
    pred = KeypointPredictor.load(args.weights, device, preprocess_on_device=None if args.preprocess == "auto"
                                  else args.preprocess == "device")
    if not pred.cascade:
        print("these weights are not a cascade (meta architecture \"cascade\"); this benchmark measures the cascade")
        return 2
    rows, cols = (int(v) for v in args.shape.lower().split("x"))
    images = make_images(args.unique, (rows, cols), args.seed)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # -- raw network forward ---------------------------------------------------------------------------------
    s1, s2 = pred.size, int(pred.crop["size"])
    iterations = max(1, pred.iterations)
    x1 = torch.rand(batch, 1, s1, s1, device=device)
    x2 = torch.rand(batch * N_LEVELS, 2, s2, s2, device=device)

    @torch.inference_mode()
    def raw_once() -> None:
        pred.model(x1)
        for _ in range(iterations):
            pred.stage2(x2)

    raw_once()
    raw_once()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        raw_once()
    sync()
    raw_s = time.perf_counter() - t
    raw_ips = reps * batch / raw_s

    # -- full predictor path through the batcher, K callers --------------------------------------------------
    bp = BatchingPredictor(pred, max_images=batch, wait_ms=args.wait_ms)
    bp.predict_batch(images[: min(batch, len(images))])  # warm-up (allocator, cuDNN autotune, threads)
    bp.batch_sizes.clear()
    per_caller = [n_images // callers + (1 if i < n_images % callers else 0) for i in range(callers)]
    barrier = threading.Barrier(callers + 1)
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        barrier.wait()
        try:
            for j in range(per_caller[i]):
                bp.predict(images[(i * 7 + j) % len(images)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for th in threads:
        th.start()
    barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    sync()
    full_s = time.perf_counter() - t
    bp.close()
    if errors:
        raise errors[0]
    full_ips = n_images / full_s
    sizes = Counter(bp.batch_sizes)
    mean_batch = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))

    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    where = "device (torch)" if pred.preprocess_on_device else "host (scipy)"
    print(f"device {device} ({name}); model {pred.version}; stage 1 {s1} px, stage 2 {N_LEVELS} crops x {s2} px x "
          f"{iterations} passes; phantoms {rows}x{cols}; preprocessing on the {where}")
    print(f"raw network forward, batch {batch}:                    {raw_ips:8.1f} images/s ({reps} batches)")
    print(f"full path, BatchingPredictor, {callers} callers, max {batch}: {full_ips:8.1f} images/s ({n_images} images, "
          f"mean batch {mean_batch:.1f})")
    print(f"ratio full / raw: {full_ips / raw_ips:.2f}")
    print("batch sizes formed: " + ", ".join(f"{k} x{v}" for k, v in sorted(sizes.items())))
    result = {"device": str(device), "device_name": name, "model": pred.version, "batch": batch, "callers": callers,
              "images": n_images, "shape": [rows, cols], "preprocess_on_device": pred.preprocess_on_device, "raw_images_per_s": raw_ips, "full_images_per_s": full_ips,
              "ratio": full_ips / raw_ips, "batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
              "torch": torch.__version__}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
