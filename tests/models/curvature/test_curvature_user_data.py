"""Curvature classifier on a site's annotated folder: COCO + per-image curvature labels -> the training arrays ->
fine-tune from the shipped weights -> weights the predictor loads; a folder without the labels is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.common.checkpoint import load_checkpoint
from models.curvature import CLASSES, DEFAULT_WEIGHTS
from models.curvature.data import CROP
from models.curvature.predictor import CurvaturePredictor
from models.curvature.roi import DEFAULT_LOCATOR, LOCATOR_SIZE, landmarks_from_keypoints
from models.curvature.train import cli as train_cli
from pipelines.phantoms.xray import generate_study, unit_image
from tests.models.user_folder_data import write_folder

SEEDS = (11, 12)


def _items(labelled: bool = True) -> list[dict]:
    out = []
    for n, seed in enumerate(SEEDS):
        for view, pv in generate_study(seed, shape=(256, 256)).views.items():
            it = {"image": unit_image(pv.pixels, pv.photometric), "keypoints": pv.keypoints,
                  "spacing": pv.pixel_spacing_mm, "view": view}
            if labelled:
                it["labels"] = {"curvature_class": CLASSES[(n + len(out)) % 3]}
            out.append(it)
    return out


def test_user_folder_to_arrays_and_fine_tune(tmp_path, capsys):
    items = _items()
    items[0]["labelled"] = np.r_[np.zeros(4, bool), np.ones(26, bool)]  # C2 corners missing: left out
    coco = write_folder(tmp_path / "site", items)
    npz = tmp_path / "user.npz"
    assert train_cli(["data", "--coco", str(coco), "--out", str(npz)]) == 0
    assert "left out img_000.png: keypoints not labelled: C2 antero-superior" in capsys.readouterr().out
    d = np.load(npz)
    assert d["crops"].shape == (len(items) - 1, CROP, CROP) and d["crops"].dtype == np.uint8
    assert d["loc"].shape == (len(items) - 1, LOCATOR_SIZE, LOCATOR_SIZE)
    want = [CLASSES.index(it["labels"]["curvature_class"]) for it in items[1:]]
    assert d["labels"].tolist() == want
    # the locator targets are the annotated landmarks (PNG of the same pixels: same geometry)
    pts = landmarks_from_keypoints(items[1]["keypoints"])
    assert np.allclose(d["loc_pts"][1 - 1], pts * LOCATOR_SIZE / 256 + (LOCATOR_SIZE / 256 - 1) / 2, atol=0.05)
    # the crop is a real image region, not padding
    assert d["crops"].std() > 10

    out = tmp_path / "site.pt"
    assert train_cli(["--data", str(npz), str(npz), "--init", "shipped", "--max-steps", "2", "--batch", "4",
                      "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] == 2 and meta["train_images"] == 2 * (len(items) - 1)
    assert meta["init"]["weights"] == str(DEFAULT_WEIGHTS) and meta["arch"] == "s_resnet34"
    shipped, tuned = load_checkpoint(DEFAULT_WEIGHTS, "curvature"), load_checkpoint(out, "curvature")
    assert tuned.parts["network"].keys() == shipped.parts["network"].keys()
    changed = [k for k, v in tuned.parts["network"].items()
               if v.is_floating_point() and not np.array_equal(v.numpy(), shipped.parts["network"][k].numpy())]
    assert changed  # two steps moved some weights, starting from the shipped ones
    pred = CurvaturePredictor.load(out, "cpu").predict(items[1]["image"])
    assert pred.label in CLASSES and abs(sum(pred.probabilities.values()) - 1) < 1e-4

    loc_out = tmp_path / "loc.pt"
    assert train_cli(["--arch", "locator", "--data", str(npz), "--init", "shipped", "--max-steps", "2",
                      "--batch", "4", "--out", str(loc_out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["init"]["weights"] == str(DEFAULT_LOCATOR)
    assert CurvaturePredictor.load(out, "cpu", locator=loc_out).predict(items[1]["image"]).label in CLASSES


def test_folder_without_labels_is_refused(tmp_path):
    coco = write_folder(tmp_path / "site", _items(labelled=False)[:2])
    with pytest.raises(SystemExit, match="none of its 2 images has labels for this model.*curvature_class"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])


def test_bad_class_name_is_refused(tmp_path):
    items = _items()[:1]
    items[0]["labels"] = {"curvature_class": "lordotic"}
    coco = write_folder(tmp_path / "site", items)
    with pytest.raises(SystemExit, match="img_000.png: 'curvature_class' must be one of normal, straightened"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])


def test_labelme_folder_gives_the_same_arrays(tmp_path):
    """The same two images as labelme files (corner labels 'C3_1'.., top-level "labels") -> the COCO arrays."""
    from PIL import Image

    from pipelines.vocabulary import KEYPOINT_NAMES

    items = _items()[:2]
    coco = write_folder(tmp_path / "coco", items)
    lm = tmp_path / "labelme"
    lm.mkdir()
    for i, it in enumerate(items):
        Image.fromarray(np.round(np.clip(it["image"], 0, 1) * 255).astype(np.uint8)).save(lm / f"img_{i:03d}.png")
        shapes = [{"label": f"{n.split()[0]}_{1 + j % 4}" if j < 24 else n, "points": [[float(x), float(y)]],
                   "shape_type": "point"} for j, (n, (x, y)) in enumerate(zip(KEYPOINT_NAMES, it["keypoints"], strict=True))]
        (lm / f"img_{i:03d}.json").write_text(json.dumps(
            {"imagePath": f"img_{i:03d}.png", "imageHeight": 256, "imageWidth": 256, "shapes": shapes,
             "labels": it["labels"], "view": it["view"].value}))
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert train_cli(["data", "--coco", str(coco), "--out", str(a)]) == 0
    assert train_cli(["data", "--labelme", str(lm), "--out", str(b)]) == 0
    da, db = np.load(a), np.load(b)
    assert np.array_equal(da["labels"], db["labels"]) and np.array_equal(da["views"], db["views"])
    # COCO stores the keypoints rounded to 0.001 px: the crops agree to a grey level
    assert np.abs(da["crops"].astype(int) - db["crops"].astype(int)).max() <= 1
    # the site's own label names ("pt07") with --label-map: the same arrays as the default names
    lm2 = tmp_path / "labelme_own_names"
    lm2.mkdir()
    for f in lm.iterdir():
        doc = json.loads(f.read_text()) if f.suffix == ".json" else None
        if doc is None:
            (lm2 / f.name).write_bytes(f.read_bytes())
            continue
        for j, shape in enumerate(doc["shapes"]):
            shape["label"] = f"pt{j:02d}"
        (lm2 / f.name).write_text(json.dumps(doc))
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({f"pt{j:02d}": n for j, n in enumerate(KEYPOINT_NAMES)}))
    c = tmp_path / "c.npz"
    with pytest.raises(SystemExit, match="img_000.png: keypoints not labelled"):  # unknown names: nothing placed
        train_cli(["data", "--labelme", str(lm2), "--out", str(c)])
    assert train_cli(["data", "--labelme", str(lm2), "--label-map", str(label_map), "--out", str(c)]) == 0
    assert np.array_equal(np.load(c)["crops"], db["crops"])


def test_evaluate_on_a_user_folder(tmp_path):
    """``evaluate --coco``: the site's held-out folder through the locator and with the annotated ROI; the
    true-ROI accuracy is the predictor's own on the annotated landmarks."""
    from models.curvature.evaluate import cli as eval_cli

    items = _items()
    coco = write_folder(tmp_path / "site", items)
    out = tmp_path / "eval.json"
    assert eval_cli(["--coco", str(coco), "--baseline", "", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == len(items) and res["data"] == str(coco)
    pr = CurvaturePredictor.load(None, "cpu")
    img = lambda it: np.round(np.clip(it["image"], 0, 1) * 255) / 255  # noqa: E731 - what the PNG holds
    hits = [pr.predict(img(it), landmarks_from_keypoints(it["keypoints"])).label == it["labels"]["curvature_class"]
            for it in items]
    assert res["s_resnet34/true_roi"]["accuracy"] == pytest.approx(np.mean(hits), abs=1e-9)
    assert 0.0 <= res["s_resnet34/located"]["accuracy"] <= 1.0 and res["locator_error_mm"]["median"] >= 0
