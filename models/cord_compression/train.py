"""Train the per-segment cord-compression CNN on phantom crops (time-boxed, one CPU thread).

    python -m models.cord_compression.data --out /tmp/cc/train.npz --seed 0 --count 4000
    python -m models.cord_compression.data --out /tmp/cc/val.npz --seed 100000 --count 300 --jittered 0
    cspine-node train cord-compression --data /tmp/cc/train.npz --val /tmp/cc/val.npz \
        --out models/cord_compression/segment_cnn_v1.pt --minutes 15

The decision threshold is fitted on the validation crops (Youden's J) and stored with the weights (fp16).

Fine-tuning on a site's annotated radiographs (``data`` makes the ``.npz`` from a COCO / labelme folder,
:mod:`models.cord_compression.user_data`; several ``--data`` files are concatenated, e.g. yours and phantoms).
``--init shipped|FILE`` starts from those weights; without ``--val`` their threshold is kept::

    cspine-node train cord-compression data --coco site/annotations.json --out /tmp/cc_user.npz
    cspine-node train cord-compression data --coco site/val.json --jittered 0 --out /tmp/cc_user_val.npz
    cspine-node train cord-compression --data /tmp/cc_user.npz /tmp/cc/train.npz --val /tmp/cc_user_val.npz \
        --init shipped --out /tmp/cc_site.pt --minutes 5
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.metrics import best_threshold, binary_metrics
from models.common.training import run_steps, seed_everything
from models.common.user_labels import init_weights
from models.cord_compression import DEFAULT_WEIGHTS
from models.cord_compression.network import SegmentCNN
from models.cord_compression.roi import CROP, HEIGHT_D, WIDTH_D
from pipelines.results import SEGMENTS

VERSION = "1"


def _inputs(crops_u8: np.ndarray) -> torch.Tensor:
    """uint8 crops (N, H, W) -> normalised float tensor (N, 1, H, W)."""
    x = torch.from_numpy(crops_u8).float().div_(255.0)
    m = x.mean(dim=(1, 2), keepdim=True)
    s = x.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(0.02)
    return ((x - m) / s).unsqueeze(1)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Intensity augmentation on [0, 1] crops (N, H, W): gamma, contrast, noise."""
    n = x.shape[0]
    gamma = torch.exp(torch.randn(n, 1, 1, generator=gen) * 0.15)
    x = x.clamp_min(1e-4) ** gamma
    x = x * (1 + 0.1 * torch.randn(n, 1, 1, generator=gen))
    return x + torch.randn(x.shape, generator=gen) * (0.02 * torch.rand(n, 1, 1, generator=gen))


