"""Upper cervical classifier on a site's annotated folder: three views per study (study_uid + view) with the six
labels -> the training arrays -> fine-tune from the shipped weights -> weights the predictor loads; a folder
without the labels, a study lacking a view and a label set lacking a key are handled with clear messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.common.checkpoint import load_checkpoint
from models.upper_cervical import DEFAULT_WEIGHTS, VIEW_ORDER
from models.upper_cervical.data import CROP
from models.upper_cervical.predictor import UpperCervicalPredictor
from models.upper_cervical.train import cli as train_cli
from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study
from pipelines.vocabulary import UPPER_CERVICAL_LABELS
from tests.models.user_folder_data import write_folder

SEEDS = (21, 22, 23)


def _studies() -> list:
    return [generate_upper_cervical_study(s, shape=(256, 256)) for s in SEEDS]


def _items(studies, labelled: bool = True, on_every_image: bool = False) -> list[dict]:
    out = []
    for st in studies:
        lab = {k: int(v) for k, v in zip(UPPER_CERVICAL_LABELS, st.label_vector(), strict=True)}
        for n, view in enumerate(VIEW_ORDER):
            uv = st.views[view]
            it = {"image": uv.unit_image(), "keypoints": uv.keypoints, "spacing": uv.pixel_spacing_mm, "view": view,
                  "study_uid": f"1.2.3.{st.seed}"}
            if labelled and (on_every_image or n == 1):  # the study's labels on its neutral image only
                it["labels"] = {"upper_cervical": lab}
            out.append(it)
    return out


def test_user_folder_to_arrays_and_fine_tune(tmp_path, capsys):
    studies = _studies()
    items = _items(studies)
    items = items[:-1]  # the last study loses its flexion view: left out
    coco = write_folder(tmp_path / "site", items)
    npz = tmp_path / "user.npz"
    assert train_cli(["data", "--coco", str(coco), "--out", str(npz)]) == 0
    printed = capsys.readouterr().out
    assert "study 1.2.3.23: needs one image per view" in printed
    d = np.load(npz)
    assert d["crops"].shape == (2, 3, CROP, CROP) and d["crops"].dtype == np.uint8
    assert np.array_equal(d["labels"], np.stack([st.label_vector() for st in studies[:2]]))
    assert d["loc"].shape[0] == 6 and d["loc_pts"].shape == (6, 3, 2)
    assert d["crops"].std() > 10

    out = tmp_path / "site.pt"
    assert train_cli(["--data", str(npz), str(npz), "--init", "shipped", "--max-steps", "2", "--batch", "2",
                      "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] == 2 and meta["train_studies"] == 4 and meta["init"]["weights"] == str(DEFAULT_WEIGHTS)
    shipped, tuned = load_checkpoint(DEFAULT_WEIGHTS, "upper_cervical"), load_checkpoint(out, "upper_cervical")
    assert tuned.meta["relations"] == shipped.meta["relations"]  # the shipped loss relations are kept
    assert tuned.meta["thresholds"] == shipped.meta["thresholds"]
    assert tuned.parts["network"].keys() == shipped.parts["network"].keys()
    assert any(not np.array_equal(v.numpy(), shipped.parts["network"][k].numpy())
               for k, v in tuned.parts["network"].items() if v.is_floating_point())
    st = studies[0]
    findings = UpperCervicalPredictor.load(out, "cpu").classify({v: st.views[v].unit_image() for v in VIEW_ORDER})
    assert [f.key for f in findings] == list(UPPER_CERVICAL_LABELS)
    assert all(0.0 <= f.probability <= 1.0 for f in findings)

    # refit the decision thresholds of the fine-tuned weights on the site's studies (max F1 through the locator)
    from models.upper_cervical.thresholds import best_f1_threshold, located_probabilities
    from models.upper_cervical.thresholds import cli as thresholds_cli

    assert thresholds_cli(["--coco", str(coco), "--weights", str(out)]) == 0
    refit = load_checkpoint(out, "upper_cervical").meta
    assert refit["thresholds_data"] == f"{coco} (2 studies, max F1 per label)"
    pr = UpperCervicalPredictor.load(out, "cpu")
    views = [[np.round(st.views[v].unit_image() * 255).astype(np.uint8) for v in VIEW_ORDER] for st in studies[:2]]
    probs = located_probabilities(pr, views)
    y = d["labels"] > 0.5
    assert refit["thresholds"] == {k: round(best_f1_threshold(y[:, i], probs[:, i]), 4)
                                   for i, k in enumerate(UPPER_CERVICAL_LABELS)}


def test_folder_without_labels_is_refused(tmp_path):
    coco = write_folder(tmp_path / "site", _items(_studies()[:1], labelled=False))
    with pytest.raises(SystemExit, match="none of its 3 images has labels for this model.*upper_cervical"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])


def test_incomplete_or_conflicting_labels_are_refused(tmp_path):
    items = _items(_studies()[:1], on_every_image=True)
    del items[0]["labels"]["upper_cervical"]["os_odontoideum"]
    coco = write_folder(tmp_path / "a", items)
    with pytest.raises(SystemExit, match="study 1.2.3.21: 'upper_cervical' needs the keys .*missing: os_odontoideum"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])
    items = _items(_studies()[:1], on_every_image=True)
    items[2]["labels"]["upper_cervical"] = {**items[2]["labels"]["upper_cervical"], "os_odontoideum": 1,
                                            "odontoid_fracture": 1}
    items[0]["labels"]["upper_cervical"] = {**items[0]["labels"]["upper_cervical"], "os_odontoideum": 0}
    coco = write_folder(tmp_path / "b", items)
    with pytest.raises(SystemExit, match="its images give different 'upper_cervical' labels"):
        train_cli(["data", "--coco", str(coco), "--out", str(tmp_path / "u.npz")])


def test_labelme_studies_give_the_coco_arrays(tmp_path):
    """labelme files with top-level "study_uid", "view", "pixel_spacing_mm" and "labels" group into the same
    studies and arrays as the COCO folder of the same images."""
    from PIL import Image

    from pipelines.vocabulary import KEYPOINT_NAMES

    items = _items(_studies()[:2])
    coco = write_folder(tmp_path / "coco", items)
    lm = tmp_path / "labelme"
    lm.mkdir()
    for i, it in enumerate(items):
        Image.fromarray(np.round(np.clip(it["image"], 0, 1) * 255).astype(np.uint8)).save(lm / f"img_{i:03d}.png")
        doc = {"imagePath": f"img_{i:03d}.png", "imageHeight": 256, "imageWidth": 256,
               "shapes": [{"label": n, "points": [[float(x), float(y)]], "shape_type": "point"}
                          for n, (x, y) in zip(KEYPOINT_NAMES, it["keypoints"], strict=True)],
               "study_uid": it["study_uid"], "view": it["view"].value, "pixel_spacing_mm": list(it["spacing"])}
        if "labels" in it:
            doc["labels"] = it["labels"]
        (lm / f"img_{i:03d}.json").write_text(json.dumps(doc))
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert train_cli(["data", "--coco", str(coco), "--out", str(a)]) == 0
    assert train_cli(["data", "--labelme", str(lm), "--out", str(b)]) == 0
    da, db = np.load(a), np.load(b)
    assert db["crops"].shape == (2, 3, CROP, CROP) and np.array_equal(da["labels"], db["labels"])
    assert np.abs(da["crops"].astype(int) - db["crops"].astype(int)).max() <= 1
