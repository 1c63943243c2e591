"""Binary classification metrics against the MRI reference: accuracy, sensitivity, specificity, F1, AUC, kappa."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); NaN when one class is missing."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    allv = np.concatenate([pos, neg])[order]
    # average ranks of ties
    i = 0
    while i < len(allv):
        k = i
        while k + 1 < len(allv) and allv[k + 1] == allv[i]:
            k += 1
        ranks[order[i : k + 1]] = 0.5 * (i + k) + 1.0
        i = k + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The seed's metrics for predictions ``scores >= threshold`` against ``labels`` (plus counts)."""
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    p = s >= threshold
    tp, tn = int(np.sum(p & y)), int(np.sum(~p & ~y))
    fp, fn = int(np.sum(p & ~y)), int(np.sum(~p & y))
    n = max(len(y), 1)
    acc = (tp + tn) / n
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
    kappa = (acc - pe) / (1 - pe) if pe < 1 else float("nan")
    return {"n": int(len(y)), "positive": int(y.sum()), "accuracy": acc, "sensitivity": sens, "specificity": spec,
            "f1": f1, "auc": auc(y, s), "kappa": kappa, "tp": tp, "tn": tn, "fp": fp, "fn": fn,
            "threshold": float(threshold)}


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises Youden's J (sensitivity + specificity - 1) on a validation set."""
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    cands = np.unique(np.clip(s, 0.02, 0.98))
    best, best_j = 0.5, -1.0
    for t in cands:
        m = binary_metrics(y, s, float(t))
        j = m["sensitivity"] + m["specificity"] - 1
        if j > best_j:
            best, best_j = float(t), j
    return best
