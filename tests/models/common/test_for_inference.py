"""models.common.predictor.for_inference: eval mode, channels-last convolution weights on the CPU, same outputs."""

from __future__ import annotations

import copy

import torch

from models.common.predictor import for_inference
from models.xray_keypoints.network import KeypointNet, NetworkConfig


def test_channels_last_on_cpu_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    net = KeypointNet(NetworkConfig(widths=(8, 16, 32), n_keypoints=5))
    net.eval()
    reference = copy.deepcopy(net)
    out = for_inference(net, torch.device("cpu"))
    assert not out.training
    convs = [m for m in out.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        for a, b in zip(reference(x), out(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
