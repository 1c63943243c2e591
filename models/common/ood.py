"""Out-of-distribution gate of a classifier: Mahalanobis distance of its penultimate-layer features (issue 13).

A classifier trained on renderer-A phantoms gives a class and a probability for any image, also for one unlike
anything it saw (renderer B: the seed classifiers are at chance there, see their cards). The gate measures how far
the features the classifier's head reads lie from those of its training distribution and, beyond a threshold,
the classifier reports "not assessable (image unlike the training data)" instead of a class.

Distance (Lee et al., NeurIPS 2018, "A simple unified framework for detecting out-of-distribution samples"): a
Gaussian with one covariance shared by ``G`` group means (the classes, the segments, or one pooled mean) fitted to
features of in-distribution images; the covariance is shrunk towards a multiple of the identity by the Ledoit-Wolf
coefficient (features of ReLU layers have near-constant units, so the plain covariance is singular). The distance
of a feature vector ``x`` is ``min_g sqrt((x - mu_g)^T S^-1 (x - mu_g))`` (or that of a given group when the group
is known, e.g. the segment of a cord-compression crop), unitless (standard deviations).

Threshold: the ``quantile`` (default 0.99) of the distances on *held-out* in-distribution images, other seeds
than the fit (the fit images' own distances are optimistic): about 1 - quantile of in-distribution inputs are
rejected. Never fitted on the out-of-distribution stand-in (renderer B): that is only for evaluation.

Stored in the weights' ``meta["ood"]`` (plain lists: :meth:`FeatureGate.to_meta`); the predictors apply it when it
is there (:meth:`FeatureGate.from_meta` of None: no gate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.vocabulary import UNLIKE_TRAINING_DATA

REASON = UNLIKE_TRAINING_DATA
"""The head of the reason such a finding gives."""
QUANTILE = 0.99


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Shrunk covariance ``(1 - s) S + s mu I`` of centred samples ``x`` (n, d) and its coefficient ``s`` (Ledoit
    and Wolf 2004, the estimator of ``sklearn.covariance.ledoit_wolf``)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 samples to fit a covariance, got {n}")
    emp = x.T @ x / n
    mu = float(np.trace(emp)) / d
    x2 = x**2
    beta_ = float(np.sum(x2.T @ x2)) / n
    delta_ = float(np.sum(emp**2))
    delta = (delta_ - 2 * mu * float(np.trace(emp)) + d * mu**2) / d  # ||S - mu I||_F^2 / d
    beta = min((beta_ - delta_) / (d * n), delta)
    s = 0.0 if delta <= 0 else float(np.clip(beta / delta, 0.0, 1.0))
    return (1 - s) * emp + s * mu * np.eye(d), s


@dataclass(frozen=True)
class FeatureGate:
    """Group means (G, D), whitening matrix W (D, D) with ``W^T W = S^-1``, and the threshold on the distance."""

    means: np.ndarray
    whitening: np.ndarray
    threshold: float = float("inf")
    groups: tuple[str, ...] = ()
    """Names of the means (classes or segments; one ``"all"`` when pooled)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Provenance: feature layer, fit and threshold sets, shrinkage, held-out rejection (plain JSON-able data)."""

    def distance(self, features: np.ndarray, group: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(N, D) features -> (N,) distances: to the nearest mean, or to mean ``group[i]`` when groups are given (and
        the gate has more than one mean)."""
        f = np.atleast_2d(np.asarray(features, np.float64))
        if f.shape[1] != self.means.shape[1]:
            raise ValueError(f"features have {f.shape[1]} dimensions, the gate {self.means.shape[1]}")
        z = (f[:, None, :] - self.means[None]) @ self.whitening.T  # (N, G, D)
        d = np.sqrt(np.sum(z**2, axis=-1))
        if group is None or len(self.means) == 1:
            return d.min(axis=1)
        return d[np.arange(len(f)), np.asarray(group, int)]

    def check(self, features: np.ndarray, group: Sequence[int] | np.ndarray | None = None) -> list[tuple[float, str]]:
        """``(distance, reason)`` of each input (``distance``'s arguments): the reason is empty when the gate accepts
        the input, else :meth:`reason`."""
        return [(float(d), "" if self.accepts(d) else self.reason(d)) for d in self.distance(features, group)]

    def accepts(self, distance: float) -> bool:
        return bool(np.isfinite(distance) and distance <= self.threshold)

    def reason(self, distance: float) -> str:
        """The reason text of a rejected input (why its finding is not assessable)."""
        q = self.info.get("quantile", QUANTILE)
        return (f"{REASON}: feature distance {distance:.1f} > {self.threshold:.1f} (the {100 * q:g}th percentile on "
                f"held-out renderer-A phantoms)")

    def with_threshold(self, heldout_distances: np.ndarray, quantile: float = QUANTILE) -> FeatureGate:
        """This gate with its threshold at the ``quantile`` of distances of held-out in-distribution inputs."""
        d = np.asarray(heldout_distances, np.float64)
        if d.size == 0 or not np.all(np.isfinite(d)):
            raise ValueError("need finite held-out distances")
        t = float(np.quantile(d, quantile))
        info = {**self.info, "quantile": quantile, "heldout_n": int(d.size),
                "heldout_rejected": int(np.sum(d > t)), "heldout_median": float(np.median(d))}
        return FeatureGate(self.means, self.whitening, t, self.groups, info)

    def to_meta(self) -> dict[str, Any]:
        return {"method": "mahalanobis", "groups": list(self.groups), "means": self.means.round(6).tolist(),
                "whitening": self.whitening.round(6).tolist(), "threshold": self.threshold, "info": self.info}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> FeatureGate | None:
        """The gate stored in a weights file's ``meta["ood"]``; None when there is none."""
        if not meta:
            return None
        if meta.get("method") != "mahalanobis":
            raise ValueError(f"unknown OOD gate method {meta.get('method')!r}")
        return cls(np.asarray(meta["means"], np.float64), np.asarray(meta["whitening"], np.float64),
                   float(meta["threshold"]), tuple(meta.get("groups", ())), dict(meta.get("info", {})))


def fit_gate(features: np.ndarray, labels: Sequence[int] | np.ndarray | None = None,
             group_names: Sequence[str] | None = None, info: Mapping[str, Any] | None = None) -> FeatureGate:
    """Fit the means and the shared shrunk covariance to in-distribution ``features`` (N, D); ``labels`` (N,) in
    0..G-1 give class-conditional means (tied covariance, within-group scatter), None one pooled mean. The threshold
    is left open: set it on held-out inputs with :meth:`FeatureGate.with_threshold`."""
    f = np.asarray(features, np.float64)
    lab = np.zeros(len(f), int) if labels is None else np.asarray(labels, int)
    g = int(lab.max()) + 1
    names = tuple(group_names) if group_names is not None else (("all",) if labels is None else
                                                                tuple(str(i) for i in range(g)))
    if len(names) != g:
        raise ValueError(f"{g} groups in the labels, {len(names)} names")
    if np.any(np.bincount(lab, minlength=g) < 2):
        raise ValueError("every group needs at least 2 samples")
    means = np.stack([f[lab == k].mean(axis=0) for k in range(g)])
    cov, s = ledoit_wolf(f - means[lab])
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, 1e-12 * max(float(evals.max()), 1e-12))
    whitening = (evecs / np.sqrt(evals)).T  # W^T W = V diag(1/l) V^T = cov^-1
    return FeatureGate(means, whitening, float("inf"), names,
                       {**dict(info or {}), "fit_n": len(f), "dims": f.shape[1], "shrinkage": round(s, 6)})
