"""Two-pass disc localisation (``MriPredictor.recentre``): a spine far from the image centre (here a renderer-A
phantom at the top of a taller image, its chain about 110 mm above the centre of the localiser's image-centred 240 mm
window) is missed by the one centred pass and found when the window is centred on that pass's chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.predictor import chain_confidence


def test_chain_confidence_prefers_the_surer_chain():
    assert chain_confidence(np.array([0.9, 0.9, 0.9, 0.9, 0.9])) > chain_confidence(np.array([0.95, 0.95, 0.2, 0.95, 0.95]))
    assert chain_confidence(np.zeros(5)) == pytest.approx(5 * np.log(1e-3))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")
@pytest.mark.parametrize("seed", [3_200_000, 3_200_001])
def test_recentred_window_finds_a_chain_the_centred_window_misses(seed: int):
    from models.mri.predictor import MriPredictor
    from pipelines.mri.preprocessing import FORAMEN_LATERAL_MM, normalise
    from pipelines.phantoms.mri import generate_series

    torch.set_num_threads(1)
    pred = MriPredictor.load(None)
    ph = generate_series(seed)
    vol = normalise(ph.volume.astype(np.float32))
    n, h, w = vol.shape
    tall = np.zeros((n, h + 240, w), np.float32)  # 225 mm of empty field below the phantom
    tall[:, :h] = vol
    lat = np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[ph.mid_slice]
    args = (tall, ph.pixel_spacing_mm, ph.mid_slice, int(np.argmin(np.abs(lat - FORAMEN_LATERAL_MM))),
            int(np.argmin(np.abs(lat + FORAMEN_LATERAL_MM))))
    truth = np.array([t.disc_centre_px for t in ph.levels])
    errors = {}
    for recentre in (False, True):
        pred.recentre = recentre
        va = pred.analyse(*args)
        errors[recentre] = np.hypot(*(va.centres_px - truth).T) * ph.pixel_spacing_mm[0]
    assert errors[False].max() > 10.0, errors  # the centred window: levels off
    assert errors[True].max() < 3.0, errors  # re-centred: every disc found
