"""Train the coarse-to-fine cascade (``cascade.py``) on phantoms: ``cspine-node train xray cascade ...``.

Sub-commands (see MODEL_CARD.md for the exact commands of the shipped weights)::

    data   --studies 800 --processes 2 --out /tmp/xray_cascade/data.pkl     # generate phantoms once
    stage1 --data /tmp/xray_cascade/data.pkl --minutes 30 --out s1.ckpt    # global 12-point network
    stage2 --data /tmp/xray_cascade/data.pkl --minutes 30 --out s2.ckpt    # per-vertebra crop network
    export --stage1 s1.ckpt --stage2 s2.ckpt --out xray_keypoints_v2.pt    # fp16 weights file for the predictor

``data --coco FILE.json [--images DIR] | --labelme DIR [--phantom-studies N]`` reads a site's annotated radiographs
instead (``cascade_data.py``: reduced to the training size, not-labelled points masked), mixed with N phantom studies;
``cspine-node train xray --data FOLDER`` runs data, stage1 and stage2 from the shipped weights, and export in one go
(``finetune.py``). ``--steps`` caps a stage by steps. ``export`` takes over the spread scale, test-time variants and
interval calibration of the weights stage 1 started from (and says that they were not refitted).

``data --b-fraction 0.5 --tight-fraction 0.5 --shift-fraction 0.5`` mixes renderer B (tight C1-T1 fields without a
skull among them) and the shift suite into the views; ``stage1|stage2 --init WEIGHTS`` fine-tunes from a cascade
weights file (that stage's part).

Stage-2 crops are cut around jittered true centres (``--shift`` x the centre gap, +-``--rotation`` deg, scale
+-10 %) so that the network learns to correct stage-1 errors; half of the crops use a small jitter (the
second cascade iteration). Training checkpoints are written every ``--checkpoint-every`` steps.
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.training import seed_everything, warmup_cosine
from models.xray_keypoints.appearance import randomize
from models.xray_keypoints.cascade import (
    N_LEVELS,
    STAGE1_POINTS,
    STAGE2_POINTS,
    block_reduce,
    crop_transform,
    level_channel,
    reduction_factor,
    rotate,
    sample_crops,
    spine_frames,
    stage1_targets,
    vertebra_points,
)
from models.xray_keypoints.cascade_data import frame_points, level_labelled, stage1_labelled, user_views
from models.xray_keypoints.data import VIEW_ORDER, AugmentConfig, KeypointDataset, RawSample, shrink
from models.xray_keypoints.losses import LossConfig, multitask_loss
from models.xray_keypoints.network import KeypointNet, NetworkConfig, count_parameters

VERSION = "1.1.0"


@dataclass
class StoredView:
    """One phantom radiograph kept for training: uint8 image (bone bright), keypoints, view index."""

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    spacing_mm: tuple[float, float]
    view: int
    small: np.ndarray
    """float16 copy shrunk to a longest side <= 320 px (stage-1 input source)."""
    small_keypoints: np.ndarray
    labelled: np.ndarray | None = None
    """(30,) bool: the points an annotator placed (user data, ``cascade_data.py``); None: all (phantoms). Points
    not labelled are left out of the loss."""


def _study_views(seed: int, rows: tuple[int, int], difficulty: str, b_fraction: float = 0.0,
                 shift_fraction: float = 0.0, tight_fraction: float = 0.5) -> list[StoredView]:
    """The views of one phantom study: renderer A, or renderer B with probability ``b_fraction`` (then a tightly
    collimated C1-T1 field, no skull, with probability ``tight_fraction``), under one shift of the suite with
    probability ``shift_fraction`` (drawn from the study seed)."""
    from pipelines.phantoms.shifts import SUITE, shift_study
    from pipelines.phantoms.xray import generate_study
    from pipelines.phantoms.xray_b import generate_study_b
    from pipelines.results import View
    from pipelines.xray.preprocessing import to_unit_range

    rng = np.random.default_rng([seed, 98])
    r = int(rng.integers(rows[0], rows[1] + 1))
    shape = (r, int(r * rng.uniform(0.75, 1.05)))
    diff = ("hard" if seed % 6 == 5 else "realistic") if difficulty == "mix" else difficulty
    pick = np.random.default_rng([seed, 99])  # a separate stream: A-only data stay as they were
    if pick.random() < b_fraction:
        study = generate_study_b(seed, field="tight" if pick.random() < tight_fraction else "wide", max_size=r)
    else:
        study = generate_study(seed, shape=shape, difficulty=diff)
    if pick.random() < shift_fraction:
        study = shift_study(study, SUITE[int(pick.integers(len(SUITE)))])
    out = []
    for view, pv in study.views.items():
        img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
        sp = tuple(float(v) for v in pv.pixel_spacing_mm)
        raw = RawSample(img, np.asarray(pv.keypoints, float), np.asarray(pv.visible, bool), sp, VIEW_ORDER.index(View(view)))
        small = shrink(raw, 320)
        out.append(StoredView(np.round(img * 255).astype(np.uint8), raw.keypoints, raw.visible, sp, raw.view,
                              small.image.astype(np.float16), small.keypoints))
    return out


def cmd_data(args: argparse.Namespace) -> int:
    from functools import partial

    fn = partial(_study_views, rows=(args.rows_min, args.rows_max), difficulty=args.difficulty,
                 b_fraction=args.b_fraction, shift_fraction=args.shift_fraction, tight_fraction=args.tight_fraction)
    user = args.coco is not None or args.labelme is not None
    studies = args.studies if not user else (args.phantom_studies or 0)
    seeds = range(args.seed * 100_000, args.seed * 100_000 + studies)
    t0 = time.time()
    views: list[StoredView] = []
    if user:
        views += user_views(args)
    if not views and not studies:
        raise SystemExit("no training views: the annotations gave none and --phantom-studies is 0")
    if args.processes > 1 and studies:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.processes) as pool:
            for i, vs in enumerate(pool.imap(fn, seeds, chunksize=4)):
                views += vs
                if i % 100 == 0:
                    print(f"{i} studies {time.time() - t0:.0f} s", flush=True)
    else:
        for s in seeds:
            views += fn(s)
    if user:
        print(f"{studies} phantom studies ({3 * studies} views) mixed in")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("wb") as fh:
        pickle.dump(views, fh, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"wrote {len(views)} views to {args.out} in {time.time() - t0:.0f} s")
    return 0


class _Unpickler(pickle.Unpickler):
    """Resolves ``StoredView`` also when the file was written by ``python -m`` (class in ``__main__``)."""

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if name == "StoredView":
            return StoredView
        return super().find_class(module, name)


def _load(path: Path) -> list[StoredView]:
    with path.open("rb") as fh:
        return _Unpickler(fh).load()


# ---------------------------------------------------------------------------------------------- stage 2
@dataclass(frozen=True)
class CropConfig:
    """How stage-2 crops are cut (stored in the weights file; the predictor uses the same values)."""

    size: int = 128
    side_factor: float = 4.0
    """Crop side = this x the mean distance between adjacent body centres (about 70 mm)."""
    iterations: int = 2
    shift: float = 0.45
    """Training: centre jitter (uniform in a disc), fraction of the centre gap (0.45 ~ 8 mm)."""
    rotation_deg: float = 10.0
    scale: float = 0.1
    small_fraction: float = 0.5
    """Training: fraction of crops with a small jitter (shift / 5, rotation / 3, scale / 3)."""


def stage2_examples(views: list[StoredView], cfg: CropConfig, rng: np.random.Generator, appearance: float = 0.0
                    ) -> dict[str, torch.Tensor]:
    """All 6 vertebra crops of each view in ``views`` with augmentation: the stage-2 training batch.
    ``appearance``: probability of a crop's appearance being redrawn (``appearance.py``)."""
    images, targets, levels, known = [], [], [], []
    for v in views:
        lab = getattr(v, "labelled", None)
        if lab is None:
            pts12 = stage1_targets(v.keypoints)
            centres, sl = pts12[:N_LEVELS], pts12[N_LEVELS:]
            use = range(N_LEVELS)
        else:  # user data: frames from the labelled points, crops of fully labelled vertebrae only
            centres, sl = frame_points(v.keypoints, lab)
            use = np.flatnonzero(level_labelled(lab))
        up, ant, gap = spine_frames(centres, sl)
        noisy = centres + rng.normal(0, 0.08 * gap, centres.shape)
        up_n, _, _ = spine_frames(noisy, sl)
        # the anterior sign from the true points; its direction perpendicular to the noisy axis
        ant_n = np.column_stack([-up_n[:, 1], up_n[:, 0]])
        ant_n *= np.sign(np.sum(ant_n * ant, axis=1, keepdims=True))
        ts = []
        for lv in use:
            small = rng.random() < cfg.small_fraction
            k_shift, k_rot, k_scale = (0.2, 1 / 3, 1 / 3) if small else (1.0, 1.0, 1.0)
            r = cfg.shift * k_shift * gap * np.sqrt(rng.random())
            phi = rng.uniform(0, 2 * np.pi)
            c = centres[lv] + r * np.array([np.cos(phi), np.sin(phi)])
            ang = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg) * k_rot
            side = cfg.side_factor * gap * (1 + rng.uniform(-cfg.scale, cfg.scale) * k_scale)
            ts.append(crop_transform(c, rotate(up_n[lv], ang), rotate(ant_n[lv], ang), side, cfg.size))
            targets.append(ts[-1].to_model(vertebra_points(v.keypoints, lv)))
            levels.append(lv)
            known.append(np.ones(5, bool) if lab is None else np.append(lab[4 * lv: 4 * lv + 4], lab[24 + lv]))
        img = v.image.astype(np.float32) * np.float32(1 / 255)
        crops = sample_crops(img, ts, reduced=(block_reduce(img, reduction_factor(ts)), reduction_factor(ts)))
        images.append(crops)
    x = np.concatenate(images)
    n = len(x)
    g = rng.uniform(0.7, 1.4, (n, 1, 1)).astype(np.float32)
    x = np.clip(x, 0, 1) ** g * rng.uniform(0.8, 1.2, (n, 1, 1)).astype(np.float32) + rng.uniform(-0.1, 0.1, (n, 1, 1)).astype(np.float32)
    x = x * 2 - 1 + rng.normal(0, 1, x.shape).astype(np.float32) * rng.uniform(0, 0.04, (n, 1, 1)).astype(np.float32)
    x = randomize(x, rng, appearance)
    lvl = np.stack([level_channel(lv, cfg.size) for lv in levels])
    kp = np.stack(targets).astype(np.float32)
    valid = (kp >= 0).all(-1) & (kp <= cfg.size - 1).all(-1) & np.stack(known)
    return {
        "image": torch.from_numpy(np.stack([x, lvl], axis=1).astype(np.float32)),
        "keypoints": torch.from_numpy(kp),
        "valid": torch.from_numpy(valid),
        "mm_per_px": torch.ones(n),
        "view": torch.full((n,), -1, dtype=torch.long),
    }


