"""The one metrics module against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.common.metrics import (
    average_precision,
    best_threshold,
    binary_metrics,
    brier,
    calibration_bins,
    confusion,
    expected_calibration_error,
    log_loss,
    macro_scores,
    roc_auc,
    roc_curve,
)

Y = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
S = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.1, 0.05])


def test_roc_auc_by_hand() -> None:
    # 15 positive-negative pairs; the positive 0.3 is beaten by the negative 0.6 only
    assert roc_auc(Y, S) == pytest.approx(14 / 15)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # ties count one half (average ranks): every pair tied
    assert roc_auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # one tie between a positive and a negative: pairs (0.7>0.2), (0.7>0.4), (0.4~0.4 half), (0.4>0.2) -> 3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.7, 0.4, 0.4, 0.2]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert roc_auc(S, S) != roc_auc(Y, S)  # truth first: swapping arguments is not the same
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3])) and math.isnan(roc_auc([0, 0], [0.1, 0.2]))
    assert roc_auc(Y, S * 3 + 1) == roc_auc(Y, S)  # rank based


def test_roc_curve_and_average_precision_by_hand() -> None:
    fpr, tpr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1, 1])
    # ranks by score: 0.9 (+), 0.8 (+), 0.6 (-), 0.3 (+): precisions at the positives 1, 1, 3/4
    assert average_precision(Y, S) == pytest.approx((1 + 1 + 0.75) / 3)
    assert math.isnan(average_precision([0, 0], [0.2, 0.1]))


def test_binary_metrics_by_hand() -> None:
    m = binary_metrics(Y, S, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"], m["positives"]) == (2, 1, 1, 4, 8, 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(4 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 6)
    pe = (3 * 3 + 5 * 5) / 64  # chance agreement: 3 predicted and 3 true positives, 5 and 5 negatives
    assert m["kappa"] == pytest.approx((6 / 8 - pe) / (1 - pe))
    assert m["auc"] == pytest.approx(14 / 15) and m["threshold"] == 0.5
    assert m["brier"] == pytest.approx(np.mean((S - Y) ** 2))
    # 0/1 predictions work the same; the threshold is inclusive
    p = binary_metrics([0, 0, 1, 1], [0.0, 1.0, 1.0, 0.0])
    assert (p["accuracy"], p["sensitivity"], p["specificity"], p["f1"]) == (0.5, 0.5, 0.5, 0.5)
    assert binary_metrics([1, 0], [0.5, 0.4], 0.5)["tp"] == 1
    # undefined ratios are NaN, not 0
    none = binary_metrics([0, 0], [0.1, 0.2])
    assert math.isnan(none["sensitivity"]) and math.isnan(none["precision"]) and none["specificity"] == 1.0
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.2])


def test_best_threshold_maximises_youden() -> None:
    # thresholds 0.3 (sens 1, spec 4/5) and 0.8 (sens 2/3, spec 1): J = 0.8 vs 0.667
    assert best_threshold(Y, S) == pytest.approx(0.3)
    # scores clipped to [0.02, 0.98]: both candidates separate perfectly, the smaller one is kept
    assert best_threshold([0, 1], [0.001, 0.999]) == pytest.approx(0.02)


def test_calibration_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.15, 0.8, 0.9, 1.0])
    assert brier(y, p) == pytest.approx((0.01 + 0.0225 + 0.04 + 0.01 + 0.0) / 5)
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-6))  # clipped
    bins = calibration_bins(y, p, n_bins=5)  # bins [0, .2) [.2, .4) ... [.8, 1]: 1.0 falls into the last
    assert [(b["lo"], b["count"]) for b in bins] == [(0.0, 2), (0.8, 3)]
    assert bins[0]["mean_p"] == pytest.approx(0.125) and bins[0]["frac_pos"] == 0.0
    assert bins[1]["mean_p"] == pytest.approx(0.9) and bins[1]["frac_pos"] == 1.0
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx((2 * 0.125 + 3 * 0.1) / 5)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0
    assert math.isnan(expected_calibration_error([], []))


def test_multiclass_by_hand() -> None:
    cm = confusion([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    s = macro_scores(cm)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["recall_per_class"] == pytest.approx([0.5, 1.0, 0.0])
    # F1: class 0 precision 1/2 recall 1/2 -> 1/2; class 1 precision 2/3 recall 1 -> 0.8; class 2 -> 0
    assert s["f1_macro"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_scores(confusion([0, 0], [0, 1], 3))["recall_macro"] == 0.5  # classes without support left out
