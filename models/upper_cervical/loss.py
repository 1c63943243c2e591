"""Modified focal loss for the six upper cervical labels (our reading of CerviHFENet, seed 001).

The abstract says a modified focal loss "enables the model to learn the mutual exclusivity or conditionally
dependent relationships among the six abnormalities". Implemented here as three parts:

1. **Focal binary cross-entropy** per label (Lin et al.): ``-a_k (1 - p_t)^gamma log p_t`` with ``a_k`` from the
   label's training prevalence (rare labels weigh more), ``gamma = 2``.
2. **Mutual-exclusion penalty**: for every label pair that never co-occurs in the training labels while both are
   frequent enough (:func:`label_relations`), ``lambda_ex * p_i * p_j`` for samples that do not carry both
   labels: co-predicting two exclusive abnormalities costs, predicting either alone does not.
3. **Conditional dependence** is *learned* by the network's label-relation layer
   (:class:`models.upper_cervical.network.LabelRelation`: ``z' = z + A sigmoid(z)``, ``A`` 6 x 6 with a zero
   diagonal), which the focal term trains; a penalty ``lambda_dep * relu(-A_ij)`` for the pairs whose
   conditional probability ``P(j | i)`` is at least twice ``P(j)`` in the training labels keeps those
   entries non-negative (a parent label may only raise its dependant), and ``lambda_ex * relu(A_ij)`` keeps the
   exclusive pairs' entries non-positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LabelRelations:
    """Label statistics from the training set."""

    prevalence: tuple[float, ...]
    exclusive: tuple[tuple[int, int], ...]
    """Pairs (i < j) that never co-occur."""
    dependent: tuple[tuple[int, int], ...]
    """Ordered pairs (i -> j) with P(j | i) >= 2 P(j)."""

    def to_dict(self) -> dict:
        return {"prevalence": list(self.prevalence), "exclusive": [list(p) for p in self.exclusive],
                "dependent": [list(p) for p in self.dependent]}

    @classmethod
    def from_dict(cls, d: dict) -> LabelRelations:
        return cls(tuple(d["prevalence"]), tuple(tuple(p) for p in d["exclusive"]),
                   tuple(tuple(p) for p in d["dependent"]))


def label_relations(labels: np.ndarray, min_support: int = 5, lift: float = 2.0) -> LabelRelations:
    """Exclusive and dependent label pairs from a (N, K) 0/1 training label matrix."""
    y = np.asarray(labels, dtype=bool)
    n, k = y.shape
    prev = y.mean(axis=0)
    support = y.sum(axis=0)
    excl, dep = [], []
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            both = int(np.sum(y[:, i] & y[:, j]))
            if i < j and both == 0 and support[i] >= min_support and support[j] >= min_support:
                excl.append((i, j))
            if support[i] >= min_support and prev[j] > 0 and both / support[i] >= lift * prev[j]:
                dep.append((i, j))
    return LabelRelations(tuple(float(p) for p in prev), tuple(excl), tuple(dep))


class ModifiedFocalLoss(torch.nn.Module):
    """Focal BCE + mutual-exclusion penalty + relation-matrix sign constraints (see the module docstring)."""

    def __init__(self, relations: LabelRelations, gamma: float = 2.0, lambda_ex: float = 1.0,
                 lambda_dep: float = 0.1) -> None:
        super().__init__()
        prev = torch.tensor(relations.prevalence, dtype=torch.float32).clamp(0.02, 0.98)
        self.register_buffer("alpha", (1 - prev) / (1 - prev).mean())  # rare positives weigh more
        self.gamma = gamma
        self.lambda_ex = lambda_ex
        self.lambda_dep = lambda_dep
        self.exclusive = list(relations.exclusive)
        self.dependent = list(relations.dependent)

    def focal(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = p * target + (1 - p) * (1 - target)
        a = self.alpha * target + (1 - target) * (2 - self.alpha).clamp(min=0.1)
        return (a * (1 - p_t) ** self.gamma * bce).sum(-1).mean()

    def exclusion(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.exclusive:
            return logits.new_zeros(())
        p = torch.sigmoid(logits)
        i = torch.tensor([e[0] for e in self.exclusive])
        j = torch.tensor([e[1] for e in self.exclusive])
        both = target[:, i] * target[:, j]
        return ((p[:, i] * p[:, j]) * (1 - both)).sum(-1).mean()

    def relation_penalty(self, relation: torch.Tensor | None) -> torch.Tensor:
        if relation is None:
            return torch.zeros(())
        pen = relation.new_zeros(())
        for i, j in self.dependent:
            pen = pen + self.lambda_dep * F.relu(-relation[j, i])
        for i, j in self.exclusive:
            pen = pen + self.lambda_ex * (F.relu(relation[j, i]) + F.relu(relation[i, j]))
        return pen

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                relation: torch.Tensor | None = None) -> torch.Tensor:
        """``logits`` (B, K) after the relation layer, ``target`` (B, K) 0/1, ``relation`` the layer's A."""
        return (self.focal(logits, target) + self.lambda_ex * self.exclusion(logits, target)
                + self.relation_penalty(relation))
