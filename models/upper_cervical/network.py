"""CerviHFENet-style network: hybrid feature extraction over the extension, neutral and flexion ROIs.

Input: ``(B, 3, S, S)``, the upper cervical ROI of the three views in :data:`models.upper_cervical.VIEW_ORDER`
(extension, neutral, flexion), each rotated so that the cervical axis is vertical (:mod:`models.curvature.roi`).

Hybrid feature extraction (our reading of the abstract):

* **anatomy stream**: one shared CNN encoder applied to each view separately (per-view bone anatomy: dens
  shape, ossicle, fracture line, basion/opisthion), pooled to a vector per view;
* **dynamic stream**: (a) the same per-view vectors as a sequence extension -> neutral -> flexion through a GRU
  (sequential features across positions) plus their differences flexion - extension and neutral - extension;
  (b) an early-fusion encoder on the three views stacked as channels, which can compare positions pixel by
  pixel (the atlas moving against the dens, the occiput against C1);
* a classifier on the concatenation, followed by a :class:`LabelRelation` layer ``z' = z + A sigmoid(z)``
  (``A`` learnable, zero diagonal) that learns how one abnormality changes the odds of another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.vocabulary import UPPER_CERVICAL_LABELS


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Small CNN: (B, C, S, S) -> (B, widths[-1]); a stride-2 stem then one stride-2 residual-free block per
    width (S = 96: 48 -> 24 -> 12 -> 6 -> 3), global average and max pooling summed."""

    def __init__(self, cin: int, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c = widths[0]
        for w in widths:
            layers.append(_block(c, w, 2))
            c = w
        self.body = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.stem(x))
        return F.adaptive_avg_pool2d(h, 1).flatten(1) + F.adaptive_max_pool2d(h, 1).flatten(1)


class LabelRelation(nn.Module):
    """``z' = z + A sigmoid(z)``: ``A[j, i]`` is how much label ``i`` raises (or lowers) label ``j``'s logit."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(k, k))
        self.register_buffer("mask", 1 - torch.eye(k))

    @property
    def matrix(self) -> torch.Tensor:
        return self.a * self.mask

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.sigmoid(z) @ self.matrix.T


class CerviHFENet(nn.Module):
    def __init__(self, num_labels: int = len(UPPER_CERVICAL_LABELS), widths: tuple[int, ...] = (16, 32, 48, 64),
                 hidden: int = 64) -> None:
        super().__init__()
        self.anatomy = Encoder(1, widths)
        self.motion = Encoder(3, widths)
        d = self.anatomy.out_dim
        self.gru = nn.GRU(d, hidden, batch_first=True)
        feat = 3 * d + 2 * d + hidden + self.motion.out_dim
        self.head = nn.Sequential(nn.Linear(feat, 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                  nn.Linear(128, num_labels))
        self.relation = LabelRelation(num_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, 128) the head's hidden layer after its ReLU (penultimate layer; the
        out-of-distribution gate measures its distance, ``models.common.ood``)."""
        b = x.shape[0]
        per_view = self.anatomy(x.reshape(b * 3, 1, *x.shape[-2:])).view(b, 3, -1)
        ext, neu, flx = per_view.unbind(1)
        _, h = self.gru(per_view)
        feats = torch.cat([ext, neu, flx, flx - ext, neu - ext, h[-1], self.motion(x)], dim=1)
        return self.head[1](self.head[0](feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, 6) logits (after the label-relation layer)."""
        return self.relation(self.head[3](self.head[2](self.features(x))))
