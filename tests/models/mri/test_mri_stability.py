"""The localiser's re-runs (``MriPredictor.stability``): a level the model has found stays put when the contrast,
the window position or its scale change a little; on an image without a spine the "levels" jump, and the
plausibility gate reports them not assessable even where a single pass looks confident."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.data import VIEW_OFFSET_MM
from models.mri.predictor import RERUNS
from pipelines.mri.plausibility import STABLE_MM, check_chain
from pipelines.mri.preprocessing import LOCALISER_MM_PER_PX

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")


def test_the_re_runs_stay_within_the_training_windows():
    for gamma, (dx, dy), zoom in RERUNS:
        assert 0.5 <= gamma <= 2.0
        assert abs(dx) * LOCALISER_MM_PER_PX <= VIEW_OFFSET_MM[0] and abs(dy) * LOCALISER_MM_PER_PX <= VIEW_OFFSET_MM[1]
        assert 0.9 <= zoom <= 1.1  # the training windows' scale range (data._view)


@pytest.fixture(scope="module")
def predictor():
    from models.mri.predictor import MriPredictor

    torch.set_num_threads(1)
    return MriPredictor.load(None)


def test_a_phantom_in_the_training_domain_is_stable(predictor):
    from pipelines.mri.preprocessing import FORAMEN_LATERAL_MM, normalise
    from pipelines.phantoms.mri import generate_series

    ph = generate_series(3_300_000)
    vol = normalise(ph.volume.astype(np.float32))
    lat = np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice]
    args = (vol, ph.pixel_spacing_mm, ph.mid_slice, int(np.argmin(np.abs(lat - FORAMEN_LATERAL_MM))),
            int(np.argmin(np.abs(lat + FORAMEN_LATERAL_MM))))
    predictor.stability = False
    plain = predictor.analyse(*args)
    predictor.stability = True
    va = predictor.analyse(*args)
    assert plain.moved_mm is None
    assert va.moved_mm.shape == (5, len(RERUNS)) and va.moved_mm.max() < STABLE_MM, va.moved_mm
    np.testing.assert_array_equal(va.centres_px, plain.centres_px)  # the re-runs only judge, they move nothing
    for task, p in plain.probabilities.items():
        np.testing.assert_array_equal(va.probabilities[task], p)


def test_levels_found_in_noise_jump_and_are_not_assessable(predictor):
    rng = np.random.default_rng(0)
    vol = rng.random((11, 256, 256)).astype(np.float32)
    predictor.stability = True
    va = predictor.analyse(vol, (0.9, 0.9), 5, 2, 8)
    assert (va.moved_mm.max(1) > STABLE_MM).all(), va.moved_mm.max(1)
    check = check_chain(va.centres_px, (0.9, 0.9), va.peak, va.sigma_px, va.canal_mask, second_peak=va.second_peak,
                        view_top_px=va.view_top_px, moved_mm=va.moved_mm)
    assert all("localisation unstable" in check.reason(level) for level in check.level_reasons)
