"""Classification metrics of every model, in numpy (no scikit-learn): one argument order, truth first.

Binary: :func:`roc_auc`, :func:`roc_curve`, :func:`average_precision`, :func:`binary_metrics` at a threshold,
:func:`best_threshold` (Youden's J); calibration of probabilities: :func:`brier`, :func:`log_loss`,
:func:`calibration_bins`, :func:`expected_calibration_error`; multi-class: :func:`confusion`,
:func:`macro_scores`. Model-specific measures (keypoint errors in mm, ...) stay with their model.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _binary(y_true: np.ndarray) -> np.ndarray:
    return np.asarray(y_true, dtype=bool).ravel()


def _scores(y_score: np.ndarray) -> np.ndarray:
    return np.asarray(y_score, dtype=np.float64).ravel()


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n+ n-)); tied scores get their average rank (a tie between
    a positive and a negative counts one half). NaN when either class is missing."""
    y, s = _binary(y_true), _scores(y_score)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)  # average ranks of ties
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold ``score >= t``, from (0, 0) to (1, 1)."""
    y, s = _binary(y_true), _scores(y_score)
    thr = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) if y.any() else 0.0 for t in thr]
    fpr = [0.0] + [float((s[~y] >= t).mean()) if (~y).any() else 0.0 for t in thr]
    return np.array(fpr + [1.0]), np.array(tpr + [1.0])


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision: the mean of the precision at the rank of each positive (scores sorted descending,
    ties in input order), as scikit-learn defines it for distinct scores. NaN without positives."""
    y = _binary(y_true)
    if y.sum() == 0:
        return float("nan")
    yy = y[np.argsort(-_scores(y_score), kind="mergesort")]
    precision = np.cumsum(yy) / np.arange(1, len(yy) + 1)
    return float((precision * yy).sum() / yy.sum())


def binary_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Metrics of the decisions ``y_score >= threshold`` against ``y_true`` (``y_score``: probabilities, scores
    or 0/1 predictions).

    Keys: ``n``, ``positives``, ``tp``, ``tn``, ``fp``, ``fn``, ``accuracy``, ``sensitivity`` (recall),
    ``specificity``, ``precision``, ``f1``, ``kappa`` (Cohen's), ``auc`` (of the scores), ``brier`` (mean
    squared difference of score and truth: meaningful for probabilities) and ``threshold``. A ratio whose
    denominator is 0 is NaN."""
    y, s = _binary(y_true), _scores(y_score)
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    p = s >= threshold
    tp, tn = int(np.sum(p & y)), int(np.sum(~p & ~y))
    fp, fn = int(np.sum(p & ~y)), int(np.sum(~p & y))
    n = len(y)

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    acc = ratio(tp + tn, n)
    pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n) if n else float("nan")
    return {"n": n, "positives": int(y.sum()), "tp": tp, "tn": tn, "fp": fp, "fn": fn, "accuracy": acc,
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "kappa": ratio(acc - pe, 1 - pe) if n else float("nan"),
            "auc": roc_auc(y, s), "brier": brier(y, s) if n else float("nan"), "threshold": float(threshold)}


def best_threshold(y_true: np.ndarray, y_score: np.ndarray, lo: float = 0.02, hi: float = 0.98) -> float:
    """The threshold (a score clipped to [lo, hi]) that maximises Youden's J = sensitivity + specificity - 1
    on a validation set; the smallest such threshold on ties, 0.5 when none is defined."""
    y, s = _binary(y_true), _scores(y_score)
    best, best_j = 0.5, -1.0
    for t in np.unique(np.clip(s, lo, hi)):
        m = binary_metrics(y, s, float(t))
        j = m["sensitivity"] + m["specificity"] - 1
        if j > best_j:
            best, best_j = float(t), j
    return best


# -- calibration of probabilities ---------------------------------------------------------------------


def brier(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Brier score: mean of (p - y)^2."""
    y, p = _binary(y_true).astype(np.float64), _scores(y_prob)
    return float(np.mean((p - y) ** 2))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray, eps: float = 1e-6) -> float:
    """Mean binary cross-entropy (natural log) with probabilities clipped to [eps, 1 - eps]."""
    y, p = _binary(y_true).astype(np.float64), np.clip(_scores(y_prob), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: ``n_bins`` equal-width bins of the predicted probability over [0, 1] (the last bin
    closed, ``[i/n, (i+1)/n)``); per non-empty bin its ``lo``, ``hi``, ``count``, mean predicted probability
    ``mean_p`` and observed positive fraction ``frac_pos``."""
    y, p = _binary(y_true).astype(np.float64), _scores(y_prob)
    idx = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            out.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": int(sel.sum()),
                        "mean_p": float(p[sel].mean()), "frac_pos": float(y[sel].mean())})
    return out


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of |mean predicted probability - observed fraction| over the
    :func:`calibration_bins`. NaN for no samples."""
    bins = calibration_bins(y_true, y_prob, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] * abs(b["mean_p"] - b["frac_pos"]) for b in bins) / n)


# -- multi-class ---------------------------------------------------------------------------------------


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = truth, columns = prediction (class indices 0..k-1)."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def macro_scores(cm: np.ndarray) -> dict[str, float | list[float]]:
    """Accuracy, macro F1 and macro recall of a confusion matrix (classes without support are left out of the
    means), with the per-class recall and F1."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    has = support > 0
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "f1_macro": float(f1[has].mean()),
            "recall_macro": float(recall[has].mean()), "recall_per_class": [float(r) for r in recall],
            "f1_per_class": [float(f) for f in f1]}


__all__ = ["average_precision", "best_threshold", "binary_metrics", "brier", "calibration_bins", "confusion",
           "expected_calibration_error", "log_loss", "macro_scores", "roc_auc", "roc_curve"]
