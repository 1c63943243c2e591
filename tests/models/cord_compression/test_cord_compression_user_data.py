"""Cord-compression CNN on a site's annotated folder: COCO + per-image segment labels -> the training arrays ->
fine-tune from the shipped weights -> weights the predictor loads (with Grad-CAM); images without the spinolaminar
points are left out, a folder without the labels or with an incomplete label set is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.common.checkpoint import load_checkpoint
from models.cord_compression import DEFAULT_WEIGHTS
from models.cord_compression.data import patient_view
from models.cord_compression.predictor import CordCompressionPredictor
from models.cord_compression.roi import CROP, segment_crops
from models.cord_compression.train import cli as train_cli
from pipelines.phantoms.xray import unit_image
from pipelines.vocabulary import SEGMENTS, View
from tests.models.user_folder_data import write_folder

SEEDS = (31, 32, 33)
SHAPE = (448, 384)


def _items(labelled: bool = True) -> list[dict]:
    out = []
    for seed in SEEDS:
        _, lab, pv = patient_view(seed, shape=SHAPE)
        it = {"image": unit_image(pv.pixels, pv.photometric), "keypoints": pv.keypoints, "spacing": pv.pixel_spacing_mm,
              "view": View.NEUTRAL, "truth": lab}
        if labelled:
            it["labels"] = {"cord_compression": {s: int(v) for s, v in zip(SEGMENTS, lab, strict=True)}}
        out.append(it)
    return out


def test_user_folder_to_arrays_and_fine_tune(tmp_path, capsys):
    items = _items()
    items[2]["labelled"] = np.r_[np.ones(24, bool), np.zeros(6, bool)]  # corners only: left out (crops need all 30)
    coco = write_folder(tmp_path / "site", [{k: v for k, v in it.items() if k != "truth"} for it in items])
    npz = tmp_path / "user.npz"
    assert train_cli(["data", "--coco", str(coco), "--out", str(npz)]) == 0
    assert "left out img_002.png: keypoints not labelled: C2 spinolaminar" in capsys.readouterr().out
    d = np.load(npz)
    assert d["crops"].shape == (2, 3, 5, *CROP) and d["crops"].dtype == np.uint8
    assert np.array_equal(d["labels"], np.stack([it["truth"] for it in items[:2]]))
    # the clean crop is the phantom pipeline's crop of the same image (PNG rounding: within 1 grey level)
    ref = np.round(segment_crops(np.round(items[0]["image"] * 255) / 255, items[0]["keypoints"])[0] * 255)
    assert np.abs(d["crops"][0, 0].astype(int) - ref).max() <= 1
    assert not np.array_equal(d["crops"][0, 0], d["crops"][0, 1])  # jittered copies differ

    out = tmp_path / "site.pt"
    assert train_cli(["--data", str(npz), str(npz), "--init", "shipped", "--max-steps", "2", "--batch", "8",
                      "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    printed = json.loads(printed[printed.index("{\n"):])  # the CLI's json.dumps(meta, indent=1)
    assert printed["init"]["version"] == "1"
    tuned, shipped = load_checkpoint(out, "cord_compression"), load_checkpoint(DEFAULT_WEIGHTS, "cord_compression")
    meta = tuned.meta
    assert meta["steps"] == 2 and meta["train_patients"] == 4 and meta["init"]["weights"] == str(DEFAULT_WEIGHTS)
    assert meta["threshold"] == pytest.approx(shipped.meta["threshold"])  # no --val: the shipped threshold is kept
    assert tuned.parts["network"].keys() == shipped.parts["network"].keys()
    assert any(not np.array_equal(v.numpy(), shipped.parts["network"][k].numpy())
               for k, v in tuned.parts["network"].items() if v.is_floating_point())
    findings, heatmaps = CordCompressionPredictor.load(out, "cpu").classify(items[0]["image"], items[0]["keypoints"],
                                                                           "1.2.3")
    assert [f.site for f in findings] == list(SEGMENTS) and len(heatmaps) >= 1


def test_folder_without_labels_is_refused(tmp_path):
    items = _items(labelled=False)[:1]
    coco = write_folder(tmp_path / "site", [{k: v for k, v in it.items() if k != "truth"} for it in items])
    with pytest.raises(SystemExit, match="none of its 1 images has labels for this model.*cord_compression"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])


def test_incomplete_segment_labels_are_refused(tmp_path):
    items = _items()[:1]
    del items[0]["labels"]["cord_compression"]["C4-C5"]
    items[0]["labels"]["cord_compression"]["C7-T1"] = 0
    coco = write_folder(tmp_path / "site", [{k: v for k, v in it.items() if k != "truth"} for it in items])
    with pytest.raises(SystemExit, match="img_000.png: 'cord_compression' needs the segments .*missing: C4-C5; "
                                         "unknown: C7-T1"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])