@torch.no_grad()
def predict_crops(net: SegmentCNN, crops_u8: np.ndarray, segments: np.ndarray, batch: int = 512) -> np.ndarray:
    """Probabilities for uint8 crops (N, H, W) with their segment indices (N,)."""
    net.eval()
    out = []
    for i in range(0, len(crops_u8), batch):
        x = _inputs(crops_u8[i : i + batch])
        out.append(torch.sigmoid(net(x, torch.from_numpy(segments[i : i + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def save(net: SegmentCNN, out: Path, meta: dict) -> None:
    """Write a ``cord_compression`` checkpoint (fp16, part ``network``); ``meta["version"]`` is its version."""
    save_checkpoint(out, "cord_compression", str(meta.get("version", VERSION)), {"network": net},
                    {k: v for k, v in meta.items() if k != "version"})


def _lr(step: int, horizon: int, lr: float) -> float:
    """Linear warm-up ``lr * step / 50`` over the first 50 steps, then a half cosine over ``horizon`` steps."""
    return lr * 0.5 * (1 + math.cos(math.pi * min(step / horizon, 1.0))) if step > 50 else lr * step / 50


def load_crops(data: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """``crops`` (N, V, 5, H, W) and ``labels`` (N, 5) of several ``.npz``, concatenated (V: the fewest of them)."""
    files = [np.load(p) for p in data]
    nv = min(f["crops"].shape[1] for f in files)
    return (np.concatenate([f["crops"][:, :nv] for f in files]),
            np.concatenate([f["labels"] for f in files]).astype(np.float32))


def train(data: Path | list[Path], val: Path | None, out: Path, minutes: float, seed: int = 0, batch: int = 64,
          lr: float = 2e-3, max_steps: int | None = None, init: Path | None = None) -> dict:
    """``data``: one or several ``.npz`` (concatenated); ``init``: a ``cord_compression`` checkpoint to fine-tune
    (its threshold is kept unless ``val`` refits it)."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    data = [data] if isinstance(data, Path) else list(data)
    crops, labels = load_crops(data)  # (N, V, 5, H, W), (N, 5)
    n, nv = crops.shape[:2]
    pos_rate = float(labels.mean())
    start = load_checkpoint(init, "cord_compression") if init is not None else None
    net = SegmentCNN()
    if start is not None:
        net.load_state_dict(start.part("network"))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.time()
    losses: list[float] = []
    net.train()

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:  # the horizon: max_steps, else the steps estimated after 50 to fit the time box
            g["lr"] = _lr(step, total, lr)
        pi = rng.integers(0, n, batch)
        vi = rng.integers(0, nv, batch)
        si = rng.integers(0, 5, batch)
        raw = torch.from_numpy(crops[pi, vi, si]).float().div_(255.0)
        x = _augment(raw, gen)
        m = x.mean(dim=(1, 2), keepdim=True)
        s = x.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(0.02)
        x = ((x - m) / s).unsqueeze(1)
        y = torch.from_numpy(labels[pi, si])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x, torch.from_numpy(si)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        return losses[-1]

    step = run_steps(step_fn, None if max_steps else minutes, max_steps, log_every=500, estimate_at=(50,),
                     min_steps=100, slack=1.0)
    net.eval()
    window = max(1, min(500, step // 4))
    meta = {"arch": "segment_cnn", "version": VERSION, "crop": list(CROP), "height_d": HEIGHT_D, "width_d": WIDTH_D,
            "segments": list(SEGMENTS), "steps": step, "batch": batch, "lr": lr, "seed": seed,
            "train_patients": int(n), "train_positive_rate": round(pos_rate, 4),
            "train_seconds": round(time.time() - t0, 1), "data": [str(p) for p in data],
            "threshold": float(start.meta.get("threshold", 0.5)) if start is not None else 0.5,
            "loss_first": round(float(np.mean(losses[:window])), 4) if losses else None,
            "loss_last": round(float(np.mean(losses[-window:])), 4) if losses else None, "loss_window": window}
    if start is not None:
        meta["init"] = {"weights": str(init), "version": start.version}
    if val is not None:
        v = np.load(val)
        vc, vl = v["crops"][:, 0], v["labels"]
        segs = np.tile(np.arange(5), len(vc))
        probs = predict_crops(net, vc.reshape(-1, *vc.shape[-2:]), segs)
        thr = best_threshold(vl.ravel(), probs)
        meta["threshold"] = round(thr, 4)
        meta["validation"] = {"data": str(val), "patients": int(len(vc)), **binary_metrics(vl.ravel(), probs, thr)}
    save(net, out, meta)
    return meta


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node train cord-compression", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True,
                    help=".npz from models.cord_compression.data (several: concatenated)")
    ap.add_argument("--val", type=Path, default=None, help="validation .npz (threshold fit)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="default 2e-3 from scratch, 2e-4 with --init")
    ap.add_argument("--init", default=None, help="fine-tune: 'shipped' (the shipped weights) or a weights file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["data"]:  # cspine-node train cord-compression data ...: the .npz from phantoms or a site's folder
        from models.cord_compression.data import cli as data_cli

        return data_cli(list(argv[1:]))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        init = init_weights(args.init, DEFAULT_WEIGHTS)
    except FileNotFoundError as exc:
        ap.error(str(exc))
    lr = args.lr or (2e-4 if init is not None else 2e-3)
    meta = train(args.data, args.val, args.out, args.minutes, args.seed, args.batch, lr, args.max_steps, init)
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
