"""``cspine-node train xray --data FOLDER``: fine-tune the shipped cascade (the model the node runs) on a site's
annotated radiographs, in one command.

FOLDER holds a COCO-keypoints JSON (``annotations.json``, or the one ``*.json`` with ``annotations``; the
``pipelines.xray.annotations`` layout, the 30 keypoint names or a subset such as the 24 corners) with its images
(DICOM or PNG), or labelme JSON files with their images (``--label-map`` for other labels). It runs the four
``cspine-node train xray cascade`` steps and prints each command as it runs it::

    data    --coco FOLDER/annotations.json [--phantom-studies N] --out WORK/data.pkl
    stage1  --data WORK/data.pkl --init WEIGHTS --minutes M --lr 5e-4 --warmup 20 --out WORK/stage1.ckpt
    stage2  --data WORK/data.pkl --init WEIGHTS --minutes M --lr 5e-4 --warmup 20 --out WORK/stage2.ckpt
    export  --stage1 WORK/stage1.ckpt --stage2 WORK/stage2.ckpt --iterations 2 --version V --out OUT

WEIGHTS: ``--init`` (default: the shipped ``xray_keypoints_v2.pt``); ``--from-scratch`` trains new networks (lr 2e-3).
``--phantom-studies N`` mixes N phantom studies (3 views each) into the site's views (keeps what the model knows).
The exported file takes over the spread scale, test-time variants and interval calibration of WEIGHTS (and says that
they were not refitted). ``--data phantom`` (phantoms only) trains as ``cascade data --studies N``.
``cspine-node train xray single ...`` is the old one-stage trainer (``train.py``, 1.0.0).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

PROG = "cspine-node train xray cascade"


def annotation_source(folder: Path, images: Path | None = None, label_map: Path | None = None) -> list[str]:
    """``cascade data`` arguments for a COCO JSON file, a folder with one COCO JSON, or a labelme folder."""
    folder = Path(folder)
    if folder.is_file():
        return ["--coco", str(folder)] + (["--images", str(images)] if images else [])
    if not folder.is_dir():
        raise SystemExit(f"--data: {folder} is neither 'phantom', a COCO JSON file nor a folder")
    cocos = [p for p in sorted(folder.glob("*.json")) if p.name == "annotations.json"]
    if not cocos:
        cocos = [p for p in sorted(folder.glob("*.json")) if _is_coco(p)]
    if len(cocos) == 1:
        return ["--coco", str(cocos[0])] + (["--images", str(images)] if images else [])
    if len(cocos) > 1:
        raise SystemExit(f"--data: {folder} holds {len(cocos)} COCO files; name one (--data FILE.json)")
    if not any(folder.glob("*.json")):
        raise SystemExit(f"--data: {folder} has no annotations (*.json: COCO keypoints or labelme)")
    return ["--labelme", str(folder)] + (["--label-map", str(label_map)] if label_map else [])


def _is_coco(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and "annotations" in doc and "images" in doc


def parent_settings(weights: Path) -> dict:
    """Version, network widths, input sizes and stage-2 iterations of a cascade weights file."""
    from models.common.checkpoint import load_checkpoint

    ck = load_checkpoint(weights, "xray_keypoints")
    if ck.meta.get("architecture") != "cascade":
        raise SystemExit(f"{weights}: not cascade weights (architecture {ck.meta.get('architecture')!r})")
    s1, s2 = ck.meta["stage1"], ck.meta["stage2"]
    return {"version": ck.version, "widths1": ",".join(str(w) for w in s1["network"]["widths"]),
            "widths2": ",".join(str(w) for w in s2["network"]["widths"]), "size1": int(s1["size"]),
            "size2": int(s2["crop"]["size"]), "iterations": int(s2["crop"].get("iterations", 2))}


def finetune(data_args: list[str], *, out: Path, work: Path, init: Path | None, version: str | None = None,
             minutes: float = 15.0, steps: int = 0, threads: int = 1, seed: int = 7, lr: float | None = None,
             warmup: int = 20, device: str = "cpu", batch1: int = 12, batch2: int = 36, stages: str = "both",
             log=print) -> list[str]:  # noqa: ANN001
    """Build the views (``cascade data`` + ``data_args``), train the stages (``both``, ``1`` or ``2``; the other one
    is taken unchanged from ``init``) from ``init`` (None: from scratch) and export to ``out``. Returns the commands
    run (``cspine-node train xray cascade ...`` form)."""
    from models.xray_keypoints import cascade_train

    if stages not in ("both", "1", "2"):
        raise SystemExit(f"--stages must be both, 1 or 2, not {stages!r}")
    if init is None and stages != "both":
        raise SystemExit("training from scratch needs both stages (--stages both)")
    work.mkdir(parents=True, exist_ok=True)
    parent = parent_settings(init) if init is not None else {
        "version": None, "widths1": "16,32,64", "widths2": "16,32,64", "size1": 160, "size2": 128, "iterations": 2}
    lr = lr if lr is not None else (5e-4 if init is not None else 2e-3)
    version = version or (f"{parent['version']}+ft.{time.strftime('%Y%m%d%H%M')}" if init is not None else "2.0.0")
    data = work / "data.pkl"
    common = ["--data", str(data), "--minutes", f"{minutes:g}", "--threads", str(threads), "--seed", str(seed),
              "--lr", f"{lr:g}", "--warmup", str(warmup), "--device", device]
    if steps:
        common += ["--steps", str(steps)]
    init_args = ["--init", str(init)] if init is not None else []
    take = {n: ["take", "--weights", str(init), "--stage", str(n), "--out", str(work / f"stage{n}.ckpt")] for n in (1, 2)}
    runs = [
        ["data", *data_args, "--seed", str(seed), "--out", str(data)],
        ["stage1", *common, "--batch", str(batch1), "--size", str(parent["size1"]), "--widths", parent["widths1"],
         *init_args, "--out", str(work / "stage1.ckpt")] if stages in ("both", "1") else take[1],
        ["stage2", *common, "--batch", str(batch2), "--size", str(parent["size2"]), "--widths", parent["widths2"],
         *init_args, "--out", str(work / "stage2.ckpt")] if stages in ("both", "2") else take[2],
        ["export", "--stage1", str(work / "stage1.ckpt"), "--stage2", str(work / "stage2.ckpt"), "--iterations",
         str(parent["iterations"]), "--version", version, "--out", str(out)] + ([] if init is not None else ["--no-inherit"]),
    ]
    done = []
    for argv in runs:
        cmd = f"{PROG} {shlex.join(argv)}"
        log(f"$ {cmd}")
        rc = cascade_train.cli(argv)
        if rc:
            raise SystemExit(f"failed ({rc}): {cmd}")
        done.append(cmd)
    return done


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cspine-node train xray", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="COCO JSON file, folder (COCO or labelme), or 'phantom'")
    p.add_argument("--images", type=Path, help="COCO: folder of the images when file_name does not resolve")
    p.add_argument("--label-map", type=Path, help="labelme: JSON {label: keypoint name}")
    p.add_argument("--phantom-studies", type=int, default=0, help="phantom studies mixed in (3 views each); with "
                   "--data phantom: the studies trained on (default 900)")
    p.add_argument("--repeat-user", type=int, default=1, help="each annotated view N times (weight against phantoms)")
    p.add_argument("--init", type=Path, help="cascade weights to fine-tune (default: the shipped weights)")
    p.add_argument("--from-scratch", action="store_true", help="new networks instead of fine-tuning")
    p.add_argument("--stages", default="both", choices=("both", "1", "2"),
                   help="which stages to fine-tune; the other is kept as in the starting weights")
    p.add_argument("--minutes", type=float, default=15.0, help="per stage")
    p.add_argument("--steps", type=int, default=0, help="per stage, at most (0: --minutes only)")
    p.add_argument("--lr", type=float, help="default 5e-4 (fine-tune) or 2e-3 (from scratch)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--version", help="default: <parent version>+ft.<date> (2.0.0 from scratch)")
    p.add_argument("--work", type=Path, help="folder for the views and stage checkpoints (default: <out>.work)")
    p.add_argument("--out", type=Path, default=Path("xray_keypoints_finetuned.pt"))
    return p.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    from models.xray_keypoints import DEFAULT_WEIGHTS

    args = parse_args(argv)
    if args.data == "phantom":
        data_args = ["--studies", str(args.phantom_studies or 900)]
    else:
        data_args = annotation_source(Path(args.data), args.images, args.label_map)
        data_args += ["--phantom-studies", str(args.phantom_studies), "--repeat-user", str(args.repeat_user)]
    init = None if args.from_scratch else (args.init or DEFAULT_WEIGHTS)
    work = args.work or args.out.with_name(args.out.name + ".work")
    finetune(data_args, out=args.out, work=work, init=init, version=args.version, minutes=args.minutes,
             steps=args.steps, threads=args.threads, seed=args.seed, lr=args.lr, warmup=args.warmup, device=args.device,
             stages=args.stages)
    print(f"weights: {args.out} (evaluate: cspine-node evaluate xray --weights {args.out} --data FOLDER; add to the "
          f"site's store: cspine-node models add xray {args.out} --card CARD.md --metrics metrics.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
