"""Train the MRI disc localiser and level classifier on synthetic phantoms (CPU is enough).

``python -m models.mri.train --out models/mri/mri_v1.pt`` (renderer A only), or with ``--b-count``,
``--a-shift-count`` and ``--views`` the domain-randomised mix of renderer A, renderer B (T2 and some T1/STIR) and
the shift suite read through the pipeline's own preprocessing (``data.make_mixed_dataset``; the shipped
``mri_v2.pt``, command in the model card; see ``--help``); ``--dr`` adds the domain randomisation of
``models.mri.augment`` (off by default). Weights are saved in fp16
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
from torch import nn

from models.common.checkpoint import save_checkpoint
from models.common.metrics import roc_auc
from models.common.training import seed_everything
from models.mri import DEFAULT_WEIGHTS, augment
from models.mri.data import heatmaps, make_dataset, make_mixed_dataset, mixed_plan
from models.mri.network import ANCHOR_OUT, CLASSIFIER_OUT, LOCALISER_OUT, DiscLocaliser, LevelClassifier
from models.mri.predictor import MriPredictor, decode_heatmaps, spatial_softmax
from models.mri.user_data import UserLabelError, merge, user_dataset

VERSION = "mri-2.0.0"
"""Version of the weights this script trains (``mri-1.0.0``: renderer A only, one centred localiser window)."""


def _augment_intensity(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    shape = (n,) + (1,) * (x.ndim - 1)
    scale = 0.8 + 0.4 * torch.rand(shape, generator=g)
    gamma = 0.8 + 0.4 * torch.rand(shape, generator=g)
    x = x.clamp(min=0) ** gamma * scale
    return x + 0.02 * torch.randn(x.shape, generator=g)


def _augment_bias(x: torch.Tensor, g: torch.Generator, strength: float = 0.5) -> torch.Tensor:
    """Multiply (n, c, h, w) images by a random smooth coil-bias field exp(linear + quadratic ramp), per image, and
    add Rician-like noise of a random level."""
    n, _, h, w = x.shape
    yy = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    xx = torch.linspace(-1, 1, w)[None, :].expand(h, w)
    c = (torch.rand((n, 5), generator=g) * 2 - 1) * strength
    field = (c[:, 0, None, None] * xx + c[:, 1, None, None] * yy + c[:, 2, None, None] * xx * yy
             + c[:, 3, None, None] * xx**2 + c[:, 4, None, None] * yy**2)
    x = x * torch.exp(field)[:, None]
    sigma = 0.06 * torch.rand((n, 1, 1, 1), generator=g)
    return torch.hypot(x + sigma * torch.randn(x.shape, generator=g), sigma * torch.randn(x.shape, generator=g))


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


def localiser_batch(x: torch.Tensor, hm: torch.Tensor, mk: torch.Tensor, centres: torch.Tensor, idx: torch.Tensor,
                    g: torch.Generator, shift_px: int, dr: tuple[str, ...] = ()) -> tuple[torch.Tensor, ...]:
    """One augmented localiser batch (rows ``idx``) -> images, heatmap targets, masks. Without ``dr`` (the default)
    the same random draws as before domain randomisation: a batch translation, bias field and noise, intensity."""
    if dr:
        xb, hb, mb = augment.localiser_batch(x[idx], centres[idx], mk[idx], g, dr)
        if "fov" not in dr:
            xb, hb, mb = _shift([xb, hb, mb], g, shift_px)
    else:
        xb, hb, mb = _shift([x[idx], hm[idx], mk[idx]], g, shift_px)
    return _augment_intensity(_augment_bias(xb, g), g), hb, mb


def classifier_batch(x: torch.Tensor, g: torch.Generator, dr: tuple[str, ...] = ()) -> torch.Tensor:
    """One augmented batch of level crops (without ``dr`` the draws of before: bias field and noise, intensity)."""
    if dr:
        x = augment.classifier_batch(x, g, dr)
    return _augment_intensity(_augment_bias(x, g, 0.3), g)


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(n, H, W) logits, (n, H, W) non-negative targets -> mean cross-entropy of the spatial softmax against the
    target normalised to sum 1 (as the level heatmaps' loss)."""
    t = target.flatten(1) + 1e-12
    t = t / t.sum(-1, keepdim=True)
    return -(t * F.log_softmax(logits.flatten(1), -1)).sum(-1).mean()


