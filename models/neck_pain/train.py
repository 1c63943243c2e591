"""Train the neck-pain recovery network (or one of its ablations) on cached phantom pairs (one CPU thread).

    python -m models.neck_pain.data --out /tmp/neck/train_a.npz --first 0 --count 1200
    python -m models.neck_pain.train --data /tmp/neck/train_a.npz /tmp/neck/train_b.npz --val-last 300 \\
        --variant full --max-steps 700 --eval-every 50 --out models/neck_pain/neck_pain_v1.pt

Variants: ``full`` (ABPDC + FPRAN + clinical), ``no-abpdc`` (plain concatenation), ``no-fpran`` (no
registration, no auxiliary loss), ``image-only`` (no clinical branch), ``clinical-only``.
Loss: binary cross-entropy on the outcome + ``--aux-weight`` x the FPRAN alignment loss. Clinical
variables are dropped at random during training (each with p = 0.25; with p = 0.2 all but age and sex,
as in the node where only PatientAge/PatientSex are in the DICOM), so the model copes with missing ones.

Model selection: ``--val FILE.npz`` (separate patients) or ``--val-last N`` (the last ``N`` cases of the
concatenated ``--data``, then excluded from training) is evaluated every ``--eval-every`` steps (all clinical
variables known, no augmentation); the checkpoint with the best validation ``--select`` metric (``bce``, the
log loss, or ``auc``) is what is saved, with the chosen step, its validation metrics and the whole validation
curve in the weights' meta. Never select on the held-out test set.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from models.common.checkpoint import save_checkpoint
from models.common.metrics import brier, log_loss, roc_auc
from models.common.training import cosine_lr, run_steps, seed_everything
from models.neck_pain.inputs import INPUT
from models.neck_pain.network import VARIANTS, NeckPainNet, alignment_loss, count_parameters, make_net

VERSION = "1"


def load_pairs(paths: list[Path]) -> dict[str, torch.Tensor]:
    ds = [np.load(p) for p in paths]
    cat = {k: np.concatenate([d[k] for d in ds]) for k in ("xray", "mri", "theta", "label", "clinical", "clinical_mask", "p_true", "seeds")}
    return {
        "xray": torch.from_numpy(cat["xray"]).unsqueeze(1), "mri": torch.from_numpy(cat["mri"]).unsqueeze(1),
        "theta": torch.from_numpy(cat["theta"].astype(np.float32)), "label": torch.from_numpy(cat["label"].astype(np.float32)),
        "clinical": torch.from_numpy(cat["clinical"].astype(np.float32)),
        "clinical_mask": torch.from_numpy(cat["clinical_mask"].astype(np.float32)),
        "p_true": torch.from_numpy(cat["p_true"].astype(np.float32)), "seeds": torch.from_numpy(cat["seeds"]),
    }


def take(d: dict[str, torch.Tensor], sl: slice) -> dict[str, torch.Tensor]:
    return {k: v[sl] for k, v in d.items()}


def drop_clinical(mask: torch.Tensor, gen: torch.Generator, p_each: float = 0.25, p_dicom_only: float = 0.2) -> torch.Tensor:
    keep = (torch.rand(mask.shape, generator=gen) >= p_each).float()
    dicom_only = (torch.rand(mask.shape[0], 1, generator=gen) < p_dicom_only).float()
    only_age_sex = torch.zeros_like(mask)
    only_age_sex[:, :2] = 1
    return mask * (keep * (1 - dicom_only) + only_age_sex * dicom_only)


def grey_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random gamma and contrast per image (the two modalities' grey levels vary between devices)."""
    b = x.shape[0]
    gamma = torch.exp(torch.randn(b, 1, 1, 1, generator=gen) * 0.2)
    gain = 1 + torch.randn(b, 1, 1, 1, generator=gen) * 0.1
    return (x.clamp(0, 1) ** gamma * gain).clamp(0, 1.2)


def save(net: NeckPainNet, out: Path, meta: dict) -> None:
    """Write a ``neck_pain`` checkpoint (fp16, part ``network``); ``meta["version"]`` is its version."""
    save_checkpoint(out, "neck_pain", str(meta.get("version", VERSION)), {"network": net},
                    {k: v for k, v in meta.items() if k != "version"})


