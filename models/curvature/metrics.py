"""Classification metrics in numpy (no scikit-learn dependency): accuracy, F1, recall, AUC, AP."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = truth, columns = prediction."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def macro_scores(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and macro recall (classes without support are left out of the means)."""
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


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    y = np.asarray(y, bool)
    s = np.asarray(score, float)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the step precision-recall curve, as scikit-learn defines it)."""
    y = np.asarray(y, bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, float), kind="mergesort")
    yy = y[order]
    tp = np.cumsum(yy)
    precision = tp / np.arange(1, len(yy) + 1)
    return float((precision * yy).sum() / yy.sum())
