"""The plain-torch MRI networks are MONAI's UNet and Classifier: same state dict keys and shapes, same outputs with
the shipped weights (and with random ones, for the other channel widths the trainer offers)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from monai.networks.nets import Classifier, UNet

from models.common.checkpoint import load_checkpoint
from models.mri import DEFAULT_WEIGHTS
from models.mri.network import LOCALISER_OUT, DiscLocaliser, LevelClassifier
from pipelines.mri.preprocessing import CROP_SHAPE


def _monai_localiser(channels: tuple[int, ...]) -> torch.nn.Module:
    return UNet(spatial_dims=2, in_channels=1, out_channels=LOCALISER_OUT, channels=channels,
                strides=(2,) * (len(channels) - 1), num_res_units=1)


def _monai_classifier(channels: tuple[int, ...]) -> torch.nn.Module:
    return Classifier(in_shape=(3, *CROP_SHAPE), classes=3, channels=channels, strides=(2,) * len(channels),
                      num_res_units=1)


def _same_state(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)


@pytest.mark.parametrize("channels", [(16, 32, 64, 128), (8, 16, 32), (16, 32, 64, 128, 128)])
def test_localiser_matches_monai_unet(channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    ref = _monai_localiser(channels).eval()
    ours = DiscLocaliser(channels).eval()
    _same_state(ours.net, ref)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))  # PReLU slopes off their initial value too
    ours.net.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("channels", [(16, 32, 64, 64), (8, 16, 32)])
def test_classifier_matches_monai_classifier(channels: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    ref = _monai_classifier(channels).eval()
    ours = LevelClassifier(channels).eval()
    _same_state(ours.net, ref)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours.net.load_state_dict(ref.state_dict())
    x = torch.randn(5, 3, *CROP_SHAPE)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_shipped_weights_give_monai_outputs() -> None:
    ck = load_checkpoint(DEFAULT_WEIGHTS, expected_model="mri")
    loc_state, cls_state = ck.part("localiser"), ck.part("classifier")
    loc_ch = tuple(ck.meta.get("config", {}).get("loc_channels", (16, 32, 64, 128)))
    cls_ch = (16, 32, 64, 64)
    ref_loc, ref_cls = _monai_localiser(loc_ch).eval(), _monai_classifier(cls_ch).eval()
    ref_loc.load_state_dict({k.removeprefix("net."): v for k, v in loc_state.items()})
    ref_cls.load_state_dict({k.removeprefix("net."): v for k, v in cls_state.items()})
    ours_loc, ours_cls = DiscLocaliser(loc_ch).eval(), LevelClassifier(cls_ch).eval()
    ours_loc.load_state_dict(loc_state)
    ours_cls.load_state_dict(cls_state)
    torch.manual_seed(2)
    with torch.no_grad():
        x = torch.rand(1, 1, 128, 128)
        assert torch.allclose(ours_loc(x), ref_loc(x), atol=1e-5)
        c = torch.rand(4, 3, *CROP_SHAPE)
        assert torch.allclose(ours_cls(c), ref_cls(c), atol=1e-5)


def test_loading_the_mri_predictor_does_not_import_monai() -> None:
    code = ("import sys; from models.mri.predictor import MriPredictor; MriPredictor.load(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