def anchor_targets(points: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, m, 2) anchor points (C2 body centre, then disc centres; NaN: none) -> C2 heatmaps (n, H, W), any-disc
    heatmaps (n, H, W: the sum of every disc's Gaussian) and (n,) bool: the window has anchor truth."""
    ok = torch.isfinite(points[:, 0]).all(-1)
    p = torch.nan_to_num(points, nan=-1e4)
    hm = augment.centre_heatmaps(p, size)
    return hm[:, 0], hm[:, 1:].sum(1), ok


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
                       pos: float = 0.85) -> torch.Tensor:
    """Penalty-reduced focal loss of per-pixel sigmoid heatmaps (CenterNet's) against Gaussian ``target`` (peak 1
    at each object): every object is found on its own, none competes with another for mass as in a spatial
    softmax. Pixels with ``target >= pos`` are the positives; the loss is normalised by their number."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    is_pos = target >= pos
    loss_pos = -((1 - p) ** alpha * torch.log(p))[is_pos].sum()
    loss_neg = -((1 - target) ** beta * p**alpha * torch.log(1 - p))[~is_pos].sum()
    return (loss_pos + loss_neg) / is_pos.sum().clamp(min=1)


def anchor_loss(out: torch.Tensor, points: torch.Tensor, c2_seen: torch.Tensor, focal: bool = False) -> torch.Tensor:
    """Loss of the two anchor channels (``out[:, 7:9]``): soft cross-entropy on the C2-body map where C2 is in the
    window and visible, and on the any-disc map where the window has anchor truth (``focal``: the any-disc map is
    a per-pixel sigmoid map trained with ``focal_heatmap_loss`` on the Gaussians' maximum instead)."""
    c2, discs, ok = anchor_targets(points, out.shape[-1])
    loss = out.new_zeros(())
    k = LOCALISER_OUT
    if (ok & c2_seen).any():
        m = ok & c2_seen
        loss = loss + _soft_ce(out[m, k], c2[m])
    if ok.any() and focal:
        p = torch.nan_to_num(points[ok, 1:], nan=-1e4)
        loss = loss + focal_heatmap_loss(out[ok, k + 1], augment.centre_heatmaps(p, out.shape[-1]).amax(1))
    elif ok.any():
        loss = loss + _soft_ce(out[ok, k + 1], discs[ok])
    return loss


def train_localiser(data: dict, val: dict, epochs: int, batch: int, lr: float, seed: int,
                    channels: tuple[int, ...] = (16, 32, 64, 128), shift_px: int = 0,
                    init: dict | None = None, dr: tuple[str, ...] = (), anchors: bool = False,
                    focal: bool = False
                    ) -> tuple[DiscLocaliser, dict]:
    """``anchors`` (``--anchor``; needs ``data["loc_anchors"]`` and ``dr`` with ``fov``): the localiser has the two
    anchor channels (``network.ANCHOR_OUT``), trained with ``anchor_loss``; the other random draws as without."""
    seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    net = DiscLocaliser(channels, anchors=anchors)
    if init is not None:
        net.load_state_dict(init)
    elif focal:  # start the sigmoid any-disc map at p = 0.1 everywhere (CenterNet's prior), not 0.5
        tops = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
                and m.out_channels == LOCALISER_OUT + ANCHOR_OUT and m.bias is not None]
        with torch.no_grad():
            for m in tops:
                m.bias[LOCALISER_OUT + 1] = float(np.log(0.1 / 0.9)) / len(tops)
    dice = DiceLoss(sigmoid=True, batch=True)  # the discs are small: Dice balances them against the background
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.from_numpy(data["loc_image"][:, None])
    hm = torch.from_numpy(np.stack([heatmaps(c) for c in data["loc_centres"]]))
    mk = torch.from_numpy(data["loc_masks"].astype(np.float32))
    has = torch.from_numpy(data.get("loc_has_mask", np.ones(len(x), bool)).astype(bool))  # masks: plain A only
    centres = torch.from_numpy(np.asarray(data["loc_centres"], np.float32))
    anc = torch.from_numpy(np.asarray(data["loc_anchors"], np.float32)) if anchors else None
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
            if anc is not None:
                xb, hb, mb, ab, seen = augment.localiser_batch_anchors(x[idx], centres[idx], mk[idx], anc[idx], g, dr)
                xb = _augment_intensity(_augment_bias(xb, g), g)
            else:
                xb, hb, mb = localiser_batch(x, hm, mk, centres, idx, g, shift_px, dr)
            out = net(xb)
            target = hb.flatten(2) + 1e-12
            target = target / target.sum(-1, keepdim=True)
            ce = -(target * F.log_softmax(out[:, :5].flatten(2), -1)).sum(-1).mean()
            hb_ = has[idx]
            loss = ce
            if hb_.any():
                om, mm = out[hb_, 5:LOCALISER_OUT], mb[hb_]
                loss = loss + F.binary_cross_entropy_with_logits(om, mm) + dice(om, mm)
            if anc is not None:
                loss = loss + anchor_loss(out, ab, seen, focal)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        m = validation_errors(net, val, anchors)
        extra = f" C2 error {m['val_c2_error_px128']:.2f} px" if "val_c2_error_px128" in m else ""
        print(f"localiser epoch {ep + 1}/{epochs} loss {tot / n:.4f} val error {m['val_error_px128']:.2f} px(128)"
              f"{extra} {time.time() - t0:.0f}s", flush=True)
    return net, (m if epochs else validation_errors(net, val, anchors))  # the last epoch's: the final weights


