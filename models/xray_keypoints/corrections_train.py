"""``cspine-node train xray --from-corrections DIR``: fine-tune the keypoint model on radiologists' corrections,
and promote it only if the comparison says so.

DIR is a corrections folder (docs/corrections.md): ``DIR/annotations.json`` in the project's COCO-keypoint layout
(the 24 corners, or all 30 names, ``KEYPOINT_NAMES`` order; visibility 2 for corrected or confirmed points), images
under ``DIR/images/`` (16-bit PNG with ``pixel_spacing_mm`` in the image entry, or DICOM), per-annotation provenance
(``source_sr_uid``, ``corrected_model_version``, ``corrected_at``). Steps:

1. **Split** by study, deterministically: a study (the image's ``study_uid``; else its ``image_uid``; else its file
   name) is held back when the first 8 hex digits of sha256(key) / 2^32 < ``--held-back`` (0.25). Fewer than
   ``--min-train`` training or ``--min-held`` held-back views: refused (exit 2) with the counts.
2. **Fine-tune** the current model (the active version of the site's store, ``--store`` / ``CSPINE_MODEL_STORE``,
   else the shipped weights; ``--init`` starts from other weights, the comparison stays with the current model) on the training corrections (each ``--repeat`` times) plus
   ``--phantom-studies`` renderer-A phantom studies, both stages (``finetune.py``; ``--minutes`` / ``--steps`` per
   stage, ``--threads``, ``--device``).
3. **Compare** candidate and current on (a) ``--phantom-test-studies`` held-out phantom studies and (b) the held-back
   corrections (``corrections_gate.py``: paired, bootstrap intervals, noise margin ``--margin`` x the current mean).
4. **Store**: the candidate goes into the store (``models.store.ModelStore.add``) with a card holding the comparison
   table, the decision and the exact command, and metrics.json; it is **promoted only if not worse on (a) and better
   on (b)** (``--no-promote``: never). The decision and why are printed. ``cspine-node models rollback keypoints``
   undoes a promotion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import time
from pathlib import Path

import numpy as np

MODEL = "keypoints"
"""The keypoint model's name in the registry and the store."""


def split_key(image) -> str:  # noqa: ANN001 - pipelines.xray.annotations.AnnotatedImage
    """What the split groups by: the study, else the image, else the file name."""
    return image.study_uid or image.extra.get("study_uid") or image.image_uid or Path(image.image_path).name


def held_back(key: str, fraction: float) -> bool:
    """Deterministic: the same study is always on the same side (for a given fraction)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def split(images: list, fraction: float) -> tuple[list, list]:  # noqa: ANN001
    """(training, held-back) images, by study."""
    train, held = [], []
    for im in images:
        (held if held_back(split_key(im), fraction) else train).append(im)
    return train, held


def provenance(json_path: Path) -> dict:
    """Counts of the corrections' provenance fields (which SRs, which model versions they corrected, when)."""
    doc = json.loads(Path(json_path).read_text())
    anns = doc.get("annotations", [])
    versions: dict[str, int] = {}
    for a in anns:
        v = str(a.get("corrected_model_version") or "unknown")
        versions[v] = versions.get(v, 0) + 1
    times = sorted(str(a["corrected_at"]) for a in anns if a.get("corrected_at"))
    return {"annotations": len(anns), "source_srs": len({a.get("source_sr_uid") for a in anns if a.get("source_sr_uid")}),
            "corrected_model_versions": versions, "corrected_from": times[0] if times else None,
            "corrected_until": times[-1] if times else None}


