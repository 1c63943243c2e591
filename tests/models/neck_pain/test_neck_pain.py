"""Seed 000, postoperative neck-pain recovery: the synthetic outcome model, ABPDC / FPRAN, a tiny training
run and the predictor on phantom crops."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.neck_pain.data import Crop, prepare, render_case, similarity
from models.neck_pain.evaluate import evaluate
from models.neck_pain.network import (
    ABPDC,
    CDC,
    FPRAN,
    FUSED,
    WIDTHS,
    CrossDiff,
    NeckPainNet,
    alignment_loss,
    warp,
)
from models.neck_pain.train import load, load_pairs, train, val_metrics
from pipelines.phantoms.mri import generate_series
from pipelines.phantoms.outcome import B0, COEF, bayes_auc, logit_of, outcome_case

torch.set_num_threads(1)


def test_neck_pain_outcome_is_deterministic_and_monotone_in_its_drivers() -> None:
    a, b = outcome_case(3), outcome_case(3)
    assert a == b and 0 < a.probability < 1
    base = {k: 0.0 for k in COEF}
    assert logit_of(base) == B0
    for key in ("cord_signal", "n_compressed", "modic", "hard_compression", "lordosis_loss_deg", "sva_excess_mm",
                "age_dev", "ndi_dev", "log_duration"):
        worse = logit_of({**base, key: 1.0})
        assert worse < logit_of(base), key  # every image driver and risk factor lowers P(recovery)
    assert logit_of({**base, "vas_dev": 1.0}) > logit_of(base)
    # the terms are what the drivers and clinical variables say
    t = a.terms
    assert t["cord_signal"] == float(any(g == 3 for g in a.canal_grades))
    assert t["n_compressed"] == sum(g >= 2 for g in a.canal_grades)
    assert t["lordosis_loss_deg"] == max(0.0, 10 - a.drivers["cobb_deg"]) or math.isclose(
        t["lordosis_loss_deg"], max(0.0, 10 - a.drivers["cobb_deg"]), abs_tol=1e-3)
    assert (a.modic_level is not None) == bool(a.drivers["modic"])
    (gain, texture), = a.endplate_marrow.values()
    assert 0.55 <= gain <= 1.6 and (texture > 0) == bool(a.drivers["modic"])


def test_neck_pain_bayes_auc_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 40)
    num = sum(p[i] * (1 - p[j]) for i in range(40) for j in range(40) if i != j and p[i] > p[j])
    den = sum(p[i] * (1 - p[j]) for i in range(40) for j in range(40) if i != j)
    assert math.isclose(bayes_auc(p), num / den, rel_tol=1e-9)
    cases = [outcome_case(s) for s in range(100000, 100025)]
    assert 0.7 < bayes_auc(np.array([c.probability for c in cases])) < 0.97
    assert 0.25 < np.mean([c.recovered for c in cases]) < 0.85


def test_neck_pain_endplate_texture_is_opt_in_and_textured() -> None:
    kw = {"shape": (192, 192), "n_slices": 7}
    plain = generate_series(5, **kw)
    assert np.array_equal(plain.volume, generate_series(5, endplate_marrow=None, **kw).volume)
    flat = generate_series(5, endplate_marrow={"C4-C5": (1.4, 0.0)}, **kw)
    mottled = generate_series(5, endplate_marrow={"C4-C5": (1.4, 0.6)}, **kw)
    zone = flat.volume[3] != plain.volume[3]
    assert zone.sum() > 50  # the grey level of the zone changed
    assert flat.volume[3][zone].mean() > plain.volume[3][zone].mean()  # gain 1.4
    cv = lambda v: v.volume[3][zone].std() / v.volume[3][zone].mean()  # noqa: E731 - relative texture
    assert cv(mottled) > 1.3 * cv(flat)


def test_neck_pain_difference_convolutions_ignore_grey_level_offsets() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 4, 12, 12)
    cdc = CDC(4, 3, theta=1.0)
    assert torch.allclose(cdc(x)[..., 1:-1, 1:-1], cdc(x + 5.0)[..., 1:-1, 1:-1], atol=1e-4)
    cross = CrossDiff(4, 3)
    m = torch.rand(2, 4, 12, 12)
    assert torch.allclose(cross(m, x)[..., 1:-1, 1:-1], cross(m + 2.0, x + 2.0)[..., 1:-1, 1:-1], atol=1e-4)
    assert not torch.allclose(cross(m, x), cross(x, m))  # the two directions differ


def test_neck_pain_abpdc_level_kernel_equals_its_four_branches() -> None:
    torch.manual_seed(0)
    net = ABPDC()
    for i, w in enumerate(WIDTHS):
        torch.nn.init.uniform_(net.level_fuse[i].a, 0.1, 2.0)
        x, m = torch.rand(2, w, 8, 8), torch.rand(2, w, 8, 8)
        fused = torch.nn.functional.conv2d(torch.cat([x, m], 1), net.level_kernel(i), padding=1)
        assert torch.allclose(fused, net.level_fuse[i](net.branches(i, x, m)), atol=1e-5)


def test_neck_pain_network_shapes_and_variants() -> None:
    x, m = torch.rand(2, 1, 128, 128), torch.rand(2, 1, 128, 128)
    c, mask = torch.randn(2, 5), torch.ones(2, 5)
    fx = [torch.rand(2, w, 32 // 2**i, 32 // 2**i) for i, w in enumerate(WIDTHS)]
    out = ABPDC()(fx, fx)
    assert [tuple(o.shape) for o in out] == [(2, FUSED, 32, 32), (2, FUSED, 16, 16), (2, FUSED, 8, 8)]
    warped, thetas = FPRAN()(fx, fx)
    assert [w.shape for w in warped] == [f.shape for f in fx] and all(t.shape == (2, 2, 3) for t in thetas)
    for kw in ({}, {"abpdc": False}, {"fpran": False}, {"clinical": False}, {"images": False}):
        logit, th = NeckPainNet(**kw).eval()(x, m, c, mask)
        assert logit.shape == (2,) and (th is None) == (not kw.get("fpran", True) or kw.get("images") is False)


def test_neck_pain_fpran_recovers_a_known_warp() -> None:
    """Toy pair: MRI = X-ray image under a known similarity; FPRAN alone, on fixed random feature pyramids,
    learns to undo it from the alignment loss within a few dozen steps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.avg_pool2d(torch.rand(8, 1, 64, 64, generator=g), 5, 1, 2)
    proj = [torch.nn.Conv2d(1, w, 3, padding=1) for w in WIDTHS]

    def pyramid(img: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [torch.tanh(p(torch.nn.functional.adaptive_avg_pool2d(img, 32 // 2**i) * 4)) for i, p in enumerate(proj)]

    ang = torch.empty(8).uniform_(-0.25, 0.25, generator=g)
    s = torch.exp(torch.empty(8).uniform_(-0.15, 0.15, generator=g))
    t = torch.empty(8, 2).uniform_(-0.15, 0.15, generator=g)
    theta = torch.stack([torch.stack([s * torch.cos(ang), -s * torch.sin(ang), t[:, 0]], 1),
                         torch.stack([s * torch.sin(ang), s * torch.cos(ang), t[:, 1]], 1)], 1)
    # mri(theta(q)) = xray(q): build the MRI by sampling the X-ray at theta^-1
    inv = torch.linalg.inv(torch.cat([theta, torch.tensor([[[0.0, 0, 1]]]).expand(8, 1, 3)], 1))[:, :2]
    mri = warp(base, inv, (64, 64))
    fx, fm = pyramid(base), pyramid(mri)
    net = FPRAN()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    with torch.no_grad():
        first = float(alignment_loss(net(fx, fm)[1], theta))
    for _ in range(50):
        loss = alignment_loss(net(fx, fm)[1], theta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.25 * first


def test_neck_pain_similarity_and_crop_geometry() -> None:
    c = Crop((50.0, 60.0), 20.0, 0.3, True)
    pts = np.array([[45.0, 55.0], [52.0, 70.0], [60.0, 58.0]])
    q = c.to_crop(pts)
    back = (c.matrix() @ np.c_[q, np.ones(3)].T).T[:, :2]
    assert np.allclose(back, pts)
    th = similarity(q, q * 0.8 + 0.1)
    assert np.allclose(th, [[0.8, 0, 0.1], [0, 0.8, 0.1]], atol=1e-5)


def test_neck_pain_tiny_training_run(tmp_path: Path) -> None:
    data = tmp_path / "pairs.npz"
    meta = prepare(data, range(0, 6))
    assert meta["cases"] == 6
    r = render_case(0, False, np.random.default_rng(0))
    assert r["xray"].shape == r["mri"].shape == (128, 128) and r["theta"].shape == (2, 3)
    out = tmp_path / "w.pt"
    m = train([data], out, "full", minutes=1.0, seed=0, batch=4, lr=1e-3, max_steps=3)
    assert m["steps"] == 3 and out.stat().st_size < 2_000_000
    net, meta2 = load(out)
    assert meta2["variant"] == "full" and net.config["fpran"]
    res = evaluate([data], [out])
    (row,) = res["models"].values()
    assert 0 <= row["brier"] <= 1 and row["alignment_error_px"] is not None
    assert 0 <= res["bayes_metrics"]["brier"] <= 1


@pytest.mark.skipif(not Path("models/neck_pain/neck_pain_v1.pt").exists(), reason="weights not trained")
def test_neck_pain_shipped_weights_predict_on_phantom_crops() -> None:
    from models.neck_pain.predictor import NeckPainPredictor
    from pipelines.phantoms.patient import virtual_patient, xray_anatomy
    from pipelines.phantoms.xray import generate_study, unit_image
    from pipelines.results import View

    pred = NeckPainPredictor.load()
    assert pred.meta["variant"] == "full" and "research" in pred.algorithm.model_card
    vp = virtual_patient(100001)
    st = generate_study(100001, shape=(320, 320), anatomy=xray_anatomy(vp))
    pv = st.views[View.NEUTRAL]
    mr = generate_series(100001, patient=vp, shape=(192, 192), n_slices=7,
                         endplate_marrow=outcome_case(100001).endplate_marrow)
    centres = np.array([t.disc_centre_px for t in mr.levels])
    p = pred.predict(unit_image(pv.pixels, pv.photometric), np.asarray(pv.keypoints), mr.volume[mr.mid_slice],
                     centres, mr.pixel_spacing_mm[0], {"age": float(vp.age), "female": float(vp.sex == "F")})
    assert 0.0 < p < 1.0
    with pytest.raises(ValueError):
        pred.predict(unit_image(pv.pixels, pv.photometric), np.asarray(pv.keypoints)[:10], mr.volume[3], centres, 1.0)


def _random_pairs(path: Path, seeds: range, rng: np.random.Generator) -> Path:
    """A tiny stand-in for ``data.prepare`` output (random crops, true alignments near identity)."""
    n = len(seeds)
    theta = np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)) + rng.normal(0, 0.05, (n, 2, 3)).astype(np.float32)
    p = rng.uniform(0.1, 0.9, n).astype(np.float32)
    np.savez(path, xray=rng.integers(0, 255, (n, 128, 128), dtype=np.uint8),
             mri=rng.integers(0, 255, (n, 128, 128), dtype=np.uint8), theta=theta, label=rng.random(n) < p, p_true=p,
             seeds=np.array(seeds), clinical=rng.normal(0, 1, (n, 5)).astype(np.float32),
             clinical_mask=np.ones((n, 5), np.float32))
    return path


def test_neck_pain_training_keeps_the_best_validation_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = _random_pairs(tmp_path / "tr.npz", range(0, 20), rng)
    out = tmp_path / "w.pt"
    m = train([data], out, "no-fpran", minutes=1.0, seed=0, batch=4, lr=3e-3, max_steps=7, val_last=6, eval_every=2,
              weight_decay=0.05)
    assert m["train_cases"] == 14 and m["val_cases"] == 6 and m["val_seeds"] == [14, 19]
    assert [c["step"] for c in m["val_curve"]] == [2, 4, 6, 7]  # every 2 steps and at the end
    bces = [c["bce"] for c in m["val_curve"]]
    assert m["selected_step"] == m["val_curve"][int(np.argmin(bces))]["step"]
    assert m["val"]["bce"] == pytest.approx(min(bces), abs=1e-4)
    net, meta = load(out)  # the saved weights are the selected checkpoint, not the last step
    dv = {k: v[14:] for k, v in load_pairs([data]).items()}
    again = val_metrics(net, dv)
    assert again["bce"] == pytest.approx(meta["val"]["bce"], abs=5e-3)
    # a separate validation file works the same; overlapping patients are refused
    val = _random_pairs(tmp_path / "va.npz", range(100, 106), rng)
    m2 = train([data], tmp_path / "w2.pt", "clinical-only", minutes=1.0, seed=0, batch=4, lr=3e-3, max_steps=3,
               val=val, eval_every=10)
    assert m2["train_cases"] == 20 and [c["step"] for c in m2["val_curve"]] == [3] and m2["selected_step"] == 3
    with pytest.raises(ValueError, match="overlap"):
        train([data], tmp_path / "w3.pt", "clinical-only", minutes=1.0, seed=0, batch=4, lr=3e-3, max_steps=1, val=data)
