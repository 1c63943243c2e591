"""Train the MRI disc localiser and level classifier on synthetic phantoms (CPU is enough).

``python -m models.mri.train --out models/mri/mri_v1.pt`` (see ``--help``). Weights are saved in fp16
with their configuration and the validation metrics measured at the end of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from models.common.checkpoint import save_checkpoint
from models.common.metrics import roc_auc
from models.common.training import seed_everything
from models.mri import DEFAULT_WEIGHTS
from models.mri.data import heatmaps, make_dataset
from models.mri.network import CLASSIFIER_OUT, DiscLocaliser, LevelClassifier
from models.mri.predictor import MriPredictor, decode_heatmaps, spatial_softmax

VERSION = "mri-1.0.0"


def _augment_intensity(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    shape = (n,) + (1,) * (x.ndim - 1)
    scale = 0.8 + 0.4 * torch.rand(shape, generator=g)
    gamma = 0.8 + 0.4 * torch.rand(shape, generator=g)
    x = x.clamp(min=0) ** gamma * scale
    return x + 0.02 * torch.randn(x.shape, generator=g)


def _shift(tensors: list[torch.Tensor], g: torch.Generator, max_px: int) -> list[torch.Tensor]:
    """Translate a batch (same random shift for every tensor) by up to ``max_px``, zero fill."""
    if max_px <= 0:
        return tensors
    dy, dx = (int(v) for v in torch.randint(-max_px, max_px + 1, (2,), generator=g))
    out = []
    for x in tensors:
        h, w = x.shape[-2:]
        p = F.pad(x, (max_px, max_px, max_px, max_px))
        out.append(p[..., max_px + dy:max_px + dy + h, max_px + dx:max_px + dx + w])
    return out


def train_localiser(data: dict, val: dict, epochs: int, batch: int, lr: float, seed: int,
                    channels: tuple[int, ...] = (16, 32, 64, 128), shift_px: int = 0) -> tuple[DiscLocaliser, dict]:
    seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    net = DiscLocaliser(channels)
    dice = DiceLoss(sigmoid=True, batch=True)  # the discs are small: Dice balances them against the background
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.from_numpy(data["loc_image"][:, None])
    hm = torch.from_numpy(np.stack([heatmaps(c) for c in data["loc_centres"]]))
    mk = torch.from_numpy(data["loc_masks"].astype(np.float32))
    n = len(x)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb, hb, mb = _shift([x[idx], hm[idx], mk[idx]], g, shift_px)
            out = net(_augment_intensity(xb, g))
            target = hb.flatten(2) + 1e-12
            target = target / target.sum(-1, keepdim=True)
            ce = -(target * F.log_softmax(out[:, :5].flatten(2), -1)).sum(-1).mean()
            loss = ce + F.binary_cross_entropy_with_logits(out[:, 5:], mb) + dice(out[:, 5:], mb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        err = localiser_error_px(net, val)
        print(f"localiser epoch {ep + 1}/{epochs} loss {tot / n:.4f} val error {err:.2f} px(128) "
              f"{time.time() - t0:.0f}s", flush=True)
    return net, {"val_error_px128": localiser_error_px(net, val)}


@torch.no_grad()
def localiser_error_px(net: DiscLocaliser, val: dict) -> float:
    net.eval()
    out = net(torch.from_numpy(val["loc_image"][:, None])).numpy()
    errs = []
    for o, c in zip(out, val["loc_centres"], strict=True):
        pred, _, _ = decode_heatmaps(spatial_softmax(o[:5]))
        errs.append(np.hypot(*(pred - c).T))
    return float(np.mean(errs))


def _class_arrays(d: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten phantom-level arrays into (mid crops, mid labels (disc, canal)), (side crops, side labels)."""
    k = d["mid_crops"].shape[1]
    mid = d["mid_crops"].reshape(-1, *d["mid_crops"].shape[-3:])
    ml = np.repeat(d["labels"][:, None, :, :2], k, 1).reshape(-1, 2)
    side = d["side_crops"].reshape(-1, *d["side_crops"].shape[-3:])
    sl = np.repeat(d["labels"][:, None, :, 2:], k, 1).reshape(-1)
    return (torch.from_numpy(mid.astype(np.float32)), torch.from_numpy(ml.astype(np.float32)),
            torch.from_numpy(side.astype(np.float32)), torch.from_numpy(sl.astype(np.float32)))


