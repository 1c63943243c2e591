"""Train the spine locator or a curvature classifier (S-ResNet-34 / plain ResNet-34) on phantom data.

Data: ``.npz`` files from :mod:`models.curvature.data` (and, for the locator, also from
:mod:`models.upper_cervical.data`). Training is time-boxed (``--minutes``): the step count is estimated from
the first steps and the learning rate follows a cosine schedule over it. One CPU thread unless ``--threads``.

    python -m models.curvature.train --arch s_resnet34 --data /tmp/curv_train.npz --out models/curvature/s_resnet34_v1.pt
    python -m models.curvature.train --arch locator --data /tmp/curv_train.npz /tmp/uc_train.npz --out models/curvature/spine_locator_v1.pt

Fine-tuning on a site's annotated radiographs (``data`` makes the ``.npz`` from a COCO / labelme folder,
:mod:`models.curvature.user_data`; several ``--data`` files are concatenated, e.g. yours and phantoms;
``--init shipped`` starts from the shipped weights, ``--init FILE`` from other ones, keeping their architecture)::

    cspine-node train curvature data --coco site/annotations.json --out /tmp/curv_user.npz
    cspine-node train curvature --data /tmp/curv_user.npz /tmp/curv_train.npz --init shipped --out /tmp/curv_site.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.images import from_u8
from models.common.training import cosine_lr, run_steps, seed_everything
from models.common.user_labels import init_weights
from models.curvature import CLASSES, DEFAULT_WEIGHTS
from models.curvature.augment import jitter_window
from models.curvature.data import CONTEXT, INPUT
from models.curvature.network import ARCHS, build
from models.curvature.roi import DEFAULT_LOCATOR, SpineLocator, save_locator

VERSION = "1"


def _concat(data: list[Path], *keys: str) -> list[np.ndarray]:
    """The arrays ``keys`` of several ``.npz`` files, concatenated (a site's data mixed with phantoms)."""
    files = [np.load(p) for p in data]
    return [np.concatenate([f[k] for f in files]) for k in keys]


def train_classifier(arch: str, data: Path | list[Path], out: Path, minutes: float, seed: int, batch: int, lr: float,
                     max_steps: int | None = None, matrix_lr_scale: float = 10.0, init: Path | None = None) -> dict:
    """``init``: a ``curvature`` checkpoint to fine-tune (its architecture replaces ``arch``)."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    data = [data] if isinstance(data, Path) else list(data)
    crops_u8, labels_np = _concat(data, "crops", "labels")
    crops = torch.from_numpy(from_u8(crops_u8) * 2 - 1)[:, None]
    labels = torch.from_numpy(labels_np.astype(np.int64))
    counts = torch.bincount(labels, minlength=len(CLASSES)).float()
    class_w = (counts.sum() / counts.clamp(min=1)).sqrt()
    class_w = class_w / class_w.mean()
    start = None
    if init is not None:
        start = load_checkpoint(init, "curvature")
        if list(start.meta.get("classes", CLASSES)) != list(CLASSES):
            raise ValueError(f"{init}: classes {start.meta.get('classes')} differ from {list(CLASSES)}")
        arch = start.meta["arch"]
    net = build(arch, len(CLASSES), INPUT)
    if start is not None:
        net.load_state_dict(start.part("network"))
    # S-ResNet's weight matrices are gains: no weight decay and a larger step (matrix_lr_scale x lr)
    mats = [p for n, p in net.named_parameters() if n.endswith("weight_matrix")]
    rest = [p for n, p in net.named_parameters() if not n.endswith("weight_matrix")]
    groups = [{"params": rest, "weight_decay": 1e-4, "scale": 1.0}]
    if mats:
        groups.append({"params": mats, "weight_decay": 0.0, "scale": matrix_lr_scale})
    opt = torch.optim.AdamW(groups, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, total, lr) * g["scale"]
        idx = torch.from_numpy(rng.integers(0, len(labels), batch))
        x = jitter_window(crops[idx], INPUT, CONTEXT, generator=gen)
        loss = F.cross_entropy(net(x), labels[idx], weight=class_w, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    t0 = time.time()
    steps = run_steps(step_fn, minutes, max_steps)
    meta = {"arch": arch, "version": VERSION, "input_size": INPUT, "classes": list(CLASSES), "steps": steps,
            "batch": batch, "lr": lr, "matrix_lr_scale": matrix_lr_scale if mats else None, "seed": seed,
            "train_images": len(labels),
            "train_seconds": round(time.time() - t0, 1), "data": [str(p) for p in data]}
    if start is not None:
        meta["init"] = {"weights": str(init), "version": start.version}
    save_checkpoint(out, "curvature", VERSION, {"network": net}, {k: v for k, v in meta.items() if k != "version"})
    return meta


def train_locator(data: list[Path], out: Path, minutes: float, seed: int, batch: int, lr: float,
                  max_steps: int | None = None, init: Path | None = None) -> dict:
    """``init``: a ``spine_locator`` checkpoint to fine-tune."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    xs, ps = [], []
    for path in data:
        d = np.load(path)
        xs.append(from_u8(d["loc"]) * 2 - 1)
        ps.append(d["loc_pts"].astype(np.float32))
    x_all = torch.from_numpy(np.concatenate(xs))[:, None]
    p_all = torch.from_numpy(np.concatenate(ps))
    start = load_checkpoint(init, "spine_locator") if init is not None else None
    width = int(start.meta["width"]) if start is not None else 16
    net = SpineLocator(width)
    if start is not None:
        net.load_state_dict(start.part("network"))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, total, lr)
        idx = torch.from_numpy(rng.integers(0, len(x_all), batch))
        x, p = x_all[idx], p_all[idx].clone()
        flip = torch.rand(batch) < 0.5  # left-right flip (facing)
        x[flip] = x[flip].flip(-1)
        p[flip, :, 0] = x.shape[-1] - 1 - p[flip, :, 0]
        coords, _ = net(x)
        loss = F.smooth_l1_loss(coords, p, beta=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    t0 = time.time()
    steps = run_steps(step_fn, minutes, max_steps)
    meta = {"version": VERSION, "steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_images": len(x_all),
            "train_seconds": round(time.time() - t0, 1), "data": [str(p) for p in data]}
    if start is not None:
        meta["init"] = {"weights": str(init), "version": start.version}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_locator(net.eval(), out, width, meta)
    return meta


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.curvature.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=(*ARCHS, "locator"), default="s_resnet34")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help=".npz from models.curvature.data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=None, help="fixed step count instead of the time box")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None,
                    help="default 2e-3 (classifier) / 3e-3 (locator) from scratch, 10 x less with --init")
    ap.add_argument("--init", default=None,
                    help="fine-tune: 'shipped' (the shipped weights of --arch's model) or a weights file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--matrix-lr-scale", type=float, default=10.0,
                    help="S-ResNet: learning-rate factor of the learnable weight matrices (no weight decay)")
    ap.add_argument("--threads", type=int, default=1)
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["data"]:  # cspine-node train curvature data ...: the .npz from phantoms or a site's folder
        from models.curvature.data import cli as data_cli

        return data_cli(list(argv[1:]))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    locator = args.arch == "locator"
    try:
        init = init_weights(args.init, DEFAULT_LOCATOR if locator else DEFAULT_WEIGHTS)
    except FileNotFoundError as exc:
        ap.error(str(exc))
    scale = 0.1 if init is not None else 1.0
    if locator:
        meta = train_locator(args.data, args.out, args.minutes, args.seed, args.batch, args.lr or 3e-3 * scale,
                             args.max_steps, init)
    else:
        meta = train_classifier(args.arch, args.data, args.out, args.minutes, args.seed, args.batch,
                                args.lr or 2e-3 * scale, args.max_steps, args.matrix_lr_scale, init)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
