"""Two-pass disc localisation (``MriPredictor.recentre``): a spine the image-centred window sees one level off is
found when the window is centred on the first pass's chain (a tall 448 x 320 renderer-A field of view, seed 770006 of
the calibration set, where the single pass named every disc one level too low)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.predictor import chain_confidence


def test_chain_confidence_prefers_the_surer_chain():
    assert chain_confidence(np.array([0.9, 0.9, 0.9, 0.9, 0.9])) > chain_confidence(np.array([0.95, 0.95, 0.2, 0.95, 0.95]))
    assert chain_confidence(np.zeros(5)) == pytest.approx(5 * np.log(1e-3))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")
def test_recentred_window_finds_the_levels_the_centred_one_shifts(tmp_path: Path):
    from models.mri.evaluate_series import RecordingModel, run_case
    from models.mri.predictor import MriPredictor
    from pipelines.mri.pipeline import MriPipeline

    torch.set_num_threads(1)
    pred = MriPredictor.load(None)
    pred.recentre = False
    one = run_case(MriPipeline(RecordingModel(pred)), "a", 770_006, ["matrix:448x320"], tmp_path / "one")
    assert all(12 < r["error_mm"] < 25 for r in one), [r["error_mm"] for r in one]  # one level off...
    assert all(r["flagged"] or not r["assessable"] for r in one)  # ...and flagged by the gate
    pred.recentre = True
    two = run_case(MriPipeline(RecordingModel(pred)), "a", 770_006, ["matrix:448x320"], tmp_path / "two")
    assert all(r["found"] and r["assessable"] for r in two), [(r["error_mm"], r["assessable"]) for r in two]
