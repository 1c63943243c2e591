"""Calibrated MRI probabilities (models.mri.calibration): the map, its fit, and that the predictor and the pipeline
report the calibrated number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.calibration import apply_calibration, fit, fit_platt, fit_temperature, logit, nll
from pipelines.vocabulary import TASKS


def test_apply_calibration_is_the_logistic_of_the_scaled_logit():
    z = np.array([-40.0, -3.0, 0.0, 1.0, 2.5, 40.0])
    assert np.allclose(apply_calibration(z, None), 1 / (1 + np.exp(-z)))
    assert np.allclose(apply_calibration(z, {"a": 0.5, "b": 0.0}), 1 / (1 + np.exp(-z / 2)))
    assert np.allclose(apply_calibration(z, {"a": 0.8, "b": -0.3}), 1 / (1 + np.exp(-(0.8 * z - 0.3))))
    p = apply_calibration(np.array([-5.0, 0.3, 7.0]), None)
    assert np.allclose(logit(p), [-5.0, 0.3, 7.0])


def test_fits_recover_a_known_temperature_and_platt_map():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z / 3.0))).astype(float)  # labels drawn with temperature 3
    t = fit_temperature(y, z)
    assert abs(t["temperature"] - 3.0) < 0.3 and t["b"] == 0.0
    y2 = (rng.random(4000) < 1 / (1 + np.exp(-(0.4 * z + 1.0)))).astype(float)
    pl = fit_platt(y2, z)
    assert abs(pl["a"] - 0.4) < 0.06 and abs(pl["b"] - 1.0) < 0.25
    assert nll(y2, z, pl["a"], pl["b"]) < nll(y2, z, fit_temperature(y2, z)["a"], 0.0)


def _records(z: np.ndarray, y: np.ndarray, per_series: int = 5) -> list[dict]:
    p = apply_calibration(z, None)
    return [{"style": "b", "shifts": "none", "seed": i // per_series, "assessable": True,
             "labels": {t: bool(y[i]) for t in TASKS}, "model_probs": {t: float(p[i]) for t in TASKS}}
            for i in range(len(z))]


def test_fit_chooses_platt_on_held_out_series_when_the_scores_are_shifted():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 5, 2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-(0.5 * z - 2.0)))).astype(float)  # biased: temperature alone can't fix
    res = fit(_records(z, y))
    for t in TASKS:
        sel = res["selection"][t]
        assert res["tasks"][t]["method"] == "platt", sel
        assert sel["heldout_nll"]["platt"] < sel["heldout_nll"]["temperature"] < sel["raw_heldout_nll"]
        assert 0 < sel["heldout_levels"] < sel["levels"] == 2000


def _phantom_inputs():
    from pipelines.mri.preprocessing import FORAMEN_LATERAL_MM, normalise
    from pipelines.phantoms.mri import generate_series

    ph = generate_series(3_100_000)
    lat = np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice]
    return (normalise(ph.volume.astype(np.float32)), ph.pixel_spacing_mm, ph.mid_slice,
            int(np.argmin(np.abs(lat - FORAMEN_LATERAL_MM))), int(np.argmin(np.abs(lat + FORAMEN_LATERAL_MM))))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")
def test_predictor_applies_a_known_temperature():
    from models.mri.predictor import MriPredictor

    torch.set_num_threads(1)
    pred = MriPredictor.load(None)
    args = _phantom_inputs()
    pred.calibration = {}
    raw = pred.analyse(*args).probabilities
    pred.calibration = {t: {"a": 1 / 4.0, "b": 0.0} for t in TASKS}  # temperature 4
    hot = pred.analyse(*args).probabilities
    for t in TASKS:
        z = logit(np.asarray(raw[t]))
        assert np.allclose(hot[t], 1 / (1 + np.exp(-z / 4.0)), atol=1e-9), t
        assert np.all(np.abs(hot[t] - 0.5) <= np.abs(np.asarray(raw[t]) - 0.5) + 1e-12)  # softer, same side
        assert np.all((hot[t] >= 0.5) == (np.asarray(raw[t]) >= 0.5))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")
def test_shipped_weights_carry_a_calibration_that_the_pipeline_reports(tmp_path: Path):
    from models.mri.evaluate_series import RecordingModel, run_case
    from models.mri.predictor import MriPredictor
    from pipelines.mri.pipeline import MriPipeline

    torch.set_num_threads(1)
    pred = MriPredictor.load(None)
    assert set(pred.calibration) == set(TASKS)
    for t in TASKS:
        c = pred.calibration[t]
        assert c["method"] in ("temperature", "platt") and 0 < c["a"] < 5, c
    args = _phantom_inputs()
    cal = pred.analyse(*args).probabilities
    saved, pred.calibration = pred.calibration, {}
    raw = pred.analyse(*args).probabilities
    pred.calibration = saved
    for t in TASKS:
        assert np.allclose(cal[t], apply_calibration(logit(np.asarray(raw[t])), saved[t]), atol=1e-9)
    assert any(not np.allclose(cal[t], raw[t], atol=1e-3) for t in TASKS)
    # through the whole pipeline (DICOM written, routed, read back): each graded finding's probability is the
    # calibrated model probability of its level
    recs = run_case(MriPipeline(RecordingModel(pred)), "b", 780_000, [], tmp_path)
    graded = [r for r in recs if r["assessable"]]
    assert graded
    for r in graded:
        for t in TASKS:
            assert r["probs"][t] == pytest.approx(r["model_probs"][t], abs=6e-5)
