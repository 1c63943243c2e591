"""One-off conversion of the weights files written before ``models.common.checkpoint`` into its schema.

    python -m models.common.convert_checkpoints                 # the eight shipped files under models/
    python -m models.common.convert_checkpoints OLD.pt [...]    # files of your own (converted in place)

The old layouts hold only tensors and plain values, so they are read with ``torch.load(...,
weights_only=True)`` too. The tensors are copied unchanged (same dtype, same bits: checked on the written
file before it replaces the old one) and so is the version; the rest becomes ``meta`` (tuples as lists).
A file already in the schema is left alone. The old layouts:

==========================================  ==========================================  ==============================
old layout                                  model (parts)                               meta
==========================================  ==========================================  ==============================
``{"state_dict", "meta"}`` with             ``curvature`` / ``upper_cervical`` /        the old ``meta`` without
``meta["arch"]`` s_resnet34 / resnet34,     ``cord_compression`` / ``neck_pain``        ``version``
cervihfenet, segment_cnn,                   (``network``)
neck-pain-abpdc-fpran
``{"state_dict", "width", "version", ...}`` ``spine_locator`` (``network``)             the other keys
``{"version", "localiser", "classifier",    ``mri`` (``localiser``, ``classifier``)     ``config``, ``metrics``
"config", "metrics"}``
``{"format": "cspine-xray-keypoints/2"}``   ``xray_keypoints`` (``stage1``, ``stage2``) ``architecture: cascade``, per
                                                                                        stage ``network``/``size``/
                                                                                        ``crop``/``loss``,
                                                                                        ``sigma_scale``, ``trained``,
                                                                                        ``metrics``
``{"format": "cspine-xray-keypoints/1"}``   ``xray_keypoints`` (``network``)            ``architecture: single``,
                                                                                        ``network``, ``loss``,
                                                                                        ``augment``, ``sigma_scale``,
                                                                                        ``trained``, ``metrics``
==========================================  ==========================================  ==============================
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from models.common.checkpoint import FORMAT, load_checkpoint, same_tensors, save_checkpoint

MODELS = Path(__file__).resolve().parents[1]
SHIPPED: tuple[str, ...] = (
    "xray_keypoints/xray_keypoints_v2.pt",
    "curvature/s_resnet34_v1.pt",
    "curvature/resnet34_plain_v1.pt",
    "curvature/spine_locator_v1.pt",
    "upper_cervical/cervihfenet_v1.pt",
    "cord_compression/segment_cnn_v1.pt",
    "mri/mri_v1.pt",
    "mri/mri_v2.pt",
    "neck_pain/neck_pain_v1.pt",
)
"""The shipped weights files (relative to ``models/``)."""

ARCH_MODEL = {"s_resnet34": "curvature", "resnet34": "curvature", "cervihfenet": "upper_cervical",
              "segment_cnn": "cord_compression", "neck-pain-abpdc-fpran": "neck_pain"}
"""``meta["arch"]`` of the old seed-model layout -> the model."""


def new_layout(old: dict[str, Any]) -> tuple[str, str, dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """(model, version, parts, meta) of an old-layout checkpoint dict."""
    fmt = old.get("format")
    if fmt == "cspine-xray-keypoints/2":
        stages = {s: {k: v for k, v in old[s].items() if k != "state_dict"} for s in ("stage1", "stage2")}
        meta = {"architecture": "cascade", **stages, "sigma_scale": old.get("sigma_scale", 1.0),
                "trained": old.get("trained", {}), "metrics": old.get("metrics", {})}
        return "xray_keypoints", str(old["version"]), {s: old[s]["state_dict"] for s in stages}, meta
    if fmt == "cspine-xray-keypoints/1":
        meta = {"architecture": "single", **{k: old[k] for k in ("network", "loss", "augment") if k in old},
                "sigma_scale": old.get("sigma_scale", 1.0), "trained": old.get("trained", {}),
                "metrics": old.get("metrics", {})}
        return "xray_keypoints", str(old["version"]), {"network": old["state_dict"]}, meta
    if fmt is not None:
        raise ValueError(f"unknown old format {fmt!r}")
    if "localiser" in old and "classifier" in old:
        return ("mri", str(old["version"]), {"localiser": old["localiser"], "classifier": old["classifier"]},
                {"config": old.get("config", {}), "metrics": old.get("metrics", {})})
    if "width" in old and "state_dict" in old:
        meta = {k: v for k, v in old.items() if k not in ("state_dict", "version")}
        return "spine_locator", str(old.get("version", "unknown")), {"network": old["state_dict"]}, meta
    if "state_dict" in old and isinstance(old.get("meta"), dict) and old["meta"].get("arch") in ARCH_MODEL:
        meta = {k: v for k, v in old["meta"].items() if k != "version"}
        return ARCH_MODEL[meta["arch"]], str(old["meta"].get("version", "?")), {"network": old["state_dict"]}, meta
    raise ValueError(f"not a known old layout (keys {sorted(old)})")


def convert(path: Path) -> str:
    """Convert one file in place; returns what was done."""
    old = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(old, dict) and old.get("format") == FORMAT:
        return f"{path}: already {FORMAT}"
    model, version, parts, meta = new_layout(old)
    tmp = path.with_name(f".{path.name}.converted")
    try:
        save_checkpoint(tmp, model, version, parts, meta, dtype=None)
        ck = load_checkpoint(tmp, model)
        for name, sd in parts.items():
            if not same_tensors(ck.parts[name], sd):
                raise RuntimeError(f"{path}: part {name} changed in the conversion")
        if ck.version != version:
            raise RuntimeError(f"{path}: version changed in the conversion")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    n = sum(len(sd) for sd in parts.values())
    return f"{path}: {model} {version}, parts {', '.join(parts)} ({n} tensors, bit-identical)"


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.common.convert_checkpoints", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", type=Path, nargs="*", help="old-layout weights files (default: the shipped ones)")
    args = ap.parse_args(argv)
    for p in args.paths or [MODELS / s for s in SHIPPED]:
        print(convert(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