def _views(images: list) -> list:  # noqa: ANN001
    """(RawSample at original resolution, labelled (30,)) of the held-back images that can be read."""
    from models.xray_keypoints.data import _sample_from_file

    out = []
    for im in images:
        lab = np.asarray(im.labelled, bool) & np.isfinite(im.keypoints).all(axis=1)
        if not lab[:24].any():
            continue
        try:
            raw = _sample_from_file(Path(im.image_path), np.nan_to_num(im.keypoints), lab, im.pixel_spacing_mm, im.view)
        except (OSError, ValueError) as exc:
            print(f"held-back {Path(im.image_path).name}: not readable ({exc}); left out")
            continue
        out.append((raw, lab))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cspine-node train xray --from-corrections",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--from-corrections", dest="corrections", type=Path, required=True, help="the corrections folder")
    p.add_argument("--store", type=Path, default=os.environ.get("CSPINE_MODEL_STORE") or None,
                   help="the site's model store (default: CSPINE_MODEL_STORE)")
    p.add_argument("--init", type=Path, help="weights to start from (default: the current model: the store's active "
                   "version, else the shipped weights); the comparison is always with the current model")
    p.add_argument("--held-back", type=float, default=0.25, help="fraction of studies held back for the comparison")
    p.add_argument("--min-train", type=int, default=15, help="fewest training views accepted")
    p.add_argument("--min-held", type=int, default=5, help="fewest held-back views accepted")
    p.add_argument("--repeat", type=int, default=3, help="each training correction N times in the views")
    p.add_argument("--phantom-studies", type=int, default=40, help="renderer-A phantom studies mixed in")
    p.add_argument("--phantom-rows", type=int, nargs=2, default=(900, 1100), metavar=("MIN", "MAX"),
                   help="rows of the mixed-in phantom images")
    p.add_argument("--phantom-test-studies", type=int, default=30, help="held-out phantom studies of test (a)")
    p.add_argument("--phantom-test-shape", type=int, nargs=2, metavar=("ROWS", "COLS"),
                   help="image size of test (a) (default: realistic detector sizes)")
    p.add_argument("--margin", type=float, default=0.1, help="noise margin of (a): this x the current mean")
    p.add_argument("--max-regression-mm", type=float, default=1.0,
                   help="(a): refuse if any radiograph's mean corner error grows by more than this")
    p.add_argument("--minutes", type=float, default=20.0, help="per stage")
    p.add_argument("--steps", type=int, default=0, help="per stage, at most (0: --minutes only)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--stages", default="both", choices=("both", "1", "2"),
                   help="which stages to fine-tune; the other is kept as in the starting weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="training device: auto (a GPU when there is one), cpu, cuda")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--version", help="default: <current version>+corr.<date>")
    p.add_argument("--work", type=Path, help="working folder (default: DIR/../corrections-train-<date>)")
    p.add_argument("--no-promote", action="store_true", help="compare and store, never promote")
    return p.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    import sys

    import torch

    from models.store import ModelStore, StoreError
    from models.xray_keypoints import DEFAULT_WEIGHTS
    from models.xray_keypoints.corrections_gate import compare, decide, table
    from models.xray_keypoints.evaluate import HELD_OUT_SEED
    from models.xray_keypoints.finetune import finetune
    from models.xray_keypoints.predictor import KeypointPredictor
    from pipelines.xray.annotations import read_coco, write_coco_json

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ann = args.corrections / "annotations.json"
    if not ann.is_file():
        print(f"error: {ann} not found (a corrections folder holds annotations.json and images/)", file=sys.stderr)
        return 2
    if args.store is None:
        print("error: no model store (--store or CSPINE_MODEL_STORE): the candidate is added there", file=sys.stderr)
        return 2
    try:
        images = read_coco(ann)
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        print(f"error: {ann} is not a corrections file in the COCO-keypoint layout: {exc}", file=sys.stderr)
        return 2
    train, held = split(images, args.held_back)
    n_studies = len({split_key(im) for im in images})
    print(f"{len(images)} corrected views from {n_studies} studies: {len(train)} for training, {len(held)} held back "
          f"(studies with sha256 fraction < {args.held_back})")
    if len(train) < args.min_train or len(held) < args.min_held:
        print(f"error: too few corrections to fine-tune and compare safely: {len(train)} training views (need "
              f"{args.min_train}), {len(held)} held-back views (need {args.min_held}); collect more corrections "
              f"(or change --held-back / --min-train / --min-held)", file=sys.stderr)
        return 2
    store = ModelStore(args.store)
    try:
        current_weights = store.active_weights(MODEL) or DEFAULT_WEIGHTS
    except StoreError as exc:
        print(f"error: the store's active {MODEL} version is not usable: {exc}", file=sys.stderr)
        return 2
    current = KeypointPredictor.load(current_weights, "cpu")
    start = Path(args.init or current_weights)
    stamp = time.strftime("%Y%m%d%H%M")
    version = args.version or f"{current.version}+corr.{stamp}"
    work = args.work or args.corrections.parent / f"corrections-train-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    train_json = write_coco_json(train, work / "train.json", extra_info={"split": "train"})
    print(f"current model {current.version} ({current_weights}); candidate {version}; work folder {work}")
    t0 = time.time()
    data_args = ["--coco", str(train_json), "--repeat-user", str(args.repeat), "--phantom-studies",
                 str(args.phantom_studies), "--rows-min", str(args.phantom_rows[0]), "--rows-max", str(args.phantom_rows[1])]
    cand_path = work / "candidate.pt"
    commands = finetune(data_args, out=cand_path, work=work, init=start, version=version,
                        minutes=args.minutes, steps=args.steps, threads=args.threads, seed=args.seed, lr=args.lr,
                        device=args.device, stages=args.stages)
    train_min = (time.time() - t0) / 60
    candidate = KeypointPredictor.load(cand_path, "cpu")
    t1 = time.time()
    shape = tuple(args.phantom_test_shape) if args.phantom_test_shape else None
    phantom, held_cmp = compare(current, candidate, _views(held), phantom_seed=HELD_OUT_SEED,
                                phantom_count=args.phantom_test_studies, phantom_shape=shape, rel_margin=args.margin,
                                max_regression_mm=args.max_regression_mm)
    decision = decide(phantom, held_cmp)
    if args.no_promote and decision.promote:
        decision.reasons.append("--no-promote: stored, not promoted")
    promote = decision.promote and not args.no_promote
    eval_min = (time.time() - t1) / 60
    tab = table(phantom, held_cmp, f"current {current.version}", f"candidate {version}")
    command = "cspine-node train xray " + shlex.join([str(a) for a in argv])
    prov = provenance(ann)
    metrics = {"phantom_test": {"seed": HELD_OUT_SEED, "studies": args.phantom_test_studies,
                                "shape": list(shape) if shape else "realistic",
                                "comparisons": [c.to_dict() for c in phantom]},
               "held_back": held_cmp.to_dict(), "decision": decision.to_dict(), "promoted": promote,
               "split": {"views": len(images), "studies": n_studies, "train": len(train), "held_back": len(held),
                         "fraction": args.held_back}, "provenance": prov, "parent": current.version,
               "training_minutes": round(train_min, 2), "evaluation_minutes": round(eval_min, 2)}
    metrics["started_from"] = str(start)
    card = _card(version, current.version, str(current_weights), args, metrics, tab, decision, command, commands)
    (work / "MODEL_CARD.md").write_text(card)
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
    v = store.add(MODEL, cand_path, work / "MODEL_CARD.md", metrics,
                  data=f"corrections {args.corrections} ({len(train)} views) + {args.phantom_studies} phantom studies",
                  source=command)
    print("\n" + tab + "\n")
    print("\n".join(f"  - {r}" for r in decision.reasons))
    if promote:
        store.promote(MODEL, v.version)
        print(f"PROMOTED: {MODEL} {v.version} is active (workers load it at their next start; undo: "
              f"cspine-node models rollback {MODEL})")
    else:
        print(f"NOT PROMOTED: {MODEL} {v.version} stored, {current.version} stays active")
    return 0


