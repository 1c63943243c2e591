"""The shipped keypoint model on fresh phantom studies stays within 2x the errors stated in its model card."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from models.xray_keypoints import DEFAULT_WEIGHTS, MODEL_CARD
from models.xray_keypoints.evaluate import evaluate_phantoms, summarize
from models.xray_keypoints.predictor import KeypointPredictor

torch.set_num_threads(1)

FRESH_SEED = 990_000
"""Not the card's held-out set (900000+) and not training (700000+)."""


def card_numbers() -> dict[str, float]:
    """The held-out errors stated in MODEL_CARD.md (machine-readable lines ``- corner error mean: X mm``)."""
    text = MODEL_CARD.read_text()
    out = {}
    for key, pat in {"corner": r"corner error mean:\s*([\d.]+)\s*mm", "cobb": r"Cobb MAE:\s*([\d.]+)\s*deg",
                     "sva": r"SVA MAE:\s*([\d.]+)\s*mm"}.items():
        m = re.search(pat, text)
        assert m, f"MODEL_CARD.md must state '{pat}'"
        out[key] = float(m.group(1))
    m = re.search(r"Cobb measurable:\s*(\d+)\s*/\s*(\d+)", text)
    assert m, "MODEL_CARD.md must state 'Cobb measurable: n / N'"
    out["measurable"] = int(m.group(1)) / int(m.group(2))
    m = re.search(r"gate open:\s*(\d+)\s*/\s*(\d+)", text)
    assert m, "MODEL_CARD.md must state 'gate open: n / N'"
    out["gate_open"] = int(m.group(1)) / int(m.group(2))
    return out


@pytest.fixture(scope="module")
def predictor() -> KeypointPredictor:
    assert DEFAULT_WEIGHTS.is_file(), "shipped weights missing"
    return KeypointPredictor.load(DEFAULT_WEIGHTS, torch.device("cpu"))


def test_card_and_weights_agree(predictor: KeypointPredictor) -> None:
    card = card_numbers()
    stored = predictor.metrics["corner_error_mm"]["mean"]
    assert card["corner"] == pytest.approx(stored, abs=0.01)
    assert predictor.sigma_scale > 0
    assert DEFAULT_WEIGHTS.stat().st_size < 5_000_000


def test_shipped_model_on_fresh_phantoms_within_twice_the_card(predictor: KeypointPredictor) -> None:
    card = card_numbers()
    images, dynamics = evaluate_phantoms(predictor, seed=FRESH_SEED, count=4, shape=None, difficulty="realistic",
                                         progress=False)
    m = summarize(images, dynamics, predictor.sigma_scale)
    assert len(images) == 12
    assert m["corner_error_mm"]["mean"] <= 2 * card["corner"], m["corner_error_mm"]
    for key, name in (("cobb_c2_c7 C2-C7", "cobb"), ("sva_c2_c7 C2-C7", "sva")):
        got = m["measurements"].get(key)
        if got is None:
            # no image measurable: only consistent with a card that reports the angle as rarely measurable
            assert card["measurable"] < 0.1, f"{key} not measurable on any fresh image"
        else:
            assert got["mae"] <= 2 * card[name], (key, got)
    # the spread is finite, and the uncertainty gate opens about as often as the card states
    assert np.isfinite(m["spread_error_correlation"])
    assert m["gate"]["open"] / len(images) >= card["gate_open"] - 0.25, m["gate"]
