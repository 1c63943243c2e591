"""Fine-tuning the MRI networks on a user's annotated folder (models/mri/user_data.py + train.py --user-data).

The folder is written here: phantom sagittal series as DICOM (renderer A as stored, and a flipped series
annotated on a neighbouring slice) with a labels.json in the documented COCO-style layout, the disc centres and
grades taken from the phantoms' truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.data import case_samples, phantom_samples
from models.mri.phantom_folder import stored_points
from models.mri.user_data import UserLabelError, read_labels, series_example, user_dataset
from pipelines.vocabulary import LEVELS, TASKS

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not shipped")


def _annotation(image_id: int, pts: np.ndarray, labels: np.ndarray) -> dict:
    return {"id": image_id, "image_id": image_id, "category_id": 7,
            "keypoints": [float(v) for x, y in pts for v in (x, y, 2)],
            "grades": {lv: {t: int(labels[i, j]) for j, t in enumerate(TASKS)} for i, lv in enumerate(LEVELS)}}


def _truth_labels(levels) -> np.ndarray:  # noqa: ANN001
    return np.array([[t.disc_herniation, t.canal_stenosis, t.foraminal_stenosis_left, t.foraminal_stenosis_right]
                     for t in levels], np.uint8)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines.phantoms.dicom import write_series
    from pipelines.phantoms.mri import generate_series
    from pipelines.phantoms.mri_shift import make_case, parse_shifts, write_case

    root = tmp_path_factory.mktemp("mri_user")
    images, anns = [], []
    # series 1: renderer A as written (stored == canonical), annotated on its mid slice
    ph = generate_series(5_100_001, weighting="T2")
    files = write_series(ph, root / "series_a")
    (root / "series_a" / "notes.txt").write_text("not DICOM: skipped")  # stray files beside the images
    (root / "series_a" / "thumb").write_bytes(b"\x89PNG....")
    f = files[ph.mid_slice]
    images.append({"id": 1, "file_name": str(f.relative_to(root))})
    anns.append(_annotation(1, np.array([t.disc_centre_px for t in ph.levels]), _truth_labels(ph.levels)))
    # series 2: flipped (anterior on the right, head at the bottom), annotated on a neighbouring slice
    case = make_case("a", 5_100_002, parse_shifts(["flip"]))
    files2 = sorted(write_case(case, root / "series_flip"))
    mm = np.array([t.disc_centre_mm for t in case.levels])
    f2 = files2[len(files2) // 2 + 1]
    images.append({"id": 2, "file_name": str(f2.relative_to(root))})
    anns.append(_annotation(2, stored_points(f2, mm), _truth_labels(case.levels)))
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 7, "name": "cervical_discs", "keypoints": list(reversed(LEVELS))}]}
    # the category lists the levels in another order: reorder the keypoints to match
    for a in anns:
        flat = np.asarray(a["keypoints"]).reshape(5, 3)
        a["keypoints"] = [float(v) for v in flat[::-1].reshape(-1)]
    (root / "labels.json").write_text(json.dumps(doc))
    return {"root": root, "phantom": ph, "case": case}


def test_targets_match_the_phantom_training_code(user_folder: dict, tmp_path: Path) -> None:
    entries = read_labels(user_folder["root"])
    assert len(entries) == 2
    rng = np.random.default_rng(0)
    a = series_example(entries[0], 1, rng)
    want = phantom_samples(user_folder["phantom"], np.random.default_rng(0))
    assert np.abs(a["loc_centres"][0] - want.loc_centres).max() < 1e-3
    assert np.abs(a["loc_image"][0] - want.loc_image).max() < 1e-4
    assert (a["labels"] == want.labels).all()
    # the flipped series annotated one slice off the middle: the same targets as data.case_samples (the path that
    # trained mri_v2 on shifted series) gives from the truth in patient mm
    b = series_example(entries[1], 1, rng)
    ref = case_samples("a", 5_100_002, ["flip"], ("T2",), 1, np.random.default_rng(0), tmp_path)[0]
    assert np.abs(b["loc_centres"][0] - ref["loc_centres"][0]).max() < 1e-3
    assert np.abs(b["loc_image"][0] - ref["loc_image"][0]).max() < 1e-4
    assert (b["labels"] == ref["labels"]).all()
    assert 1.0 < b["off_slice_mm"] < 6.0
    d = user_dataset([user_folder["root"]], views=3)
    assert d["loc_image"].shape == (6, 128, 128) and d["mid_crops"].shape == (2, 2, 5, 3, 32, 64)
    assert d["side_crops"].shape == (2, 2, 5, 2, 3, 32, 64) and not d["loc_has_mask"].any()


def test_finetune_from_shipped_weights_and_load(user_folder: dict, tmp_path: Path) -> None:
    from models.mri.predictor import MriPredictor
    from models.mri.train import cli
    from pipelines.mri.preprocessing import normalise

    out = tmp_path / "mri_site.pt"
    root = str(user_folder["root"])
    rc = cli(["--train-count", "1", "--train-seed", "5_100_010", "--user-data", root, "--user-repeat", "2",
              "--user-val", root, "--init", str(DEFAULT_WEIGHTS), "--loc-epochs", "1", "--cls-epochs", "1",
              "--batch", "4", "--cls-batch", "8", "--lr", "1e-4", "--views", "1", "--out", str(out)])
    assert rc == 0 and out.exists()
    model = MriPredictor.load(out)
    assert model.version == "mri-2.0.0+site"
    assert model.config["user_data"]["series"] == 2 and model.config["user_data"]["repeat"] == 2
    shipped = MriPredictor.load(None)
    changed = [k for k, v in model.classifier.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, shipped.classifier.state_dict()[k])]
    assert changed, "fine-tuning did not change the classifier"
    # the fine-tuned model still runs the pipeline's analysis and finds the annotated discs
    ph = user_folder["phantom"]
    vol = normalise(ph.volume.astype(np.float32))
    left = int(np.argmin(np.abs(np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice] - 14)))
    right = int(np.argmin(np.abs(np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice] + 14)))
    res = model.analyse(vol, ph.pixel_spacing_mm, ph.mid_slice, left, right)
    err_mm = np.hypot(*(res.centres_px - np.array([t.disc_centre_px for t in ph.levels])).T) * ph.pixel_spacing_mm[0]
    assert err_mm.max() < 3.0, err_mm
    assert set(res.probabilities) == set(TASKS)
    # site series alone (no phantoms), written with a chosen version
    out2 = tmp_path / "mri_site_only.pt"
    assert cli(["--train-count", "0", "--user-data", root, "--user-val", root, "--init", str(out), "--loc-epochs", "1",
                "--cls-epochs", "1", "--batch", "2", "--cls-batch", "4", "--lr", "1e-4", "--version", "site-7",
                "--out", str(out2)]) == 0
    assert MriPredictor.load(out2).version == "site-7"


def _write(root: Path, doc: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return root


def test_bad_labels_are_refused_with_a_clear_message(user_folder: dict, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from models.mri.train import cli

    good = json.loads((user_folder["root"] / "labels.json").read_text())
    for a in good["images"]:
        a["file_name"] = str(user_folder["root"] / a["file_name"])
    with pytest.raises(UserLabelError, match="no labels file"):
        read_labels(tmp_path / "empty")
    with pytest.raises(UserLabelError, match="not readable as JSON"):
        read_labels(_write(tmp_path / "broken", "{not json"))
    doc = json.loads(json.dumps(good))
    del doc["annotations"][1]["grades"]["C4-C5"]["canal_stenosis"]
    with pytest.raises(UserLabelError, match="level C4-C5 task canal_stenosis"):
        read_labels(_write(tmp_path / "grade", doc))
    doc = json.loads(json.dumps(good))
    doc["categories"][0]["keypoints"][0] = "C1-C2"
    with pytest.raises(UserLabelError, match="five levels"):
        read_labels(_write(tmp_path / "names", doc))
    doc = json.loads(json.dumps(good))
    doc["annotations"][0]["keypoints"][2] = 0
    with pytest.raises(UserLabelError, match="not placed"):
        read_labels(_write(tmp_path / "unplaced", doc))
    doc = json.loads(json.dumps(good))
    doc["images"][0]["file_name"] = "nowhere/x.dcm"
    with pytest.raises(UserLabelError, match="not found"):
        read_labels(_write(tmp_path / "missing", doc))
    # the CLI stops before any training (exit 2, the reason on stderr)
    doc = json.loads(json.dumps(good))
    doc["annotations"][0]["grades"]["C2-C3"]["disc_degeneration"] = 3
    rc = cli(["--train-count", "0", "--user-data", str(_write(tmp_path / "cli", doc)), "--out", str(tmp_path / "x.pt")])
    assert rc == 2 and "must be 0 or 1" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_phantom_folder_writer_gives_a_readable_site_folder(tmp_path: Path) -> None:
    from models.mri.phantom_folder import cli as write_cli
    from pipelines.phantoms.mri_shift import make_case

    assert write_cli(["--out", str(tmp_path / "site"), "--style", "a", "--seed", "5_100_020", "--count", "1",
                      "--shift", "upside"]) == 0
    d = user_dataset([tmp_path / "site"], views=1)
    case = make_case("a", 5_100_020, {"upside": None})
    assert (d["labels"][0] == _truth_labels(case.levels)).all() and d["off_slice_mm"][0] < 4.0
    assert (np.diff(d["loc_centres"][0][:, 1]) > 0).all()  # canonical: C2-C3 on top even though stored upside down