@torch.no_grad()
def validation_errors(net: DiscLocaliser, val: dict, anchors: bool = False) -> dict[str, float]:
    """Mean distance (localiser px, 128 grid) over the validation windows of the decoded disc centres from the truth
    (``val_error_px128``) and, with ``anchors`` and anchor truth in ``val``, of the C2-body channel's peak
    (``val_c2_error_px128``, windows whose C2 is known); one forward pass for both."""
    net.eval()
    out = net(torch.from_numpy(val["loc_image"][:, None])).numpy()
    errs = [np.hypot(*(decode_heatmaps(spatial_softmax(o[:5]))[0] - c).T)
            for o, c in zip(out, val["loc_centres"], strict=True)]
    m = {"val_error_px128": float(np.mean(errs))}
    if anchors and "loc_anchors" in val:
        c2 = [float(np.hypot(*(decode_heatmaps(spatial_softmax(o[LOCALISER_OUT:LOCALISER_OUT + 1]))[0][0] - a[0])))
              for o, a in zip(out, val["loc_anchors"], strict=True) if np.isfinite(a[0]).all()]
        m["val_c2_error_px128"] = float(np.mean(c2)) if c2 else float("nan")
    return m


def _class_arrays(d: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten phantom-level arrays into (mid crops, mid labels (disc, canal)), (side crops, side labels)."""
    k = d["mid_crops"].shape[1]
    mid = d["mid_crops"].reshape(-1, *d["mid_crops"].shape[-3:])
    ml = np.repeat(d["labels"][:, None, :, :2], k, 1).reshape(-1, 2)
    side = d["side_crops"].reshape(-1, *d["side_crops"].shape[-3:])
    sl = np.repeat(d["labels"][:, None, :, 2:], k, 1).reshape(-1)
    return (torch.from_numpy(mid.astype(np.float32)), torch.from_numpy(ml.astype(np.float32)),
            torch.from_numpy(side.astype(np.float32)), torch.from_numpy(sl.astype(np.float32)))


def train_classifier(data: dict, val: dict, epochs: int, batch: int, lr: float, seed: int,
                     init: dict | None = None, dr: tuple[str, ...] = ()) -> tuple[LevelClassifier, dict]:
    seed_everything(seed + 1)
    g = torch.Generator().manual_seed(seed + 1)
    net = LevelClassifier()
    if init is not None:
        net.load_state_dict(init)
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
            om = net(classifier_batch(xm[im], g, dr))
            os_ = net(classifier_batch(xs[js], g, dr))
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


def _dataset(seeds: range, cache: Path | None, plan: list | None = None, views: int = 1,
             anchors: bool = False) -> dict | None:
    """Samples of plain renderer-A ``seeds`` or, with ``plan`` (``data.mixed_plan``), of the mixed set."""
    if plan is None and len(seeds) == 0:
        return None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    d = make_mixed_dataset(plan, views, anchors=anchors) if plan is not None else make_dataset(seeds)
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
    ap.add_argument("--a-shift-seed", type=int, default=400_000, help="first seed of the shifted renderer-A studies")
    ap.add_argument("--a-shift-count", type=int, default=0)
    ap.add_argument("--b-seed", type=int, default=300_000, help="first seed of the renderer-B studies")
    ap.add_argument("--b-count", type=int, default=0)
    ap.add_argument("--extra-fraction", type=float, default=0.25, help="share of B studies also holding T1/STIR")
    ap.add_argument("--c-seed", type=int, default=500_000, help="first seed of the renderer-C studies")
    ap.add_argument("--c-count", type=int, default=0)
    ap.add_argument("--val-b-seed", type=int, default=810_000)
    ap.add_argument("--val-b-count", type=int, default=0)
    ap.add_argument("--a-upper", type=float, default=0.0, metavar="P",
                    help="fraction of the plain renderer-A training phantoms rendered with the anatomy above C2 "
                    "(pipelines.phantoms.mri.upper; needs the mixed plan, e.g. --views 3); default 0: as before")
    ap.add_argument("--views", type=int, default=1, help="localiser windows per series (the first is the inference "
                    "window, the others random: offset, scale, rotation)")
    ap.add_argument("--init", type=Path, default=None, help="start both networks from these weights")
    ap.add_argument("--data-only", action="store_true", help="build (and cache) the data, then stop")
    ap.add_argument("--only", choices=["localiser", "classifier"], default=None,
                    help="train one network and keep the other from --out")
    ap.add_argument("--user-data", type=Path, nargs="+", default=None, metavar="FOLDER",
                    help="annotated site series (models/mri/user_data.py layout), added to the phantoms "
                    "(--train-count 0: user series only)")
    ap.add_argument("--user-repeat", type=int, default=1, help="repeat the user series N times in the mix")
    ap.add_argument("--user-val", type=Path, nargs="+", default=None, metavar="FOLDER",
                    help="annotated site series for validation (instead of the phantom validation set)")
    ap.add_argument("--dr", nargs="+", default=[], metavar="NAME",
                    help="domain randomisation (models/mri/augment.py): any of " + ", ".join(augment.NAMES)
                    + "; all = " + " ".join(augment.ALL) + "; default none (the batches of before)")
    ap.add_argument("--anchor", action="store_true",
                    help="level identification by anatomy: two more localiser channels (C2 vertebral-body centre, "
                    "any disc), trained on the plain renderer-A phantoms' own geometry (needs the mixed plan and "
                    "--dr with fov; a separate --cache); the predictor then counts the levels down from C2 "
                    "(predictor.count_chain). Default off: the networks and weights format of before")
    ap.add_argument("--anchor-focal", action="store_true",
                    help="with --anchor: the any-disc channel as a per-pixel sigmoid map (focal loss) instead of a "
                    "spatial softmax (train.focal_heatmap_loss)")
    ap.add_argument("--anchor-decoder", choices=("count", "count-skip", "chain", "off"), default=None,
                    help="with --anchor: the decoding written into the weights' config (MriPredictor.anchor_decoder)")
    ap.add_argument("--version", default=None, help="version of the written weights (default mri-2.0.0, "
                    "mri-2.0.0+site with --user-data)")
    args = ap.parse_args(argv)
    try:
        dr = augment.parse(args.dr)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(args.threads)
    t0 = time.time()
    mixed = args.b_count > 0 or args.c_count > 0 or args.a_shift_count > 0 or args.views > 1
    if args.anchor and (not mixed or "fov" not in dr):
        ap.error("--anchor needs the mixed plan (e.g. --views 3) and --dr with fov (e.g. --dr all)")
    if (args.anchor_focal or args.anchor_decoder) and not args.anchor:
        ap.error("--anchor-focal and --anchor-decoder need --anchor")
    if args.a_upper and not mixed:
        ap.error("--a-upper needs the mixed plan (--views > 1, --a-shift-count or --b-count)")
    if args.train_count == 0 and not mixed and not args.user_data:
        ap.error("no training data: --train-count 0 needs --user-data or other phantoms")
    # the user's series first: a bad label file stops before minutes of phantom rendering
    try:
        va = user_dataset(args.user_val, 1, args.seed + 1) if args.user_val else None
        user = user_dataset(args.user_data, args.views, args.seed) if args.user_data else None
    except UserLabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tr = _dataset(range(args.train_seed, args.train_seed + args.train_count),
                  args.cache.with_suffix(".train.npz") if args.cache else None,
                  mixed_plan(args.train_seed, args.train_count, args.a_shift_seed, args.a_shift_count, args.b_seed,
                             args.b_count, args.extra_fraction, args.a_upper, args.c_seed, args.c_count)
                  if mixed else None, args.views,
                  args.anchor)
    if va is None:
        va = _dataset(range(args.val_seed, args.val_seed + args.val_count),
                      args.cache.with_suffix(".val.npz") if args.cache else None,
                      mixed_plan(args.val_seed, args.val_count, 0, 0, args.val_b_seed, args.val_b_count, 0.0)
                      if mixed else None, 1, args.anchor)
    if user is not None:
        print(f"user data: {len(user['labels'])} series from {len(args.user_data)} folder(s), annotated slice "
              f"{float(user['off_slice_mm'].max()):.1f} mm or less from the analysed one", flush=True)
        tr = merge(tr, user, repeat_last=args.user_repeat)
    if tr is None or va is None:
        ap.error("no training data" if tr is None else "no validation data: --val-count 0 needs --user-val")
    print(f"data: {len(tr['labels'])} train / {len(va['labels'])} val series, prevalence "
          f"{tr['labels'].reshape(-1, 4).mean(0).round(3).tolist()} ({time.time() - t0:.0f}s)", flush=True)
    if args.data_only:
        return 0
    old = MriPredictor.read_checkpoint(args.out) if args.only and args.out.exists() else None
    init = MriPredictor.read_checkpoint(args.init) if args.init else None
    if init is not None:
        args.loc_channels = init.meta["config"].get("loc_channels", args.loc_channels)
    metrics: dict = dict(old.meta.get("metrics", {})) if old else {}
    if args.only != "classifier":
        loc, m = train_localiser(tr, va, args.loc_epochs, args.batch, args.lr, args.seed,
                                 tuple(args.loc_channels), args.loc_shift, init.parts["localiser"] if init else None,
                                 dr, args.anchor, args.anchor_focal)
        metrics.update(m)
        loc_state = loc.state_dict()
    else:
        loc_state = old.parts["localiser"]
        args.loc_channels = old.meta["config"].get("loc_channels", [16, 32, 64, 128])
    if args.only != "localiser":
        cls, m = train_classifier(tr, va, args.cls_epochs, args.cls_batch, args.lr, args.seed,
                                  init.parts["classifier"] if init else None, dr)
        metrics.update(m)
        cls_state = cls.state_dict()
    else:
        cls_state = old.parts["classifier"]
    metrics["train_seconds"] = round(time.time() - t0, 1)
    config = {"version": VERSION, "train_seeds": [args.train_seed, args.train_count],
              "val_seeds": [args.val_seed, args.val_count], "loc_epochs": args.loc_epochs,
              "cls_epochs": args.cls_epochs, "loc_channels": list(args.loc_channels), "loc_shift": args.loc_shift, "lr": args.lr, "seed": args.seed,
              "domain_randomisation": list(dr),
              **({"anchor": True} if args.anchor else {}),
              **({"anchor_disc": "focal"} if args.anchor_focal else {}),
              **({"anchor_decoder": args.anchor_decoder} if args.anchor_decoder else {}),
              "weighting": "T2" if not mixed else "T2 (+T1/STIR of B)",
              "mixed": {"a_plain": [args.train_seed, args.train_count], "a_shifted": [args.a_shift_seed, args.a_shift_count],
                        "b": [args.b_seed, args.b_count], "extra_fraction": args.extra_fraction, "views": args.views,
                        "val_b": [args.val_b_seed, args.val_b_count], "init": str(args.init) if args.init else None,
                        "a_upper": args.a_upper, "c": [args.c_seed, args.c_count],
                        "loc_windows": int(len(tr["loc_image"])), "series": int(len(tr["labels"]))} if mixed else None,
              "classifier_outputs": list(CLASSIFIER_OUT), "command": "python -m models.mri.train " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.user_data:
        config["user_data"] = {"folders": [str(f) for f in args.user_data], "series": int(len(user["labels"])),
                               "repeat": args.user_repeat, "val": [str(f) for f in args.user_val or []]}
    version = args.version or (f"{VERSION}+site" if args.user_data else VERSION)
    config["version"] = version
    save_checkpoint(args.out, "mri", version, {"localiser": loc_state, "classifier": cls_state},
                    {"config": config, "metrics": metrics})
    print(json.dumps(metrics, indent=1))
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
