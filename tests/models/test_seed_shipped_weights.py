"""The shipped weights on fresh phantoms (seeds never used in training or the held-out evaluation).

Bounds are set below the held-out metrics of the model cards (small samples are noisy); they catch broken
weights, a broken ROI step or a preprocessing mismatch, not small regressions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.common.metrics import roc_auc
from models.curvature import CLASSES, DEFAULT_WEIGHTS
from models.curvature.data import class_from_cobb
from models.curvature.roi import DEFAULT_LOCATOR, landmarks_from_keypoints
from models.upper_cervical import DEFAULT_WEIGHTS as UC_WEIGHTS
from pipelines.phantoms.xray import generate_study, unit_image
from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study
from pipelines.results import Finding, View
from pipelines.vocabulary import UPPER_CERVICAL_LABELS, UPPER_CERVICAL_SITES

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(not (DEFAULT_WEIGHTS.is_file() and UC_WEIGHTS.is_file() and DEFAULT_LOCATOR.is_file()),
                                reason="seed-model weights not shipped")

CURVATURE_MIN_ACCURACY = 0.6  # held-out: 0.86 (600 images)
UPPER_MIN_MEAN_AUC = 0.7  # held-out: 0.92 (200 studies)
LOCATOR_MAX_MEDIAN_MM = 6.0  # held-out: 3.6 mm


def test_curvature_weights_on_fresh_phantoms() -> None:
    from models.curvature.predictor import CurvaturePredictor

    pred = CurvaturePredictor.load(None, "cpu")
    assert pred.required_views == (View.NEUTRAL,)
    correct, errors = [], []
    for seed in range(970_000, 970_008):
        st = generate_study(seed, shape=(256, 256))
        for pv in st.views.values():
            img = unit_image(pv.pixels, pv.photometric)
            out = pred.predict(img)
            truth = class_from_cobb(next(m.value for m in pv.truth if m.key == "cobb_c2_c7"))
            correct.append(out.label == truth)
            d = (out.landmarks - landmarks_from_keypoints(pv.keypoints)) * pv.pixel_spacing_mm[0]
            errors.extend(np.hypot(d[:, 0], d[:, 1]))
        (f,) = pred.classify({View.NEUTRAL: img}, {View.NEUTRAL: pv.pixel_spacing_mm})
        assert f == pred.finding(img, pv.pixel_spacing_mm)
        assert isinstance(f, Finding) and f.key == "curvature_class_model" and f.site == "C2-C7"
        assert f.value in CLASSES and 1 / 3 <= f.probability <= 1.0
    assert np.mean(correct) >= CURVATURE_MIN_ACCURACY, np.mean(correct)
    assert np.median(errors) <= LOCATOR_MAX_MEDIAN_MM, np.median(errors)


def test_upper_cervical_weights_on_fresh_phantoms() -> None:
    from models.upper_cervical.predictor import UpperCervicalPredictor

    pred = UpperCervicalPredictor.load()
    assert pred.required_views == (View.EXTENSION, View.NEUTRAL, View.FLEXION)
    labels, probs = [], []
    for seed in range(980_000, 980_024):
        st = generate_upper_cervical_study(seed, shape=(320, 320))
        views = {v: uv.unit_image() for v, uv in st.views.items()}
        out = pred.predict(views)
        labels.append(st.label_vector())
        probs.append([out.probabilities[k] for k in UPPER_CERVICAL_LABELS])
    findings = pred.classify(views, {v: None for v in views})
    assert [f.key for f in findings] == list(UPPER_CERVICAL_LABELS)
    assert all(f.site == UPPER_CERVICAL_SITES[f.key] and f.value in ("present", "absent") for f in findings)
    assert all(0.0 <= f.probability <= 1.0 for f in findings)
    with pytest.raises(ValueError, match="flexion"):
        pred.classify({View.NEUTRAL: views[View.NEUTRAL], View.EXTENSION: views[View.EXTENSION]}, {})
    y, p = np.array(labels), np.array(probs)
    aucs = [roc_auc(y[:, k], p[:, k]) for k in range(len(UPPER_CERVICAL_LABELS)) if 2 <= y[:, k].sum() <= len(y) - 2]
    assert len(aucs) >= 3
    assert np.mean(aucs) >= UPPER_MIN_MEAN_AUC, aucs