def load(path: Path | str) -> tuple[NeckPainNet, dict]:
    """The network (eval mode, CPU) and the meta of a ``neck_pain`` checkpoint."""
    from models.neck_pain.predictor import NeckPainPredictor

    pred = NeckPainPredictor.load(path)
    return pred.net, pred.meta


def val_metrics(net: NeckPainNet, d: dict[str, torch.Tensor]) -> dict[str, float]:
    """AUC, log loss (BCE) and Brier of ``net`` on ``d`` (all clinical variables known); leaves ``net`` in eval mode."""
    from models.neck_pain.evaluate import predict

    net.eval()
    p, err = predict(net, d, "all")
    y = d["label"].numpy().astype(bool)
    out = {"auc": roc_auc(y, p), "bce": log_loss(y, p, eps=1e-6), "brier": brier(y, p)}
    if err is not None:
        out["alignment_error_px"] = err
    return out


def _better(a: dict[str, float], b: dict[str, float] | None, select: str) -> bool:
    if b is None:
        return True
    return a["auc"] > b["auc"] if select == "auc" else a["bce"] < b["bce"]


def train(data: list[Path], out: Path, variant: str, minutes: float, seed: int, batch: int, lr: float,
          aux_weight: float = 1.0, max_steps: int | None = None, *, val: Path | None = None, val_last: int = 0,
          eval_every: int = 50, select: str = "bce", weight_decay: float = 1e-4, init: Path | None = None,
          version: str | None = None, names: dict[str, str] | None = None) -> dict:
    """Train; with a validation set (``val`` file or the last ``val_last`` cases of ``data``) the saved weights
    are the best-by-validation checkpoint (evaluated every ``eval_every`` steps and at the end). ``init``: start from
    these weights (fine-tuning; their variant must be ``variant``); ``version`` of the written weights (default
    ``VERSION``, ``<init version>+site`` with ``init``); ``names``: how the meta names some data files (a table's
    temporary arrays by the table)."""
    names = names or {}
    if select not in ("bce", "auc"):
        raise ValueError("select must be 'bce' or 'auc'")
    if val is not None and val_last:
        raise ValueError("give either val or val_last, not both")
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    d = load_pairs(data)
    dv: dict[str, torch.Tensor] | None = None
    if val_last:
        if not 0 < val_last < len(d["label"]):
            raise ValueError(f"val_last must be in 1..{len(d['label']) - 1}")
        dv = take(d, slice(len(d["label"]) - val_last, None))
        d = take(d, slice(0, len(d["label"]) - val_last))
    elif val is not None:
        dv = load_pairs([val])
    if dv is not None and set(d["seeds"].tolist()) & set(dv["seeds"].tolist()):
        raise ValueError("validation patients overlap the training patients")
    n = len(d["label"])
    net = make_net(variant)
    if init is not None:
        from models.neck_pain.predictor import NeckPainPredictor

        ck = NeckPainPredictor.read_checkpoint(init)
        if ck.meta.get("variant") != variant:
            raise ValueError(f"--init {init} is variant {ck.meta.get('variant')!r}, not {variant!r}")
        net.load_state_dict(ck.part("network"))
        version = version or f"{ck.version}+site"
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    net.train()
    log: dict[str, list[float]] = {"bce": [], "align": []}
    curve: list[dict] = []
    best: dict = {"metrics": None, "step": None, "state": None}

    def validate(step: int) -> None:
        m = val_metrics(net, dv)
        curve.append({"step": step, **{k: round(v, 5) for k, v in m.items()}})
        if _better(m, best["metrics"], select):
            best.update(metrics=m, step=step, state={k: v.detach().clone() for k, v in net.state_dict().items()})
        print(f"val step {step}: auc {m['auc']:.3f} bce {m['bce']:.4f} brier {m['brier']:.4f}"
              f"{' *' if best['step'] == step else ''}", flush=True)
        net.train()

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, total, lr)
        idx = torch.randint(0, n, (batch,), generator=gen)
        x = grey_jitter(d["xray"][idx].float() / 255, gen)
        m = grey_jitter(d["mri"][idx].float() / 255, gen)
        mask = drop_clinical(d["clinical_mask"][idx], gen)
        logit, thetas = net(x, m, d["clinical"][idx], mask)
        bce = F.binary_cross_entropy_with_logits(logit, d["label"][idx])
        loss = bce
        if thetas is not None:
            al = alignment_loss(thetas, d["theta"][idx])
            loss = loss + aux_weight * al
            log["align"].append(float(al.detach()))
        log["bce"].append(float(bce.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dv is not None and (step + 1) % eval_every == 0:
            validate(step + 1)
        return float(loss.detach())

    t0 = time.time()
    steps = run_steps(step_fn, minutes, max_steps)
    meta = {"arch": "neck-pain-abpdc-fpran", "version": version or VERSION, "init": str(init) if init else None, "variant": variant, "config": net.config,
            "input_size": INPUT, "parameters": count_parameters(net), "steps": steps, "batch": batch, "lr": lr,
            "weight_decay": weight_decay, "aux_weight": aux_weight, "seed": seed, "train_cases": n,
            "train_seconds": round(time.time() - t0, 1),
            "final_bce": float(np.mean(log["bce"][-50:])) if log["bce"] else None,
            "final_align": float(np.mean(log["align"][-50:])) if log["align"] else None,
            "data": [names.get(str(p), str(p)) for p in data]}
    if dv is not None:
        if not curve or curve[-1]["step"] != steps:
            validate(steps)
        net.load_state_dict(best["state"])
        meta.update(selected_step=best["step"], select=select, eval_every=eval_every,
                    val={k: round(v, 5) for k, v in best["metrics"].items()}, val_final=curve[-1],
                    val_cases=int(len(dv["label"])), val_source=names.get(str(val), str(val)) if val is not None else f"last {val_last} of data",
                    val_seeds=[int(dv["seeds"].min()), int(dv["seeds"].max())] if int(dv["seeds"].min()) >= 0
                    else "site patients (user_data)", val_curve=curve)
    save(net.eval(), out, meta)
    return meta


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.neck_pain.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", default=[], help=".npz files from models.neck_pain.data "
                    "(phantoms) or models.neck_pain.user_data (site patients)")
    ap.add_argument("--table", type=Path, default=None, help="site patients (models/neck_pain/user_data.py layout): "
                    "analysed with the node's pipelines and added to --data")
    ap.add_argument("--val-table", type=Path, default=None, help="site patients for validation (instead of --val)")
    ap.add_argument("--copies", type=int, default=4, help="examples per --table patient (the first unjittered)")
    ap.add_argument("--init", type=Path, default=None, help="fine-tune from these weights (e.g. the shipped "
                    "models/neck_pain/neck_pain_v1.pt)")
    ap.add_argument("--version", default=None, help="version of the written weights")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--aux-weight", type=float, default=5.0)
    ap.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW (decoupled) weight decay")
    ap.add_argument("--val", type=Path, default=None, help="validation .npz (patients not in --data)")
    ap.add_argument("--val-last", type=int, default=0, help="hold out the last N cases of --data as validation")
    ap.add_argument("--eval-every", type=int, default=50, help="validation every N steps (and at the end)")
    ap.add_argument("--select", choices=("bce", "auc"), default="bce", help="validation metric of the saved checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data, val = list(args.data), args.val
    if args.table or args.val_table:
        import tempfile

        from models.neck_pain.user_data import FeatureExtractor, UserTableError, prepare, read_table

        tmp = Path(tempfile.mkdtemp(prefix="neck-user-"))
        names = {str(tmp / "site.npz"): f"table {args.table}", str(tmp / "site_val.npz"): f"table {args.val_table}"}
        try:
            for t in (args.table, args.val_table):
                if t is not None:
                    read_table(t)  # a bad table stops before the models are loaded
            ext = FeatureExtractor()
            if args.table:
                print(json.dumps(prepare(args.table, tmp / "site.npz", args.copies, args.seed, ext)), flush=True)
                data.append(tmp / "site.npz")
            if args.val_table:
                print(json.dumps(prepare(args.val_table, tmp / "site_val.npz", 1, args.seed, ext)), flush=True)
                val = tmp / "site_val.npz"
        except UserTableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
            return 2
    else:
        tmp, names = None, {}
    if not data:
        ap.error("no training data: give --data and/or --table")
    try:
        meta = train(data, args.out, args.variant, args.minutes, args.seed, args.batch, args.lr, args.aux_weight,
                     args.max_steps, val=val, val_last=args.val_last, eval_every=args.eval_every, select=args.select,
                     weight_decay=args.weight_decay, init=args.init, version=args.version, names=names)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
