"""The cascade's geometry: oriented crops map to original pixels and back; crops show the right pixels;
the stage-2 training examples put each vertebra upright with anterior to the right; a cascade weights file
exports, reloads and predicts in original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.common.checkpoint import load_checkpoint
from models.xray_keypoints.cascade import (
    N_LEVELS,
    assemble,
    crop_transform,
    sample_crops,
    spine_frames,
    stage1_targets,
    vertebra_points,
)
from models.xray_keypoints.cascade_train import (
    CropConfig,
    StoredView,
    export_cascade,
    stage1_network,
    stage2_examples,
    stage2_network,
)
from models.xray_keypoints.losses import LossConfig
from models.xray_keypoints.network import KeypointNet
from models.xray_keypoints.predictor import KeypointPredictor

torch.set_num_threads(1)


def _spine(facing: int = 1, tilt_deg: float = 15.0) -> np.ndarray:
    """(30, 2) keypoints of an idealised spine: 6 boxes 16 x 13 px, 18 px apart, tilted, anterior = ``facing``."""
    a = np.deg2rad(tilt_deg)
    down = np.array([np.sin(a), np.cos(a)])
    ant = np.array([np.cos(a), -np.sin(a)]) * facing
    kp = np.zeros((30, 2))
    for v in range(6):
        c = np.array([200.0, 100.0]) + 18 * v * down
        kp[4 * v : 4 * v + 4] = [c + 8 * ant - 6.5 * down, c + 8 * ant + 6.5 * down,
                                 c - 8 * ant - 6.5 * down, c - 8 * ant + 6.5 * down]
        kp[24 + v] = c - 22 * ant
    return kp


@pytest.mark.parametrize("facing", [1, -1])
def test_frames_point_cranial_and_anterior(facing: int) -> None:
    kp = _spine(facing)
    pts = stage1_targets(kp)
    assert np.allclose(pts[:6], kp[:24].reshape(6, 4, 2).mean(1)) and np.allclose(pts[6:], kp[24:])
    up, ant, gap = spine_frames(pts[:6], pts[6:])
    assert gap == pytest.approx(18.0)
    a = np.deg2rad(15.0)
    assert np.allclose(up, -np.array([np.sin(a), np.cos(a)]), atol=1e-9)
    assert np.allclose(ant, np.array([np.cos(a), -np.sin(a)]) * facing, atol=1e-9)


@pytest.mark.parametrize("facing", [1, -1])
def test_crop_round_trip_and_canonical_orientation(facing: int) -> None:
    kp = _spine(facing)
    pts = stage1_targets(kp)
    up, ant, gap = spine_frames(pts[:6], pts[6:])
    t = crop_transform(pts[2], up[2], ant[2], 4 * gap, 96)
    m = t.to_model(vertebra_points(kp, 2))
    assert np.allclose(t.to_original(m), vertebra_points(kp, 2), atol=1e-9)
    assert t.scale == pytest.approx(4 * 18 / 96)
    # centre of the crop = the body centre; anterior corners to the right, superior above, spinolaminar left
    assert np.allclose(m[:4].mean(0), [47.5, 47.5], atol=1e-9)
    assert (m[:2, 0] > m[2:4, 0]).all() and m[0, 1] < m[1, 1] and m[2, 1] < m[3, 1] and m[4, 0] < m[2, 0]
    assert np.allclose(assemble(np.stack([vertebra_points(kp, v) for v in range(N_LEVELS)])), kp)


def test_sample_crops_reads_the_right_pixels_with_reduction() -> None:
    """A bright square in a large image lands where the transform says, also when the image is block-reduced."""
    img = np.zeros((1200, 1000), np.float32)
    img[590:611, 390:411] = 1.0  # centred on (x 400, y 600)
    t = crop_transform(np.array([420.0, 580.0]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), 256.0, 64)
    crop = sample_crops(img, [t])[0]  # 4 original px per crop px -> reduced by 4 first
    yy, xx = np.nonzero(crop > 0.5)
    centre = t.to_original(np.array([xx.mean(), yy.mean()]))
    assert np.allclose(centre, [400, 600], atol=2.0)
    # mirrored frame (anterior to the left in the image): the square appears mirrored in the crop
    tm = crop_transform(np.array([420.0, 580.0]), np.array([0.0, -1.0]), np.array([-1.0, 0.0]), 256.0, 64)
    cm = sample_crops(img, [tm])[0]
    assert np.allclose(cm, crop[:, ::-1], atol=0.05)


def _stored(rng: np.random.Generator, facing: int) -> StoredView:
    kp = _spine(facing) + rng.normal(0, 0.5, (30, 2))
    img = (rng.random((400, 400)) * 60).astype(np.uint8)
    return StoredView(img, kp, np.ones(30, bool), (0.25, 0.25), 0, img[::2, ::2].astype(np.float16), kp / 2)


def test_stage2_examples_are_upright_with_anterior_right() -> None:
    rng = np.random.default_rng(0)
    cfg = CropConfig(size=64)
    b = stage2_examples([_stored(rng, 1), _stored(rng, -1)], cfg, rng)
    assert b["image"].shape == (12, 2, 64, 64) and b["keypoints"].shape == (12, 5, 2)
    kp = b["keypoints"].numpy()
    assert (kp[:, 0, 0] > kp[:, 2, 0]).all() and (kp[:, 0, 1] < kp[:, 1, 1]).all() and (kp[:, 4, 0] < kp[:, 2, 0]).all()
    # the level channel is constant per crop and encodes C2..C7
    lv = b["image"][:, 1].numpy()
    assert np.allclose(lv[:6, 0, 0], (np.arange(6) - 2.5) / 2.5) and np.ptp(lv[0]) == 0


def test_cascade_export_reload_predicts_in_original_pixels(tmp_path) -> None:
    s1 = KeypointNet(stage1_network((8, 16, 32))).eval()
    s2 = KeypointNet(stage2_network((8, 16, 32))).eval()
    path = tmp_path / "cascade.pt"
    export_cascade({"network": s1.config.to_dict(), "size": 64, "loss": LossConfig().to_dict(), "model": s1.state_dict()},
                   {"network": s2.config.to_dict(), "crop": CropConfig(size=48).__dict__,
                    "loss": LossConfig().to_dict(), "model": s2.state_dict()},
                   path, version="9.9.9", sigma_scale=1.5)
    pred = KeypointPredictor.load(path, device=torch.device("cpu"))
    assert pred.cascade and pred.version == "9.9.9" and pred.size == 64 and pred.iterations == 2
    img = np.random.default_rng(2).random((300, 200)).astype(np.float32)
    out = pred.predict(img)
    assert out.keypoints.shape == (30, 2) and out.sigma_px.shape == (30,) and (out.sigma_px > 0).all()
    assert abs(sum(out.view_probs.values()) - 1) < 1e-5
    coarse = pred.predict(img, refine=False)
    assert coarse.keypoints.shape == (30, 2)
    # each stage-2 point lies inside its vertebra's crop around the stage-1 centre (side 4 x gap, any rotation)
    c = coarse.keypoints[:24:4]
    gap = np.linalg.norm(np.diff(c, axis=0), axis=1).mean()
    for v in range(N_LEVELS):
        d = np.linalg.norm(vertebra_points(out.keypoints, v)[:, None] - c[v], axis=-1)
        assert (d <= 2 * np.sqrt(2) * 4 * gap + 1e-6).all()
    ck = load_checkpoint(path, "xray_keypoints")  # the one schema, fp16 on disk
    assert ck.meta["architecture"] == "cascade" and ck.parts["stage2"]["head_high.weight"].dtype == torch.float16


def test_fallback_recovers_a_misplaced_stage1_centre() -> None:
    """Shipped weights: with the C2 centre moved 2 centre gaps cranially (as when stage 1 fails on C2), the plain
    stage-2 passes lock onto the wrong structure, the fallback re-crops C2 from the other vertebrae and finds it."""
    from pipelines.phantoms.xray import generate_study
    from pipelines.results import View
    from pipelines.xray.preprocessing import to_unit_range

    pred = KeypointPredictor.load(None, device=torch.device("cpu"))
    pv = generate_study(990_500, shape=(1000, 850)).views[View.NEUTRAL]
    img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
    mm = pv.pixel_spacing_mm[0]
    s1 = stage1_targets(pv.keypoints)
    up, _, gap = spine_frames(s1[:6], s1[6:])
    s1[0] += 2.0 * gap * up[0]
    pts, _, _ = pred._passes([img], [s1[:6]], [s1[6:]], [None], pred.iterations)
    plain = np.hypot(*(pts[0][0, :4] - pv.keypoints[:4]).T) * mm
    kp, _ = pred._stage2([img], [s1])
    fixed = np.hypot(*(kp[0][:4] - pv.keypoints[:4]).T) * mm
    assert plain.max() > 5.0, plain
    assert fixed.max() < 1.5, fixed
    # the other vertebrae are the same as without the fallback
    assert np.allclose(kp[0][4:24], pts[0][1:, :4].reshape(20, 2))
