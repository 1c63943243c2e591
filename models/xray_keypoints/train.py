"""``cspine-node train xray``: train the keypoint model; routes to the trainer of the weights the node runs.

- ``cspine-node train xray --data FOLDER ...``: fine-tune the shipped cascade on a site's COCO / labelme folder
  (``finetune.py``; from scratch with ``--from-scratch``);
- ``cspine-node train xray --from-corrections DIR ...``: fine-tune the active model on radiologists' corrections
  plus phantoms, compare with the active model and promote in the site's store only if better
  (``corrections_train.py``);
- ``cspine-node train xray cascade data|stage1|stage2|export ...``: the cascade's steps (``cascade_train.py``;
  exact commands of the shipped weights in MODEL_CARD.md);
- ``cspine-node train xray single ...``: the one-stage network of 1.0.0 (this module), e.g.::

    cspine-node train xray single --data phantom --studies 600 --steps 6000 --seed 7 --out xray_keypoints_v1.pt

A training checkpoint (fp32, optimiser, step) is written next to ``--out`` as ``<out>.ckpt`` every
``--checkpoint-every`` steps; ``--resume`` continues from it. The exported weights (fp16 + configuration +
version + spread calibration) go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.common.checkpoint import save_checkpoint
from models.common.training import seed_everything, warmup_cosine
from models.xray_keypoints.data import (
    AugmentConfig,
    KeypointDataset,
    RawSample,
    coco_samples,
    labelme_samples,
    phantom_samples,
)
from models.xray_keypoints.losses import LossConfig, multitask_loss
from models.xray_keypoints.network import KeypointNet, NetworkConfig, count_parameters

VERSION = "1.0.0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cspine-node train xray single", description="Train the one-stage keypoint "
                                "network of 1.0.0 (phantoms on the fly, COCO or labelme folders).")
    p.add_argument("--data", default="phantom", help="'phantom' or a folder with a COCO-keypoints *.json or labelme JSON files")
    p.add_argument("--label-map", type=Path, help="labelme: JSON {label: keypoint name}")
    p.add_argument("--studies", type=int, default=400, help="phantom studies to generate (3 views each)")
    p.add_argument("--shape", default="random",
                   help="phantom image rows x cols (e.g. 640x512), 'random' (560-720 x 420-660) or 'native'")
    p.add_argument("--difficulty", default="mix", help="easy | realistic | hard | mix (every 6th study hard)")
    p.add_argument("--processes", type=int, default=1, help="processes generating phantoms")
    p.add_argument("--cache", type=Path, help="pickle of the generated phantom samples (read if present, else written)")
    p.add_argument("--max-side", type=int, default=768, help="shrink cached images to this longest side")
    p.add_argument("--steps", type=int, default=0, help="optimiser steps (overrides --epochs)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=256, help="model input side in pixels")
    p.add_argument("--widths", default="16,32,64", help="branch widths")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("xray_keypoints.pt"))
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes of training (0: none)")
    p.add_argument("--version", default=VERSION)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def load_samples(args: argparse.Namespace, *, seed: int, count: int) -> list[RawSample]:
    if args.data == "phantom":
        shape = {"native": None, "random": "random"}.get(args.shape) or tuple(int(v) for v in args.shape.lower().split("x"))
        it = phantom_samples(seed, count, shape=shape, difficulty=args.difficulty, max_side=args.max_side,
                             processes=args.processes)
        return list(tqdm(it, total=3 * count, desc="phantoms", disable=args.no_progress, unit="img"))
    folder = Path(args.data)
    if not folder.is_dir():
        raise SystemExit(f"--data: {folder} is neither 'phantom' nor a folder")
    cocos = sorted(folder.glob("*.json"))
    label_map = json.loads(args.label_map.read_text()) if args.label_map else None
    if len(cocos) == 1 and "annotations" in json.loads(cocos[0].read_text()):
        return coco_samples(cocos[0], folder)
    return labelme_samples(folder, label_map)


def export(model: KeypointNet, path: Path, *, net: NetworkConfig, loss: LossConfig, aug: AugmentConfig, version: str,
           sigma_scale: float = 1.0, trained: dict | None = None, metrics: dict | None = None) -> None:
    """Write the weights file (an ``xray_keypoints`` checkpoint, architecture ``single``): the fp16 network +
    everything the predictor needs."""
    save_checkpoint(path, "xray_keypoints", version, {"network": model}, {
        "architecture": "single", "network": net.to_dict(), "loss": loss.to_dict(), "augment": asdict(aug),
        "sigma_scale": sigma_scale, "trained": trained or {}, "metrics": metrics or {}})


def cli(argv: list[str] | None = None) -> int:
    """Route (module docstring): ``cascade``, ``single``, ``--from-corrections``, else the cascade fine-tune."""
    import sys

    rest = sys.argv[1:] if argv is None else list(argv)
    if rest and rest[0] == "cascade":
        from models.xray_keypoints import cascade_train

        return cascade_train.cli(rest[1:])
    if rest and rest[0] == "single":
        return train_single(rest[1:])
    if any(a == "--from-corrections" or a.startswith("--from-corrections=") for a in rest):
        from models.xray_keypoints import corrections_train

        return corrections_train.cli(rest)
    from models.xray_keypoints import finetune

    return finetune.cli(rest)


def train_single(argv: list[str]) -> int:
    """The one-stage network of 1.0.0 (``cspine-node train xray single ...``)."""
    args = parse_args(argv)
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    net_cfg = NetworkConfig(widths=tuple(int(v) for v in args.widths.split(",")))
    loss_cfg = LossConfig()
    aug = AugmentConfig(size=args.size)
    if args.cache and args.cache.is_file():
        with args.cache.open("rb") as fh:
            samples = pickle.load(fh)
        print(f"loaded {len(samples)} cached samples from {args.cache}")
    else:
        samples = load_samples(args, seed=args.seed * 100_000, count=args.studies)
        if args.cache:
            with args.cache.open("wb") as fh:
                pickle.dump(samples, fh, protocol=pickle.HIGHEST_PROTOCOL)
    if not samples:
        raise SystemExit("no training samples")
    ds = KeypointDataset(samples, aug, seed=args.seed)
    steps_per_epoch = max(1, len(ds) // args.batch)
    total = args.steps or args.epochs * steps_per_epoch
    model = KeypointNet(net_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    t_start = time.time()

    def progress(s: int) -> float:
        """Fraction of training done: by steps, or by time under --time-limit, whichever is further."""
        by_time = (time.time() - t_start) / (args.time_limit * 60) if args.time_limit else 0.0
        return min(1.0, max(s / total, by_time))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, progress(s), warmup=100, floor=0.02))
    ckpt_path = args.out.with_suffix(args.out.suffix + ".ckpt")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # training state: tensors and numbers
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step = int(ck["step"])
        print(f"resumed from {ckpt_path} at step {step}")
    print(f"{len(samples)} training images, model {count_parameters(model) / 1e6:.2f} M parameters, {total} steps")
    t0 = time.time()
    history: list[dict[str, float]] = []
    bar = tqdm(total=total, initial=step, desc="train xray", disable=args.no_progress)
    model.train()
    stop = False
    while step < total and not stop:
        ds.epoch = step // steps_per_epoch
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
                            generator=torch.Generator().manual_seed(args.seed + step), persistent_workers=False)
        for batch in loader:
            out = model(batch["image"])
            loss, parts = multitask_loss(out, batch, loss_cfg, measure_scale=min(1.0, max(0.0, progress(step) - 0.15) / 0.25))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), **parts})
            bar.update(1)
            bar.set_postfix(loss=f"{parts['heatmap']:.3f}", px=f"{parts['px_error']:.2f}")
            if step % args.checkpoint_every == 0 or step >= total:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "step": step}, ckpt_path)
                recent = history[-50:]
                print(f"step {step} loss {np.mean([h['loss'] for h in recent]):.4f} px_error "
                      f"{np.mean([h['px_error'] for h in recent]):.3f} elapsed {(time.time() - t0) / 60:.1f} min", flush=True)
            if step >= total or (args.time_limit and time.time() - t0 > args.time_limit * 60):
                stop = True
                break
    bar.close()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step}, ckpt_path)
    model.eval()
    trained = {"data": args.data, "studies": args.studies, "shape": args.shape, "difficulty": args.difficulty, "steps": step,
               "batch": args.batch, "lr": args.lr, "seed": args.seed, "minutes": round((time.time() - t0) / 60, 1)}
    export(model, args.out, net=net_cfg, loss=loss_cfg, aug=aug, version=args.version, trained=trained)
    print(f"wrote {args.out} after {step} steps ({trained['minutes']} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
