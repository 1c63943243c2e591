"""A few CPU training steps on simple drawn spines: the multi-task loss goes down; export + reload works."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.path import Path as MplPath

from models.common.checkpoint import load_checkpoint
from models.xray_keypoints.data import AugmentConfig, KeypointDataset, RawSample
from models.xray_keypoints.losses import LossConfig, multitask_loss
from models.xray_keypoints.network import KeypointNet, NetworkConfig
from models.xray_keypoints.predictor import KeypointPredictor
from models.xray_keypoints.train import export
from pipelines.xray.preprocessing import AffineTransform, model_input

torch.set_num_threads(1)


def drawn_spine(rng: np.random.Generator, rows: int = 200, cols: int = 160) -> RawSample:
    """Six bright quadrilaterals (C2..C7, anterior to the right) and six spinolaminar dots."""
    img = rng.normal(0.15, 0.02, (rows, cols))
    yy, xx = np.mgrid[0:rows, 0:cols]
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    kps, sl = [], []
    x0, y = cols * 0.55 + rng.uniform(-8, 8), rows * 0.15
    for _ in range(6):
        h, w = rng.uniform(16, 20), rng.uniform(26, 30)
        asup, ainf, psup, pinf = (x0 + w / 2, y), (x0 + w / 2, y + h), (x0 - w / 2, y), (x0 - w / 2, y + h)
        kps += [asup, ainf, psup, pinf]
        inside = MplPath([asup, ainf, pinf, psup]).contains_points(grid).reshape(rows, cols)
        img[inside] += 0.6
        sl.append((x0 - w / 2 - 14, y + h / 2))
        img[(xx - sl[-1][0]) ** 2 + (yy - sl[-1][1]) ** 2 < 6] += 0.6
        y += h + 6
        x0 += rng.uniform(-3, 1)
    kp = np.array(kps + sl)
    return RawSample(np.clip(img, 0, 1).astype(np.float32), kp, np.ones(30, bool), (0.25, 0.25), int(rng.integers(3)))


def test_loss_goes_down_in_a_few_steps() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    samples = [drawn_spine(rng) for _ in range(4)]
    ds = KeypointDataset(samples, AugmentConfig(size=96), seed=0)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ds[0]}
    model = KeypointNet(NetworkConfig(widths=(8, 16, 32), blocks=1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    cfg = LossConfig()
    model.train()
    losses = []
    for _ in range(6):
        loss, parts = multitask_loss(model(batch["image"]), batch, cfg)
        assert set(parts) >= {"heatmap", "coord", "measure", "view"}
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses


def test_export_and_reload_predicts_in_original_pixels(tmp_path) -> None:
    model = KeypointNet(NetworkConfig(widths=(8, 16, 32), blocks=1)).eval()
    path = tmp_path / "w.pt"
    export(model, path, net=model.config, loss=LossConfig(), aug=AugmentConfig(size=64), version="9.9.9", sigma_scale=2.0)
    pred = KeypointPredictor.load(path, device=torch.device("cpu"))
    assert pred.version == "9.9.9" and pred.size == 64
    img = drawn_spine(np.random.default_rng(1), rows=300, cols=120).image
    out = pred.predict(img)
    assert out.keypoints.shape == (30, 2) and out.sigma_px.shape == (30,)
    # first pass alone: model-grid coordinates mapped through the letterbox (5 original px per model px)
    first = pred.predict(img, refine=False)
    xy, sd, _ = pred._forward(model_input(img, AffineTransform.letterbox(300, 120, 64))[None])
    assert np.allclose(first.keypoints, xy[0] * 300 / 64 + [(120 - 1) / 2 - 300 / 64 * 31.5, (300 - 1) / 2 - 300 / 64 * 31.5], atol=1e-4)
    assert np.allclose(first.sigma_px, sd[0] * 300 / 64 * 2.0, atol=1e-4)
    assert abs(sum(out.view_probs.values()) - 1) < 1e-5
    # fp16 weights on disk
    ck = load_checkpoint(path, "xray_keypoints")
    assert ck.meta["architecture"] == "single" and ck.parts["network"]["head_high.weight"].dtype == torch.float16