def stage2_network(widths: tuple[int, ...]) -> NetworkConfig:
    return NetworkConfig(in_channels=2, n_keypoints=STAGE2_POINTS, widths=widths, n_views=1)


def stage1_network(widths: tuple[int, ...]) -> NetworkConfig:
    return NetworkConfig(in_channels=1, n_keypoints=STAGE1_POINTS, widths=widths, n_views=3)


def _train_loop(args: argparse.Namespace, model: KeypointNet, next_batch, loss_cfg: LossConfig, extra: dict) -> int:
    from models.common.predictor import resolve_device

    device = resolve_device(getattr(args, "device", "cpu"))
    model.to(device)
    print(f"training on {device}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    t0 = time.time()
    limit = args.minutes * 60
    max_steps = int(getattr(args, "steps", 0) or 0)

    def lr_factor(step: int) -> float:
        done = max((time.time() - t0) / limit, step / max_steps if max_steps else 0.0)
        return warmup_cosine(step, min(1.0, done), warmup=getattr(args, "warmup", 50), floor=0.01)

    step = 0
    hist: list[float] = []
    model.train()
    while time.time() - t0 < limit and not (max_steps and step >= max_steps):
        batch = {k: v.to(device) for k, v in next_batch(step).items()}
        for gp in opt.param_groups:
            gp["lr"] = args.lr * lr_factor(step)
        loss, parts = multitask_loss(model(batch["image"]), batch, loss_cfg, measure_scale=0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        hist.append(parts["px_error"])
        if step % args.checkpoint_every == 0:
            _save_stage(args.out, model, step, (time.time() - t0) / 60, extra)
            print(f"step {step} loss {float(loss.detach()):.4f} px_error(last 50) {np.mean(hist[-50:]):.3f} "
                  f"elapsed {(time.time() - t0) / 60:.1f} min", flush=True)
    _save_stage(args.out, model, step, (time.time() - t0) / 60, extra)
    print(f"done: {step} steps, {(time.time() - t0) / 60:.1f} min, px_error(last 50) {np.mean(hist[-50:]):.3f}")
    return 0


def _save_stage(path: Path, model: KeypointNet, step: int, minutes: float, extra: dict) -> None:
    """A stage's training checkpoint (fp32): model ``xray_keypoints_stage1`` / ``_stage2``, part ``model``."""
    save_checkpoint(path, f"xray_keypoints_stage{extra['stage']}", VERSION, {"model": model},
                    {"network": model.config.to_dict(), "step": step, "minutes": minutes, **extra}, dtype=None)


def _load_stage(path: Path, stage: int) -> dict:
    """A stage's training checkpoint as the dict :func:`export_cascade` takes (``model``: the state dict)."""
    ck = load_checkpoint(path, f"xray_keypoints_stage{stage}")
    return {**ck.meta, "model": ck.parts["model"]}


def _init(model: KeypointNet, path: Path, stage: str) -> dict:
    """Initialise ``model`` from a weights file: a cascade's part ``stage`` (fine-tuning), or the backbone of a
    one-stage checkpoint (part ``network``; tensors of the same shape). Returns what to record (path, version)."""
    ck = load_checkpoint(path, "xray_keypoints")
    init = ck.part(stage if stage in ck.parts else "network")
    own = model.state_dict()
    sd = {k: v for k, v in init.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(sd, strict=False)
    print(f"initialised {len(sd)} / {len(own)} tensors from {path} ({stage if stage in ck.parts else 'network'})")
    return {"init": str(Path(path).resolve()), "init_version": ck.version, "init_tensors": len(sd)}


def cmd_stage2(args: argparse.Namespace) -> int:
    views = _load(args.data)
    cfg = CropConfig(size=args.size)
    model = KeypointNet(stage2_network(tuple(int(v) for v in args.widths.split(","))))
    init = _init(model, args.init, "stage2") if args.init else {}
    print(f"{len(views)} views, stage 2 {count_parameters(model) / 1e6:.2f} M parameters, crop {cfg.size} px")
    rng = np.random.default_rng(args.seed)
    per = max(1, args.batch // N_LEVELS)

    def next_batch(step: int) -> dict[str, torch.Tensor]:
        return stage2_examples([views[i] for i in rng.integers(0, len(views), per)], cfg, rng, args.appearance)

    loss_cfg = LossConfig(coord_weight=args.coord_weight, view_weight=0.0)
    return _train_loop(args, model, next_batch, loss_cfg, {"crop": cfg.__dict__, "loss": loss_cfg.to_dict(),
                                                           "stage": 2, "views": len(views),
                                                           "appearance": args.appearance, **init})


def cmd_stage1(args: argparse.Namespace) -> int:
    views = _load(args.data)
    net_cfg = stage1_network(tuple(int(v) for v in args.widths.split(",")))
    model = KeypointNet(net_cfg)
    init = _init(model, args.init, "stage1") if args.init else {}
    samples = [RawSample(v.small.astype(np.float32), stage1_targets(v.small_keypoints),
                         stage1_labelled(getattr(v, "labelled", None)), v.spacing_mm, v.view) for v in views]
    aug = AugmentConfig(size=args.size, p_full=1.0)
    ds = KeypointDataset(samples, aug, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    print(f"{len(samples)} views, stage 1 {count_parameters(model) / 1e6:.2f} M parameters, input {args.size} px")

    def next_batch(step: int) -> dict[str, torch.Tensor]:
        ds.epoch = step
        items = [ds[int(i)] for i in rng.integers(0, len(ds), args.batch)]
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        if args.appearance > 0:
            batch["image"][:, 0] = torch.from_numpy(randomize(batch["image"][:, 0].numpy(), rng, args.appearance))
        return batch

    loss_cfg = LossConfig(coord_weight=args.coord_weight)
    return _train_loop(args, model, next_batch, loss_cfg, {"size": args.size, "loss": loss_cfg.to_dict(), "stage": 1,
                                                           "views": len(views), "appearance": args.appearance,
                                                           **init})


def export_cascade(stage1: dict, stage2: dict, path: Path, *, version: str = VERSION, sigma_scale: float = 1.0,
                   trained: dict | None = None, iterations: int | None = None, inherited: dict | None = None) -> None:
    """Write the weights file (an ``xray_keypoints`` checkpoint, architecture ``cascade``: both stages in fp16)
    from two training checkpoints (or equivalent dicts: ``network``, ``size`` / ``crop``, ``loss``, ``model``).
    ``inherited``: meta taken over from the weights the stages were fine-tuned from (:func:`inherited_meta`)."""
    crop = dict(stage2["crop"])
    if iterations is not None:
        crop["iterations"] = iterations
    meta = {"architecture": "cascade",
            "stage1": {"network": stage1["network"], "size": stage1["size"], "loss": stage1["loss"]},
            "stage2": {"network": stage2["network"], "crop": crop, "loss": stage2["loss"]},
            "sigma_scale": sigma_scale, "trained": trained or {}, "metrics": {}, **(inherited or {})}
    save_checkpoint(path, "xray_keypoints", version, {"stage1": stage1["model"], "stage2": stage2["model"]}, meta)


RECALIBRATE = ("cspine-node evaluate xray --weights {w} --count 50 --calibrate --update-weights; "
               "python -m models.xray_keypoints.interval_calibration --weights {w} --update-weights")


def inherited_meta(path: Path) -> dict:
    """The spread scale, test-time variants and interval calibration of the cascade weights file a fine-tune started
    from: the fine-tuned weights run and report like their parent. They were fitted for the parent; ``calibration``
    says so (refit them on held-out data of the new weights' domain: :data:`RECALIBRATE`)."""
    ck = load_checkpoint(path, "xray_keypoints")
    if ck.meta.get("architecture") != "cascade":
        return {}
    out = {k: ck.meta[k] for k in ("sigma_scale", "tta", "interval_calibration") if k in ck.meta}
    out["calibration"] = {"inherited_from": ck.version, "refitted": False,
                          "note": "spread scale, test-time variants and interval factors taken over unchanged from the "
                                  "weights this fine-tune started from; not refitted for these weights"}
    return out


def cmd_take(args: argparse.Namespace) -> int:
    """A stage of a cascade weights file as a training checkpoint (0 steps): export then keeps that stage as it is
    (fine-tuning only the other stage)."""
    ck = load_checkpoint(args.weights, "xray_keypoints")
    if ck.meta.get("architecture") != "cascade":
        raise SystemExit(f"{args.weights}: not cascade weights")
    m = ck.meta[f"stage{args.stage}"]
    extra = {k: m[k] for k in ("network", "size", "crop", "loss") if k in m}
    save_checkpoint(args.out, f"xray_keypoints_stage{args.stage}", VERSION, {"model": ck.part(f"stage{args.stage}")},
                    {**extra, "step": 0, "minutes": 0.0, "stage": args.stage, "views": 0,
                     "init": str(Path(args.weights).resolve()), "init_version": ck.version}, dtype=None)
    print(f"stage {args.stage} of {args.weights} ({ck.version}) unchanged -> {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    s1, s2 = _load_stage(args.stage1, 1), _load_stage(args.stage2, 2)
    trained = {"stage1_steps": s1["step"], "stage1_minutes": round(s1["minutes"], 1),
               "stage2_steps": s2["step"], "stage2_minutes": round(s2["minutes"], 1), "views": s1.get("views")}
    parent = args.inherit or (None if args.no_inherit else s1.get("init") or s2.get("init"))
    if s1.get("init_version") or s2.get("init_version"):
        trained["fine_tuned_from"] = {"stage1": s1.get("init_version"), "stage2": s2.get("init_version")}
    inherited = inherited_meta(Path(parent)) if parent and Path(parent).is_file() else {}
    export_cascade(s1, s2, args.out, version=args.version, trained=trained, iterations=args.iterations,
                   inherited=inherited)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {trained}")
    if inherited:
        print(f"calibration (spread scale, test-time variants, interval factors) inherited from {parent} "
              f"({inherited['calibration']['inherited_from']}), not refitted; to refit: {RECALIBRATE.format(w=args.out)}")
    else:
        print(f"no calibration: spread scale 1.0, no test-time variants, no interval factors; fit them before use: "
              f"{RECALIBRATE.format(w=args.out)}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cspine-node train xray cascade", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="training views: phantoms, or a site's COCO / labelme annotations (+ phantoms)")
    d.add_argument("--studies", type=int, default=800)
    d.add_argument("--seed", type=int, default=7, help="studies use seeds seed*100000 + i")
    d.add_argument("--rows-min", type=int, default=900)
    d.add_argument("--rows-max", type=int, default=1100)
    d.add_argument("--difficulty", default="mix")
    d.add_argument("--processes", type=int, default=1)
    d.add_argument("--b-fraction", type=float, default=0.0, help="studies from renderer B (pipelines.phantoms.xray_b)")
    d.add_argument("--tight-fraction", type=float, default=0.5,
                   help="renderer B studies with a tight C1-T1 field (no skull)")
    d.add_argument("--shift-fraction", type=float, default=0.0, help="studies under one shift of the suite")
    d.add_argument("--coco", type=Path, help="a site's COCO-keypoints JSON (instead of phantoms; see cascade_data.py)")
    d.add_argument("--images", type=Path, help="with --coco: folder of the images when file_name does not resolve")
    d.add_argument("--labelme", type=Path, help="a site's folder of labelme JSON files and images")
    d.add_argument("--label-map", type=Path, help="with --labelme: JSON {label: keypoint name}")
    d.add_argument("--phantom-studies", type=int, default=0,
                   help="with --coco / --labelme: phantom studies mixed in (3 views each; --seed, --rows-* apply)")
    d.add_argument("--repeat-user", type=int, default=1, help="with --coco / --labelme: each annotated view N times")
    d.add_argument("--max-side", type=int, default=1100, help="annotated images reduced to this longest side (px)")
    d.add_argument("--out", type=Path, required=True)
    for name in ("stage1", "stage2"):
        s = sub.add_parser(name, help=f"train {name}")
        s.add_argument("--data", type=Path, required=True)
        s.add_argument("--minutes", type=float, default=30)
        s.add_argument("--batch", type=int, default=12 if name == "stage1" else 36)
        s.add_argument("--lr", type=float, default=2e-3)
        s.add_argument("--size", type=int, default=160 if name == "stage1" else 128)
        s.add_argument("--widths", default="16,32,64")
        s.add_argument("--coord-weight", type=float, default=0.05 if name == "stage1" else 0.2)
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--seed", type=int, default=7)
        s.add_argument("--checkpoint-every", type=int, default=100)
        s.add_argument("--out", type=Path, required=True)
        s.add_argument("--init", type=Path, help=f"weights file that initialises {name}: a cascade (fine-tuning: its "
                       f"{name}) or, for stage 1, a one-stage file's backbone")
        s.add_argument("--warmup", type=int, default=50, help="learning-rate warm-up steps")
        s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (a GPU when there is one)")
        s.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: --minutes only)")
        s.add_argument("--appearance", type=float, default=0.0,
                       help="probability that an example's appearance is redrawn (appearance.py; 0: off)")
    t = sub.add_parser("take", help="a stage of a cascade weights file as an (untrained) stage checkpoint")
    t.add_argument("--weights", type=Path, required=True)
    t.add_argument("--stage", type=int, choices=(1, 2), required=True)
    t.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("export", help="write the fp16 weights file from the two checkpoints")
    e.add_argument("--stage1", type=Path, required=True)
    e.add_argument("--stage2", type=Path, required=True)
    e.add_argument("--iterations", type=int, default=None, help="stage-2 iterations at inference")
    e.add_argument("--version", default=VERSION)
    e.add_argument("--inherit", type=Path, help="take spread scale, test-time variants and interval calibration from "
                   "this weights file (default: the file stage 1 was initialised from)")
    e.add_argument("--no-inherit", action="store_true", help="do not inherit them (weights trained from scratch)")
    e.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if hasattr(args, "seed") and args.cmd != "data":
        seed_everything(args.seed)
    return {"data": cmd_data, "stage1": cmd_stage1, "stage2": cmd_stage2, "take": cmd_take,
            "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(cli())
