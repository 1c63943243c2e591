"""The out-of-distribution gate (``models.common.ood``): shrunk covariance, Mahalanobis distance, held-out threshold,
storage in a checkpoint's meta; and the shipped classifiers' gates on inputs far from their training data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.ood import REASON, FeatureGate, fit_gate, ledoit_wolf
from pipelines.vocabulary import NOT_ASSESSABLE


def _data(n: int = 400, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


def test_ledoit_wolf_matches_the_published_estimator() -> None:
    x = _data(60, 12)
    xc = x - x.mean(axis=0)
    cov, s = ledoit_wolf(xc)
    # Ledoit & Wolf (2004) as written in scikit-learn's ledoit_wolf_shrinkage, computed independently here
    n, d = xc.shape
    x2 = xc**2
    tr = x2.sum(axis=0) / n
    mu = tr.sum() / d
    delta_ = np.sum((xc.T @ xc) ** 2) / n**2
    beta = (np.sum(x2.T @ x2) / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * tr.sum() + d * mu**2) / d
    ref = min(beta, delta) / delta
    assert s == pytest.approx(ref, rel=1e-10) and 0.0 <= s <= 1.0
    np.testing.assert_allclose(cov, (1 - ref) * xc.T @ xc / n + ref * mu * np.eye(d), rtol=1e-10)


def test_distance_is_the_mahalanobis_distance_of_the_shrunk_covariance() -> None:
    x = _data()
    gate = fit_gate(x)
    cov, _ = ledoit_wolf(x - x.mean(axis=0))
    inv = np.linalg.inv(cov)
    q = _data(5, seed=1)
    ref = [np.sqrt((v - x.mean(axis=0)) @ inv @ (v - x.mean(axis=0))) for v in q]
    np.testing.assert_allclose(gate.distance(q), ref, rtol=1e-8)
    assert gate.groups == ("all",) and gate.info["fit_n"] == 400 and gate.info["dims"] == 8


def test_class_conditional_means_nearest_or_own_group() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + np.array([10.0, 0, 0, 0])
    gate = fit_gate(np.concatenate([a, b]), np.repeat([0, 1], 200), ("a", "b"))
    assert gate.groups == ("a", "b")
    pt = np.array([[10.0, 0, 0, 0]])
    assert gate.distance(pt)[0] < 1.0  # nearest mean: b
    assert gate.distance(pt, group=[0])[0] > 5.0  # its own group a: far
    assert gate.distance(pt, group=[1])[0] == pytest.approx(gate.distance(pt)[0])
    with pytest.raises(ValueError, match="2 samples"):
        fit_gate(np.concatenate([a, b[:1]]), np.repeat([0, 1], [200, 1]))


def test_threshold_from_held_out_rejects_about_one_percent_in_domain_and_far_inputs() -> None:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(8, 8))
    fit_x = rng.normal(size=(2000, 8)) @ mix
    held = rng.normal(size=(2000, 8)) @ mix
    test = rng.normal(size=(4000, 8)) @ mix
    gate = fit_gate(fit_x)
    assert gate.threshold == float("inf")
    gate = gate.with_threshold(gate.distance(held), 0.99)
    assert gate.info["quantile"] == 0.99 and gate.info["heldout_n"] == 2000
    assert 15 <= gate.info["heldout_rejected"] <= 25
    rejected = np.mean(gate.distance(test) > gate.threshold)
    assert 0.004 <= rejected <= 0.02, rejected  # about 1 %: the same distribution
    far = test[:100] * 3.0
    assert np.mean(gate.distance(far) > gate.threshold) > 0.9
    d = float(gate.distance(far[:1])[0])
    assert not gate.accepts(d) and not gate.accepts(float("nan")) and gate.accepts(0.0)
    assert gate.reason(d).startswith(f"{REASON}: feature distance ") and "99th percentile" in gate.reason(d)
    with pytest.raises(ValueError, match="finite"):
        gate.with_threshold(np.array([1.0, np.nan]))


def test_gate_survives_the_checkpoint_meta(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6))
    gate = fit_gate(x, rng.integers(0, 3, 300), ("n", "s", "r"), {"feature": "test"})
    gate = gate.with_threshold(gate.distance(rng.normal(size=(300, 6))))
    path = save_checkpoint(tmp_path / "w.pt", "curvature", "1", {"network": {"w": torch.zeros(2)}},
                           {"ood": gate.to_meta()})
    back = FeatureGate.from_meta(load_checkpoint(path, "curvature").meta["ood"])
    assert back is not None and back.groups == gate.groups and back.threshold == gate.threshold
    assert back.info["feature"] == "test"
    q = rng.normal(size=(10, 6))
    np.testing.assert_allclose(back.distance(q), gate.distance(q), rtol=1e-4)
    assert FeatureGate.from_meta(None) is None and FeatureGate.from_meta({}) is None
    with pytest.raises(ValueError, match="unknown"):
        FeatureGate.from_meta({"method": "knn"})
    with pytest.raises(ValueError, match="dimensions"):
        back.distance(np.zeros((1, 5)))


def test_always_rejecting_gate_makes_the_curvature_finding_not_assessable() -> None:
    from models.curvature.predictor import CurvaturePredictor
    from pipelines.phantoms.xray import generate_study, unit_image
    from pipelines.vocabulary import View

    torch.set_num_threads(1)
    pred = CurvaturePredictor.load()
    pv = generate_study(970_001, shape=(256, 256)).views[View.NEUTRAL]
    img = unit_image(pv.pixels, pv.photometric)
    rng = np.random.default_rng(0)
    pred.gate = fit_gate(rng.normal(size=(200, 128))).with_threshold(np.zeros(3))  # threshold 0: all out
    f = pred.finding(img, pv.pixel_spacing_mm)
    assert f.value == NOT_ASSESSABLE and f.probability is None
    assert f.evidence[0].startswith(REASON) and not any("p(" in e for e in f.evidence)
    pred.gate = dataclasses.replace(pred.gate, threshold=float("inf"))
    assert pred.finding(img, pv.pixel_spacing_mm).value in ("normal", "straightened", "reversed")
