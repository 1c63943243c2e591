"""A small HigherHRNet-style keypoint network (paper 002, Methods "Detection" and Supplementary Fig. 1).

Parallel branches at 1/4, 1/8 and 1/16 of the input resolution built from residual 3x3 blocks, repeatedly
fused (upsample + 1x1 conv from low to high, strided 3x3 conv from high to low). The 1/4 branch gives a
first heatmap set; a deconvolution to 1/2 resolution and residual blocks give the final high-resolution
heatmaps (multi-resolution supervision, eq. 3). A global-pool head on the lowest branch predicts the view
(neutral / flexion / extension) for images without a DICOM view label. Plain torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters that define the architecture (stored inside the weights file)."""

    in_channels: int = 1
    n_keypoints: int = 30
    widths: tuple[int, ...] = (24, 48, 96)
    blocks: int = 2
    """Residual blocks per branch per module."""
    modules_per_stage: tuple[int, ...] = (1, 1)
    """HR modules in stage 2 (2 branches) and stage 3 (3 branches)."""
    head_blocks: int = 1
    """Residual blocks after the deconvolution to 1/2 resolution."""
    n_views: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        d = dict(d)
        for k in ("widths", "modules_per_stage"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a residual connection (HRNet basic block)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout)
        self.conv2 = _conv_bn(cout, cout, relu=False)
        self.skip = nn.Identity() if cin == cout else _conv_bn(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


class HRModule(nn.Module):
    """Residual blocks on every branch, then an all-to-all fusion of the branches."""

    def __init__(self, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)]) for w in widths)
        fuse: list[nn.ModuleList] = []
        for i, wi in enumerate(widths):
            row = nn.ModuleList()
            for j, wj in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # lower resolution -> 1x1 conv, upsampled in forward
                    row.append(_conv_bn(wj, wi, 1, relu=False))
                else:  # higher resolution -> (i - j) strided convs
                    steps = [_conv_bn(wj, wj, 3, 2) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(wj, wi, 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(row)
        self.fuse = nn.ModuleList(fuse)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [b(x) for b, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse):
            acc = xs[i]
            for j, op in enumerate(row):
                if j == i:
                    continue
                y = op(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                acc = acc + y
            out.append(F.relu(acc))
        return out


class KeypointNet(nn.Module):
    """Image ``(B, 1, S, S)`` -> heatmaps at 1/4 and 1/2 resolution (``(B, K, S/4, S/4)``, ``(B, K, S/2, S/2)``)
    and view logits ``(B, 3)`` (order of ``pipelines.results.View``)."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        c = self.config
        w = c.widths
        self.stem = nn.Sequential(_conv_bn(c.in_channels, w[0], 3, 2), _conv_bn(w[0], w[0], 3, 2))
        self.stage1 = nn.Sequential(*[BasicBlock(w[0], w[0]) for _ in range(c.blocks)])
        self.down = nn.ModuleList(_conv_bn(w[i], w[i + 1], 3, 2) for i in range(len(w) - 1))
        self.stages = nn.ModuleList()
        for n_branches, n_modules in zip(range(2, len(w) + 1), c.modules_per_stage, strict=True):
            self.stages.append(nn.Sequential(*[_Wrap(HRModule(w[:n_branches], c.blocks)) for _ in range(n_modules)]))
        k = c.n_keypoints
        self.head_low = nn.Conv2d(w[0], k, 1)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(w[0] + k, w[0], 4, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)
        )
        self.head_blocks = nn.Sequential(*[BasicBlock(w[0], w[0]) for _ in range(c.head_blocks)])
        self.head_high = nn.Conv2d(w[0], k, 1)
        self.view_head = nn.Linear(w[-1], c.n_views)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stage1(self.stem(x))
        xs = [x]
        for i, stage in enumerate(self.stages):
            xs = xs + [self.down[i](xs[-1])]
            xs = stage(xs)
        hm_low = self.head_low(xs[0])
        y = self.head_blocks(self.deconv(torch.cat([xs[0], hm_low], dim=1)))
        hm_high = self.head_high(y)
        view_logits = self.view_head(xs[-1].mean(dim=(-2, -1)))
        return hm_low, hm_high, view_logits


class _Wrap(nn.Module):
    """Lets ``nn.Sequential`` chain modules that take and return lists."""

    def __init__(self, m: HRModule) -> None:
        super().__init__()
        self.m = m

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.m(xs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BasicBlock", "HRModule", "KeypointNet", "NetworkConfig", "count_parameters"]
