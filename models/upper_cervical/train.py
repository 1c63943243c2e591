"""Train the CerviHFENet-style upper cervical classifier on phantom data (time-boxed, one CPU thread).

    python -m models.upper_cervical.train --data /tmp/uc_train.npz --out models/upper_cervical/cervihfenet_v1.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import save_checkpoint
from models.common.images import from_u8
from models.common.training import cosine_lr, run_steps, seed_everything
from models.curvature.augment import jitter_window
from models.upper_cervical.data import CONTEXT, INPUT
from models.upper_cervical.loss import ModifiedFocalLoss, label_relations
from models.upper_cervical.network import CerviHFENet
from pipelines.vocabulary import UPPER_CERVICAL_LABELS

VERSION = "1"


def train(data: Path, out: Path, minutes: float, seed: int, batch: int, lr: float,
          max_steps: int | None = None, per_view_jitter: float = 0.05) -> dict:
    """``per_view_jitter``: independent ROI jitter per view (fraction of the ROI side), since the deployed
    ROIs of the three views come from three separate locator runs."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    d = np.load(data)
    crops = torch.from_numpy(from_u8(d["crops"]) * 2 - 1)
    labels = torch.from_numpy(d["labels"].astype(np.float32))
    rel = label_relations(d["labels"])
    loss_fn = ModifiedFocalLoss(rel)
    net = CerviHFENet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, total, lr)
        idx = torch.from_numpy(rng.integers(0, len(labels), batch))
        x = jitter_window(crops[idx], INPUT, CONTEXT, generator=gen, rotate_deg=4.0, per_channel=per_view_jitter)
        loss = loss_fn(net(x), labels[idx], net.relation.matrix)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    t0 = time.time()
    steps = run_steps(step_fn, minutes, max_steps)
    meta = {"arch": "cervihfenet", "version": VERSION, "input_size": INPUT, "labels": list(UPPER_CERVICAL_LABELS),
            "relations": rel.to_dict(), "per_view_jitter": per_view_jitter, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
            "train_studies": len(labels), "train_seconds": round(time.time() - t0, 1), "data": str(data)}
    save_checkpoint(out, "upper_cervical", VERSION, {"network": net.eval()},
                    {k: v for k, v in meta.items() if k != "version"})
    return meta


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.upper_cervical.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help=".npz from models.upper_cervical.data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-view-jitter", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = train(args.data, args.out, args.minutes, args.seed, args.batch, args.lr, args.max_steps, args.per_view_jitter)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
