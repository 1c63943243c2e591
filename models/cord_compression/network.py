"""A small per-segment CNN (binary: cord compression at this segment) with Grad-CAM on its last conv block.

Input: one normalised segment crop (1, 64, 80) (``roi.normalise``) and the segment index (0 = C2-C3), given
as a one-hot next to the pooled features (the prior differs by level: C5-C6 is compressed most often).
Four conv blocks (3x3 conv, batch norm, ReLU; 16, 32, 64, 64 channels; the first three pool by 2), global average pooling, a 2-layer head.
"""

from __future__ import annotations

import torch
from torch import nn

N_SEGMENTS = 5


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SegmentCNN(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64), dropout: float = 0.2) -> None:
        super().__init__()
        chans = (1, *widths)
        self.features = nn.Sequential(*[_block(chans[i], chans[i + 1], pool=i < len(widths) - 1)
                                        for i in range(len(widths))])
        self.head = nn.Sequential(nn.Linear(widths[-1] + N_SEGMENTS, 32), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(32, 1))

    def last_block(self) -> nn.Module:
        """The module whose output Grad-CAM weighs (the last conv block)."""
        return self.features[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def classify(self, fmap: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean(dim=(2, 3))
        onehot = nn.functional.one_hot(segment.long(), N_SEGMENTS).to(pooled.dtype)
        return self.head(torch.cat([pooled, onehot], dim=1)).squeeze(1)

    def forward(self, x: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W), (N,) segment index -> (N,) logits."""
        return self.classify(self.forward_features(x), segment)

    def gradcam(self, x: torch.Tensor, segment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N,) and Grad-CAM maps (N, H, W) in [0, 1] (per map: ReLU of the gradient-weighted channel sum
        of the last conv block, upsampled bilinearly to the input size, divided by its maximum)."""
        with torch.enable_grad():
            fmap = self.forward_features(x.detach())
            logits = self.classify(fmap, segment)
            (grad,) = torch.autograd.grad(logits.sum(), fmap)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * fmap).sum(dim=1, keepdim=True)).detach()
        cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None]
        return logits.detach(), cam / peak
