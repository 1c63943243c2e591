"""Train the CerviHFENet-style upper cervical classifier on phantom data (time-boxed, one CPU thread).

    python -m models.upper_cervical.train --data /tmp/uc_train.npz --out models/upper_cervical/cervihfenet_v1.pt

Fine-tuning on a site's annotated studies (``data`` makes the ``.npz`` from a COCO / labelme folder,
:mod:`models.upper_cervical.user_data`; several ``--data`` files are concatenated, e.g. yours and phantoms).
``--init shipped|FILE`` starts from those weights and keeps their label relations (the loss) and decision
thresholds; refit the thresholds on your validation studies with :mod:`models.upper_cervical.thresholds`::

    cspine-node train upper-cervical data --coco site/annotations.json --out /tmp/uc_user.npz
    cspine-node train upper-cervical --data /tmp/uc_user.npz /tmp/uc_train.npz --init shipped --out /tmp/uc_site.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.images import from_u8
from models.common.training import cosine_lr, run_steps, seed_everything
from models.common.user_labels import init_weights
from models.curvature.augment import jitter_window
from models.upper_cervical import DEFAULT_WEIGHTS
from models.upper_cervical.data import CONTEXT, INPUT
from models.upper_cervical.loss import LabelRelations, ModifiedFocalLoss, label_relations
from models.upper_cervical.network import CerviHFENet
from pipelines.vocabulary import UPPER_CERVICAL_LABELS

VERSION = "1"


def train(data: Path | list[Path], out: Path, minutes: float, seed: int, batch: int, lr: float,
          max_steps: int | None = None, per_view_jitter: float = 0.05, init: Path | None = None) -> dict:
    """``per_view_jitter``: independent ROI jitter per view (fraction of the ROI side), since the deployed
    ROIs of the three views come from three separate locator runs. ``data``: one or several ``.npz``
    (concatenated). ``init``: an ``upper_cervical`` checkpoint to fine-tune; its label relations and
    thresholds are kept."""
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    data = [data] if isinstance(data, Path) else list(data)
    files = [np.load(p) for p in data]
    crops_u8 = np.concatenate([f["crops"] for f in files])
    labels_np = np.concatenate([f["labels"] for f in files]).astype(np.float32)
    crops = torch.from_numpy(from_u8(crops_u8) * 2 - 1)
    labels = torch.from_numpy(labels_np)
    start = load_checkpoint(init, "upper_cervical") if init is not None else None
    if start is not None and list(start.meta.get("labels", [])) != list(UPPER_CERVICAL_LABELS):
        raise ValueError(f"{init}: labels {start.meta.get('labels')} differ from {list(UPPER_CERVICAL_LABELS)}")
    rel = LabelRelations.from_dict(start.meta["relations"]) if start is not None else label_relations(labels_np)
    loss_fn = ModifiedFocalLoss(rel)
    net = CerviHFENet()
    if start is not None:
        net.load_state_dict(start.part("network"))
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
            "train_studies": len(labels), "train_seconds": round(time.time() - t0, 1), "data": [str(p) for p in data]}
    if start is not None:
        meta["init"] = {"weights": str(init), "version": start.version}
        if "thresholds" in start.meta:  # kept until refitted on the site's validation studies (thresholds.py)
            meta["thresholds"] = start.meta["thresholds"]
            meta["thresholds_data"] = f"from {init} (not refitted after fine-tuning)"
    save_checkpoint(out, "upper_cervical", VERSION, {"network": net.eval()},
                    {k: v for k, v in meta.items() if k != "version"})
    return meta


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cspine-node train upper-cervical", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True,
                    help=".npz from models.upper_cervical.data (several: concatenated)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="default 2e-3 from scratch, 2e-4 with --init")
    ap.add_argument("--init", default=None, help="fine-tune: 'shipped' (the shipped weights) or a weights file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-view-jitter", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["data"]:  # cspine-node train upper-cervical data ...: the .npz from phantoms or a site's folder
        from models.upper_cervical.data import cli as data_cli

        return data_cli(list(argv[1:]))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        init = init_weights(args.init, DEFAULT_WEIGHTS)
    except FileNotFoundError as exc:
        ap.error(str(exc))
    lr = args.lr or (2e-4 if init is not None else 2e-3)
    meta = train(args.data, args.out, args.minutes, args.seed, args.batch, lr, args.max_steps, args.per_view_jitter,
                 init)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