def _card(version: str, parent: str, parent_path: str, args: argparse.Namespace, metrics: dict, tab: str,  # noqa: PLR0913
          decision, command: str, commands: list[str]) -> str:  # noqa: ANN001
    s, p = metrics["split"], metrics["provenance"]
    verdict = "promoted (active)" if metrics["promoted"] else "not promoted"
    lines = [
        f"# Model card: cspine-xray-keypoints {version} (fine-tuned on corrections)", "",
        "**Intended use: research and software testing only. Not a medical device; not for diagnosis.** Fine-tuned from "
        f"`{metrics['started_from']}` on radiologists' corrections of this site and compared with the model that was "
        f"active, {parent} (`{parent_path}`; its card describes the model and its training). The comparison below is on "
        "this site's held-back corrections and on synthetic phantoms only.", "",
        "## Data",
        f"- Corrections: `{args.corrections}`: {s['views']} views of {s['studies']} studies; {s['train']} for training "
        f"(each {args.repeat} times), {s['held_back']} held back (studies with sha256 fraction < {s['fraction']}).",
        f"- Provenance: {p['annotations']} annotations from {p['source_srs']} SRs; corrected model versions "
        f"{p['corrected_model_versions']}; corrected {p['corrected_from']} .. {p['corrected_until']}.",
        f"- Mixed in: {args.phantom_studies} renderer-A phantom studies (3 views each, rows {args.phantom_rows[0]}-"
        f"{args.phantom_rows[1]}).", "",
        "## Training",
        f"- Cascade stage(s) {args.stages} fine-tuned from `{metrics['started_from']}` (a stage not fine-tuned is "
        f"taken unchanged), lr {args.lr:g}, at most {args.minutes:g} min"
        + (f" / {args.steps} steps" if args.steps else "") + f" per stage, device {args.device}, "
        f"{args.threads} thread(s); {metrics['training_minutes']:.1f} min in all.",
        "- Spread scale, test-time variants and interval calibration: taken over from the parent, **not refitted** "
        "(refit on held-out data before relying on the intervals).",
        "- Exact command:", "", f"      {command}", "", "  which ran:", "",
        *[f"      {c}" for c in commands], "",
        "## Comparison with the current model (promotion gate, models/xray_keypoints/corrections_gate.py)",
        f"Plain cascade pass of both models on the same images; (a) {metrics['phantom_test']['studies']} held-out "
        f"renderer-A phantom studies (seeds from {metrics['phantom_test']['seed']}, "
        f"{metrics['phantom_test']['shape']} sizes), (b) the held-back corrections. Differences are candidate - current "
        "with a bootstrap 95 % interval of the mean; margin = max(floor, "
        f"{args.margin:g} x current mean); no radiograph's mean corner error may grow by more than "
        f"{args.max_regression_mm:g} mm.", "", tab, "",
        f"**Decision: {verdict}.**", *[f"- {r}" for r in decision.reasons], "",
        "## Limitations",
        "- A held-back set of a few studies gives wide intervals: the gate then refuses (it must show 'better').",
        "- Phantom test (a) checks that nothing the model could do is lost; it says nothing about real radiographs.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(cli())
