"""The one predictor shape of every model: ``Cls.load(weights, device)`` and an ``algorithm`` for provenance.

Every ``models/<name>/predictor.py`` defines one class on :class:`Predictor`: it names its checkpoint model
and shipped weights, loads them with :func:`models.common.checkpoint.load_checkpoint` (``weights_only=True``),
runs its tensors on the device it was given (the CPU unless told otherwise) and implements the interface the
pipelines state for it (``pipelines.interfaces``). ``models.registry`` builds them from the node settings.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from itertools import pairwise
from pathlib import Path
from typing import ClassVar, Protocol, Self, runtime_checkable

import torch

from models.common.checkpoint import Checkpoint, load_checkpoint
from pipelines.results import AlgorithmInfo

LOG = logging.getLogger("models")

RESEARCH_CARD = "research use only; trained on synthetic phantoms; see {card}"
"""The model-card text of ``AlgorithmInfo`` (intended use first, then where the card is)."""


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` (the node's ``device`` settings) -> a torch device.

    ``auto`` (or None) prefers CUDA when a device is visible. A CUDA device that is not there (no CUDA build,
    no GPU, or an index out of range) falls back to the CPU with a logged warning, so a worker configured for
    ``cuda`` on a CPU host still works."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (device.index is not None and device.index >= n):
            LOG.warning("device %s requested but %s; falling back to the CPU", name,
                        "no CUDA device is visible" if n == 0 else f"only {n} CUDA device(s) are visible")
            return torch.device("cpu")
    return device


def for_inference(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` on ``device`` in eval mode, its batch norms folded into the convolutions before them
    (:func:`fold_batch_norms`); on the CPU with its 4-D (convolution) weights in channels-last order.

    oneDNN's CPU convolutions run on channels-last weights 1.2-1.7x faster than on the default order here (stage 2
    of the keypoint cascade: 0.11 -> 0.07 s for 18 crops, one thread); the outputs agree to ~1e-5 (summation order).
    Inputs need no conversion: the convolution follows the weights' order. CUDA devices keep the default order
    (not measured here)."""
    net = net.to(device).eval()
    fold_batch_norms(net)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


def fold_batch_norms(net: torch.nn.Module) -> int:
    """Fold each eval-mode ``BatchNorm2d`` that directly follows a plain ``Conv2d`` / ``ConvTranspose2d`` in an
    ``nn.Sequential`` into that convolution's weight and bias, and put an ``nn.Identity`` in its place (same module
    names, so a block's output, the features a gate reads and a Grad-CAM map stay where they were). Returns the
    number folded. In eval mode a batch norm is a fixed per-channel affine map, so the folded network computes
    the same function: the keypoint model's points agree to 1e-4 px; one view through it takes 0.84x the time, the
    X-ray pipeline of a 3-view study 0.90x (views one after another) and 0.95x (views in threads; one torch thread,
    measured here). Only exact ``Conv2d`` / ``ConvTranspose2d`` types are folded (a subclass may have its
    own forward, e.g. the neck-pain model's central-difference convolution), and only inside ``nn.Sequential``,
    where the order of the children is the order of the forward."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for seq in [m for m in net.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(seq._modules)
        for conv_name, bn_name in pairwise(names):
            conv, bn = seq._modules[conv_name], seq._modules[bn_name]
            if (type(conv) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d) and type(bn) is torch.nn.BatchNorm2d
                    and not conv.training and not bn.training and bn.track_running_stats
                    and bn.num_features == conv.out_channels):
                seq._modules[conv_name] = fuse_conv_bn_eval(conv, bn,
                                                            transpose=type(conv) is torch.nn.ConvTranspose2d)
                seq._modules[bn_name] = torch.nn.Identity()
                folded += 1
    return folded


@runtime_checkable
class LoadablePredictor(Protocol):
    """What ``models.registry`` relies on: a class method ``load`` and the loaded model's ``algorithm``."""

    @classmethod
    def load(cls, weights: Path | str | None = None, device: str | torch.device = "cpu") -> Self: ...

    @property
    def algorithm(self) -> AlgorithmInfo: ...


class Predictor(ABC):
    """Base of the six predictors: the checkpoint they read and the identity they report.

    Subclasses set ``checkpoint_model`` (the ``"model"`` of their checkpoints), ``default_weights`` (the
    shipped file, used when ``weights`` is None) and ``model_card``, and implement ``load`` and ``algorithm``.
    """

    checkpoint_model: ClassVar[str]
    default_weights: ClassVar[Path]
    model_card: ClassVar[Path]
    device: torch.device

    @classmethod
    def read_checkpoint(cls, weights: Path | str | None = None) -> Checkpoint:
        """The checkpoint at ``weights`` (None: the shipped weights), checked to be one of this model."""
        return load_checkpoint(Path(weights) if weights else cls.default_weights, cls.checkpoint_model)

    @classmethod
    @abstractmethod
    def load(cls, weights: Path | str | None = None, device: str | torch.device = "cpu") -> Self:
        """The model from ``weights`` (None: the shipped weights) on ``device`` (see :func:`resolve_device`)."""

    @property
    @abstractmethod
    def algorithm(self) -> AlgorithmInfo:
        """Name, version and model card for provenance (Contributing Equipment, IHE AIR)."""

    @classmethod
    def card_text(cls) -> str:
        """The standard model-card text of ``AlgorithmInfo`` for this model."""
        try:
            where = cls.model_card.resolve().relative_to(Path(__file__).resolve().parents[2])
        except ValueError:
            where = cls.model_card
        return RESEARCH_CARD.format(card=where.as_posix())


__all__ = ["LoadablePredictor", "Predictor", "resolve_device"]
