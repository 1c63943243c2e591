"""Network definitions (MONAI): disc-level localiser and per-level degeneration classifier."""

from __future__ import annotations

import torch
from monai.networks.nets import Classifier, UNet
from torch import nn

from pipelines.mri.preprocessing import CROP_SHAPE
from pipelines.vocabulary import LEVELS

N_LEVELS = len(LEVELS)
LOCALISER_OUT = N_LEVELS + 2
"""Output channels: one heatmap per disc level C2-C3..C6-C7, then disc and canal mask logits."""
CLASSIFIER_OUT = ("disc_degeneration", "canal_stenosis", "foraminal_stenosis")
"""Classifier logits: the first two read mid-sagittal crops, the third foraminal crops (either side)."""


class DiscLocaliser(nn.Module):
    """Mid-sagittal slice (1, 128, 128) -> 5 disc-centre heatmaps + disc mask + canal mask logits."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.net = UNet(spatial_dims=2, in_channels=1, out_channels=LOCALISER_OUT, channels=channels,
                        strides=(2,) * (len(channels) - 1), num_res_units=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LevelClassifier(nn.Module):
    """Spine-aligned crop (3 slices, 32, 64) -> 3 logits (disc herniation, canal stenosis, foraminal stenosis)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.net = Classifier(in_shape=(3, *CROP_SHAPE), classes=len(CLASSIFIER_OUT), channels=channels,
                              strides=(2,) * len(channels), num_res_units=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
