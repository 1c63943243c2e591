"""The shipped cascade trains on a site's own annotations: COCO (all 30 points, or only the 24 corners) and labelme
folders become cascade training views (reduced, with their spacing, not-labelled points masked, views without enough
vertebrae dropped), and ``cspine-node train xray --data FOLDER`` fine-tunes the shipped weights into a file the
predictor runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.common.checkpoint import load_checkpoint, same_tensors
from models.xray_keypoints import DEFAULT_WEIGHTS
from models.xray_keypoints.cascade import spine_frames, stage1_targets
from models.xray_keypoints.cascade_data import coco_views, frame_points, labelme_views, stage1_labelled
from models.xray_keypoints.cascade_train import CropConfig, stage2_examples
from models.xray_keypoints.predictor import KeypointPredictor
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray.coco import write_coco
from pipelines.results import KEYPOINT_NAMES

torch.set_num_threads(1)


def _coco(tmp: Path, seeds: range, *, corners_only: bool = False, shape=(360, 300)) -> Path:  # noqa: ANN001
    """Renderer-A phantoms as a COCO folder (16-bit PNG); ``corners_only``: the corrections layout (24 names)."""
    path = write_coco([generate_study(s, shape=shape) for s in seeds], tmp, image_format="png")
    if corners_only:
        doc = json.loads(path.read_text())
        doc["categories"][0]["keypoints"] = list(KEYPOINT_NAMES[:24])
        for a in doc["annotations"]:
            a["keypoints"] = a["keypoints"][:72]
            a["source_sr_uid"], a["corrected_model_version"] = "1.2.3.4", "1.1.1"
        path.write_text(json.dumps(doc))
    return path


def test_coco_becomes_cascade_views_with_masks(tmp_path: Path) -> None:
    path = _coco(tmp_path / "c", range(990100, 990102), shape=(700, 560))
    doc = json.loads(path.read_text())
    # one view keeps only C2 and C3 fully labelled: dropped (the crops need 3 vertebrae)
    doc["annotations"][1]["keypoints"] = [v if i < 24 else 0 for i, v in enumerate(doc["annotations"][1]["keypoints"])]
    path.write_text(json.dumps(doc))
    got = coco_views(path, max_side=400)
    assert len(got.views) == 5 and len(got.dropped) == 1 and "2 fully labelled" in got.dropped[0]
    study = generate_study(990100, shape=(700, 560))
    pv = next(iter(study.views.values()))
    v = got.views[0]
    assert v.image.dtype == np.uint8 and max(v.image.shape) <= 400 and v.labelled.all()
    f = 2  # 700 rows -> block factor 2
    assert np.allclose(v.keypoints, (pv.keypoints - (f - 1) / 2) / f, atol=1e-3)
    assert np.allclose(v.spacing_mm, np.asarray(pv.pixel_spacing_mm) * f)
    assert max(v.small.shape) <= 320


def test_corners_only_views_mask_spinolaminar_targets(tmp_path: Path) -> None:
    path = _coco(tmp_path / "c", range(990110, 990111), corners_only=True)
    views = coco_views(path).views
    assert len(views) == 3
    v = views[0]
    assert v.labelled[:24].all() and not v.labelled[24:].any()
    assert stage1_labelled(v.labelled).tolist() == [True] * 6 + [False] * 6
    batch = stage2_examples(views, CropConfig(), np.random.default_rng(0))
    assert batch["image"].shape[0] == 18
    assert not batch["valid"][:, 4].any() and batch["valid"][:, :4].float().mean() > 0.9


def test_frames_from_partial_labels_match_the_full_frames() -> None:
    study = generate_study(990120, shape=(360, 300))
    kp = next(iter(study.views.values())).keypoints
    full = stage1_targets(kp)
    up, ant, gap = spine_frames(full[:6], full[6:])
    lab = np.ones(30, bool)
    lab[24:] = False  # no spinolaminar points
    lab[20:24] = False  # C7 missing
    centres, sl = frame_points(kp, lab)
    assert np.allclose(centres[:5], full[:5]) and np.linalg.norm(centres[5] - full[5]) < 0.25 * gap
    up2, ant2, gap2 = spine_frames(centres, sl)
    assert np.all(np.sum(ant * ant2, axis=1) > 0.9) and np.all(np.sum(up * up2, axis=1) > 0.9)
    assert gap2 == pytest.approx(gap, rel=0.1)


def test_labelme_folder_becomes_cascade_views(tmp_path: Path) -> None:
    from PIL import Image

    study = generate_study(990130, shape=(320, 280))
    pv = next(iter(study.views.values()))
    Image.fromarray((pv.pixels.astype(np.uint32) << (16 - pv.bits_stored)).astype(np.uint16)).save(tmp_path / "a.png")
    shapes = [{"label": f"C{3 + i // 4}_{i % 4 + 1}", "points": [list(map(float, pv.keypoints[4 + i]))],
               "shape_type": "point"} for i in range(20)]  # C3..C7 corners, no C2, no spinolaminar
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageHeight": 320, "imageWidth": 280,
                                                 "shapes": shapes}))
    got = labelme_views(tmp_path)
    assert len(got.views) == 1 and got.spacing_missing == 1
    v = got.views[0]
    assert v.labelled[4:24].all() and not v.labelled[:4].any() and not v.labelled[24:].any()
    assert np.allclose(v.keypoints[4:24], pv.keypoints[4:24])
    batch = stage2_examples([v], CropConfig(), np.random.default_rng(0))
    assert batch["image"].shape[0] == 5  # C2 has no labelled corners: no crop


def test_train_xray_data_folder_fine_tunes_the_shipped_cascade(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from models.xray_keypoints import train

    _coco(tmp_path / "site", range(990140, 990142), corners_only=True)
    out = tmp_path / "ft.pt"
    rc = train.cli(["--data", str(tmp_path / "site"), "--phantom-studies", "1", "--steps", "2", "--minutes", "1",
                    "--version", "1.1.1+site", "--out", str(out)])
    assert rc == 0
    log = capsys.readouterr().out
    assert "initialised 246 / 246 tensors" in log and "inherited from" in log
    assert "6 annotated views" in log and "1 phantom studies (3 views) mixed in" in log
    ck = load_checkpoint(out, "xray_keypoints")
    shipped = load_checkpoint(DEFAULT_WEIGHTS, "xray_keypoints")
    assert ck.version == "1.1.1+site" and ck.meta["architecture"] == "cascade"
    assert ck.meta["trained"]["fine_tuned_from"] == {"stage1": shipped.version, "stage2": shipped.version}
    assert ck.meta["trained"]["stage1_steps"] == 2 and ck.meta["trained"]["stage2_steps"] == 2
    for key in ("sigma_scale", "tta", "interval_calibration"):
        assert ck.meta[key] == shipped.meta[key]
    assert ck.meta["calibration"]["refitted"] is False
    assert not same_tensors(ck.parts["stage2"], shipped.parts["stage2"])  # it trained
    pred = KeypointPredictor.load(out)
    img = np.asarray(generate_study(990150, shape=(360, 300)).views.popitem()[1].pixels, np.float32)
    p = pred.predict((img - img.min()) / (img.max() - img.min()))
    assert p.keypoints.shape == (30, 2) and np.isfinite(p.keypoints).all() and len(pred.variants) == 3


def test_one_stage_trainer_stays_reachable() -> None:
    from models.xray_keypoints import train

    with pytest.raises(SystemExit) as exc:
        train.cli(["single", "--help"])
    assert exc.value.code == 0


def test_data_folder_kind_is_recognised(tmp_path: Path) -> None:
    from models.xray_keypoints.finetune import annotation_source

    coco = _coco(tmp_path / "coco", range(990160, 990161))
    assert annotation_source(coco.parent) == ["--coco", str(coco)]
    assert annotation_source(coco) == ["--coco", str(coco)]
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text(json.dumps({"imagePath": "a.png", "shapes": []}))
    assert annotation_source(tmp_path / "lm", label_map=Path("m.json")) == ["--labelme", str(tmp_path / "lm"),
                                                                             "--label-map", "m.json"]
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(SystemExit, match="no annotations|neither"):
            annotation_source(bad)


def test_unreadable_annotations_stop_with_a_message(tmp_path: Path) -> None:
    from models.xray_keypoints import cascade_train

    bad = tmp_path / "a.json"
    bad.write_text(json.dumps({"categories": [{"id": 1, "keypoints": ["C2 nose"]}], "images": [{"id": 1}],
                               "annotations": [{"image_id": 1, "keypoints": [1, 2, 2]}]}))
    with pytest.raises(SystemExit, match="not readable as COCO keypoints"):
        cascade_train.cli(["data", "--coco", str(bad), "--out", str(tmp_path / "d.pkl")])


def test_fine_tuning_one_stage_keeps_the_other_as_shipped(tmp_path: Path) -> None:
    from models.xray_keypoints.finetune import annotation_source, finetune

    coco = _coco(tmp_path / "site", range(990170, 990171))
    out = tmp_path / "s1.pt"
    cmds = finetune(annotation_source(coco), out=out, work=tmp_path / "w", init=DEFAULT_WEIGHTS, steps=1, minutes=1,
                    stages="1", log=lambda _: None)
    assert any(" take --weights " in c and "--stage 2" in c for c in cmds)
    ck, shipped = load_checkpoint(out, "xray_keypoints"), load_checkpoint(DEFAULT_WEIGHTS, "xray_keypoints")
    assert same_tensors(ck.parts["stage2"], shipped.parts["stage2"])
    assert not same_tensors(ck.parts["stage1"], shipped.parts["stage1"])
    assert ck.meta["stage2"] == shipped.meta["stage2"] and ck.meta["trained"]["stage2_steps"] == 0
    with pytest.raises(SystemExit, match="from scratch"):
        finetune([], out=out, work=tmp_path / "w2", init=None, stages="2")
