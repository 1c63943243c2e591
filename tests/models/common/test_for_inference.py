"""models.common.predictor.for_inference: eval mode, batch norms folded, channels-last convolution weights on the CPU,
same outputs."""

from __future__ import annotations

import copy

import torch

from models.common.predictor import fold_batch_norms, for_inference
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


def _randomise_batch_norms(net: torch.nn.Module) -> None:
    """Running statistics and affine parameters unlike a fresh layer's, so that folding them is not a no-op."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))


def test_batch_norms_folded_into_convolutions_compute_the_same_function() -> None:
    torch.manual_seed(0)
    net = KeypointNet(NetworkConfig(widths=(8, 16, 32), n_keypoints=5))
    _randomise_batch_norms(net)
    net.eval()
    reference = copy.deepcopy(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    out = for_inference(net, torch.device("cpu"))
    assert n_bn > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in out.modules())
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        for a, b in zip(reference(x), out(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


class _OwnConv(torch.nn.Conv2d):
    """A convolution subclass with a forward of its own (as the neck-pain model's central-difference one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - super().forward(torch.zeros_like(x))


def test_fold_only_where_the_forward_order_is_known() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),  # folded
        _OwnConv(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4),  # subclass: kept
        torch.nn.ReLU(), torch.nn.BatchNorm2d(4),  # not after a convolution: kept
        torch.nn.ConvTranspose2d(4, 3, 4, 2, 1, bias=True), torch.nn.BatchNorm2d(3),  # folded (transposed)
    )
    _randomise_batch_norms(net)
    net.eval()
    reference = copy.deepcopy(net)
    assert fold_batch_norms(net) == 2
    assert [type(m).__name__ for m in net] == ["Conv2d", "Identity", "ReLU", "_OwnConv", "BatchNorm2d", "ReLU",
                                               "BatchNorm2d", "ConvTranspose2d", "Identity"]
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(reference(x), net(x), atol=1e-4, rtol=1e-4)
    training = copy.deepcopy(reference).train()
    assert fold_batch_norms(training) == 0  # batch statistics in training mode: nothing to fold


def test_grad_cam_maps_unchanged_by_folding() -> None:
    from models.cord_compression.network import SegmentCNN

    torch.manual_seed(0)
    net = SegmentCNN()
    _randomise_batch_norms(net)
    net.eval()
    reference = copy.deepcopy(net)
    out = for_inference(net, torch.device("cpu"))
    x, seg = torch.randn(3, 1, 64, 64), torch.tensor([0, 2, 4])
    (la, ca), (lb, cb) = reference.gradcam(x, seg), out.gradcam(x, seg)
    assert torch.allclose(la, lb, atol=1e-4, rtol=1e-4)
    assert torch.allclose(ca, cb, atol=1e-4)
