"""S-ResNet-34 (seed 003) and the plain ResNet-34 baseline, narrow enough for a CPU.

Both keep ResNet-34's layout: a stem, four stages of basic residual blocks ``[3, 4, 6, 3]``, global average
pooling and a linear classifier. Widths are ``16-32-64-128`` (about 1.4 M parameters) instead of 64-512.

**The learnable weight matrix (our reading of the abstract).** The paper "introduces a learnable weight matrix
integrated with convolutional operations within the residual blocks to enhance the model's nonlinear
representation capability". Here every residual block owns a learnable element-wise weight matrix ``W`` of the
shape of its output feature map (channels x height x width at the training input size). The residual branch
``F(x) = BN(conv(ReLU(BN(conv(x)))))`` is re-weighted element-wise before the identity is added::

    y = ReLU( (1 + W) * F(x) + shortcut(x) )

``W`` starts at zero (the block starts as a plain ResNet block) and learns, per channel and position, how much
of the convolution output passes: a multiplicative (hence nonlinear in the parameters) position-dependent
gain that plain convolutions, being translation invariant, cannot express. When the feature map has another
size than the one ``W`` was made for (another input size), ``W`` is resized bilinearly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYOUT: tuple[int, ...] = (3, 4, 6, 3)
WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
ARCHS: tuple[str, ...] = ("s_resnet34", "resnet34")


class BasicBlock(nn.Module):
    """ResNet basic block; with ``map_size`` it carries the S-ResNet learnable weight matrix."""

    def __init__(self, cin: int, cout: int, stride: int, map_size: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.weight_matrix = nn.Parameter(torch.zeros(1, cout, map_size, map_size)) if map_size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)), inplace=True)))
        if self.weight_matrix is not None:
            w = self.weight_matrix
            if w.shape[-2:] != f.shape[-2:]:
                w = F.interpolate(w, size=f.shape[-2:], mode="bilinear", align_corners=False)
            f = f * (1.0 + w)
        return F.relu(f + self.shortcut(x), inplace=True)


class ResNet34(nn.Module):
    """Narrow ResNet-34 classifier; ``learnable_matrix=True`` makes it S-ResNet-34."""

    def __init__(self, num_classes: int = 3, *, learnable_matrix: bool = True, input_size: int = 128,
                 widths: tuple[int, ...] = WIDTHS, layout: tuple[int, ...] = LAYOUT, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        size = input_size // 4
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, (n, w) in enumerate(zip(layout, widths, strict=True)):
            for b in range(n):
                stride = 2 if (stage > 0 and b == 0) else 1
                if stride == 2:
                    size = (size + 1) // 2
                blocks.append(BasicBlock(cin, w, stride, size if learnable_matrix else None))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [-1, 1] -> (B, widths[-1]) pooled features, the input of the linear head (penultimate
        layer; the out-of-distribution gate measures its distance, ``models.common.ood``)."""
        h = self.blocks(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [-1, 1] -> (B, classes) logits."""
        return self.head(self.features(x))


def build(arch: str, num_classes: int = 3, input_size: int = 128) -> ResNet34:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return ResNet34(num_classes, learnable_matrix=arch == "s_resnet34", input_size=input_size)