def train_classifier(data: dict, val: dict, epochs: int, batch: int, lr: float, seed: int) -> tuple[LevelClassifier, dict]:
    seed_everything(seed + 1)
    g = torch.Generator().manual_seed(seed + 1)
    net = LevelClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    xm, ym, xs, ys = _class_arrays(data)
    nm, ns = len(xm), len(xs)
    steps_per_epoch = (nm + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        pm, ps = torch.randperm(nm, generator=g), torch.randperm(ns, generator=g)
        tot = 0.0
        for i in range(steps_per_epoch):
            im = pm[i * batch:(i + 1) * batch]
            js = ps[(2 * i * batch) % ns:][: 2 * batch]
            om = net(_augment_intensity(xm[im], g))
            os_ = net(_augment_intensity(xs[js], g))
            loss = F.binary_cross_entropy_with_logits(om[:, :2], ym[im]) + \
                F.binary_cross_entropy_with_logits(os_[:, 2], ys[js])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        aucs = classifier_aucs(net, val)
        print(f"classifier epoch {ep + 1}/{epochs} loss {tot / steps_per_epoch:.4f} val AUC "
              + " ".join(f"{k}={v:.3f}" for k, v in aucs.items()) + f" {time.time() - t0:.0f}s", flush=True)
    return net, {"val_auc_truth_centres": classifier_aucs(net, val)}


@torch.no_grad()
def classifier_aucs(net: LevelClassifier, val: dict) -> dict[str, float]:
    net.eval()
    mid = torch.from_numpy(val["mid_crops"][:, 0].reshape(-1, *val["mid_crops"].shape[-3:]).astype(np.float32))
    side = torch.from_numpy(val["side_crops"][:, 0].reshape(-1, *val["side_crops"].shape[-3:]).astype(np.float32))
    pm = torch.sigmoid(net(mid)).numpy()
    psd = torch.sigmoid(net(side)[:, 2]).numpy().reshape(-1, 2)
    lab = val["labels"].reshape(-1, 4)
    return {"disc_degeneration": roc_auc(lab[:, 0], pm[:, 0]), "canal_stenosis": roc_auc(lab[:, 1], pm[:, 1]),
            "foraminal_stenosis_left": roc_auc(lab[:, 2], psd[:, 0]),
            "foraminal_stenosis_right": roc_auc(lab[:, 3], psd[:, 1])}


def _dataset(seeds: range, cache: Path | None) -> dict:
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    d = make_dataset(seeds)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **d)
    return d


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.mri.train", description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--train-seed", type=int, default=100_000, help="first phantom seed of the training set")
    ap.add_argument("--train-count", type=int, default=400)
    ap.add_argument("--val-seed", type=int, default=800_000)
    ap.add_argument("--val-count", type=int, default=60)
    ap.add_argument("--loc-epochs", type=int, default=28)
    ap.add_argument("--cls-epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cls-batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None, help="npz cache for the generated training/validation data")
    ap.add_argument("--loc-channels", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--loc-shift", type=int, default=12, help="max random translation (localiser pixels)")
    ap.add_argument("--only", choices=["localiser", "classifier"], default=None,
                    help="train one network and keep the other from --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    tr = _dataset(range(args.train_seed, args.train_seed + args.train_count),
                  args.cache.with_suffix(".train.npz") if args.cache else None)
    va = _dataset(range(args.val_seed, args.val_seed + args.val_count),
                  args.cache.with_suffix(".val.npz") if args.cache else None)
    print(f"data: {len(tr['labels'])} train / {len(va['labels'])} val phantoms, prevalence "
          f"{tr['labels'].reshape(-1, 4).mean(0).round(3).tolist()} ({time.time() - t0:.0f}s)", flush=True)
    old = MriPredictor.read_checkpoint(args.out) if args.only and args.out.exists() else None
    metrics: dict = dict(old.meta.get("metrics", {})) if old else {}
    if args.only != "classifier":
        loc, m = train_localiser(tr, va, args.loc_epochs, args.batch, args.lr, args.seed,
                                 tuple(args.loc_channels), args.loc_shift)
        metrics.update(m)
        loc_state = loc.state_dict()
    else:
        loc_state = old.parts["localiser"]
        args.loc_channels = old.meta["config"].get("loc_channels", [16, 32, 64, 128])
    if args.only != "localiser":
        cls, m = train_classifier(tr, va, args.cls_epochs, args.cls_batch, args.lr, args.seed)
        metrics.update(m)
        cls_state = cls.state_dict()
    else:
        cls_state = old.parts["classifier"]
    metrics["train_seconds"] = round(time.time() - t0, 1)
    config = {"version": VERSION, "train_seeds": [args.train_seed, args.train_count],
              "val_seeds": [args.val_seed, args.val_count], "loc_epochs": args.loc_epochs,
              "cls_epochs": args.cls_epochs, "loc_channels": list(args.loc_channels), "loc_shift": args.loc_shift, "lr": args.lr, "seed": args.seed, "weighting": "T2",
              "classifier_outputs": list(CLASSIFIER_OUT), "command": "python -m models.mri.train " + " ".join(sys.argv[1:] if argv is None else argv)}
    save_checkpoint(args.out, "mri", VERSION, {"localiser": loc_state, "classifier": cls_state},
                    {"config": config, "metrics": metrics})
    print(json.dumps(metrics, indent=1))
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
