"""Binary classification metrics without scikit-learn: ROC, AUC (Mann-Whitney), confusion-based scores."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, float)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, float)
    thr = np.unique(s)[::-1]
    tpr = [0.0] + [float((s[y] >= t).mean()) if y.any() else 0.0 for t in thr]
    fpr = [0.0] + [float((s[~y] >= t).mean()) if (~y).any() else 0.0 for t in thr]
    return np.array(fpr + [1.0]), np.array(tpr + [1.0])


def binary_scores(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, precision and F1 at ``score >= threshold``, plus AUC and counts."""
    y = np.asarray(labels, bool)
    p = np.asarray(scores, float) >= threshold
    tp, tn = int((p & y).sum()), int((~p & ~y).sum())
    fp, fn = int((p & ~y).sum()), int((~p & y).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"auc": auc(y, scores), "accuracy": (tp + tn) / len(y), "sensitivity": sens, "specificity": spec,
            "precision": prec, "f1": f1, "n": len(y), "positives": int(y.sum()), "threshold": threshold}
