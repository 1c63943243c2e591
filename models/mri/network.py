"""Network definitions: disc-level localiser (a residual U-Net) and per-level degeneration classifier.

The two networks are MONAI's ``UNet`` (``num_res_units=1``) and ``Classifier``, written out here in plain torch with
the same module names, so that the state dicts are interchangeable with MONAI's and the outputs identical
(``tests/models/mri/test_mri_network.py`` loads the shipped weights into both and compares). Why not import MONAI:
``import monai`` loads every MONAI submodule (about 4 s on the 2-core CPU), which a worker paid before it could take
its first study; the worker needs only these two small networks. Training still uses MONAI's losses.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.mri.preprocessing import CROP_SHAPE
from pipelines.vocabulary import LEVELS

N_LEVELS = len(LEVELS)
LOCALISER_OUT = N_LEVELS + 2
"""Output channels: one heatmap per disc level C2-C3..C6-C7, then disc and canal mask logits."""
ANCHOR_OUT = 2
"""Extra output channels of an ``anchors=True`` localiser (``train --anchor``), after the ``LOCALISER_OUT``: a
heatmap of the C2 vertebral-body centre and a level-agnostic "any disc" heatmap (every disc centre in one map)."""
CLASSIFIER_OUT = ("disc_degeneration", "canal_stenosis", "foraminal_stenosis")
"""Classifier logits: the first two read mid-sagittal crops, the third foraminal crops (either side)."""


class _Convolution(nn.Sequential):
    """MONAI ``Convolution``: a 3x3 (transposed) convolution, then instance norm and PReLU unless ``conv_only``."""

    def __init__(self, cin: int, cout: int, stride: int, *, transposed: bool = False, conv_only: bool = False,
                 kernel: int = 3) -> None:
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding=kernel // 2, output_padding=stride - 1)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        if not conv_only:
            self.adn = nn.Sequential()
            self.adn.add_module("N", nn.InstanceNorm2d(cout))
            self.adn.add_module("A", nn.PReLU())


class _ResidualUnit(nn.Module):
    """MONAI ``ResidualUnit`` with one subunit: ``conv(x) + residual(x)``; the residual is the identity, or a
    convolution (3x3 strided, or 1x1) where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, *, last_conv_only: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        self.conv.add_module("unit0", _Convolution(cin, cout, stride, conv_only=last_conv_only))
        if stride != 1 or cin != cout:
            kernel = 3 if stride != 1 else 1
            self.residual: nn.Module = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        else:
            self.residual = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.residual(x)


class _SkipConnection(nn.Module):
    """``cat([x, submodule(x)])`` along the channels."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class ResidualUNet(nn.Module):
    """MONAI ``UNet(spatial_dims=2, num_res_units=1, strides=2...)``: the state dict keys are MONAI's."""

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()

        def block(cin: int, cout: int, chans: tuple[int, ...], is_top: bool) -> nn.Module:
            c = chans[0]
            if len(chans) > 2:
                sub = block(c, c, chans[1:], False)
                upc = 2 * c
            else:
                sub = _ResidualUnit(c, chans[1], 1)
                upc = c + chans[1]
            up = nn.Sequential(_Convolution(upc, cout, 2, transposed=True),
                               _ResidualUnit(cout, cout, 1, last_conv_only=is_top))
            return nn.Sequential(_ResidualUnit(cin, c, 2), _SkipConnection(sub), up)

        self.model = block(in_channels, out_channels, tuple(channels), True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResidualClassifier(nn.Module):
    """MONAI ``Classifier(num_res_units=1, strides=2...)``: strided residual units, then one linear layer."""

    def __init__(self, in_shape: tuple[int, int, int], classes: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Sequential()
        cin, h, w = in_shape
        for i, c in enumerate(channels):
            self.net.add_module(f"layer_{i}", _ResidualUnit(cin, c, 2, last_conv_only=i == len(channels) - 1))
            cin, h, w = c, (h + 1) // 2, (w + 1) // 2
        self.final = nn.Sequential(nn.Flatten(), nn.Linear(cin * h * w, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.net(x))


class DiscLocaliser(nn.Module):
    """Mid-sagittal slice (1, 128, 128) -> 5 disc-centre heatmaps + disc mask + canal mask logits (``anchors``:
    then the C2-body and any-disc heatmaps, ``ANCHOR_OUT``; default off, the network of before)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), anchors: bool = False) -> None:
        super().__init__()
        self.net = ResidualUNet(1, LOCALISER_OUT + (ANCHOR_OUT if anchors else 0), tuple(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LevelClassifier(nn.Module):
    """Spine-aligned crop (3 slices, 32, 64) -> 3 logits (disc herniation, canal stenosis, foraminal stenosis)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.net = ResidualClassifier((3, *CROP_SHAPE), len(CLASSIFIER_OUT), tuple(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
