"""DSNT on hand-built heatmaps, Gaussian targets and stride conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.xray_keypoints.dsnt import (
    dsnt,
    heatmap_coordinates,
    local_dsnt,
    normalized_grid,
    normalized_to_pixels,
    pixels_to_normalized,
)
from models.xray_keypoints.heatmaps import gaussian_heatmaps, heatmap_to_input, input_to_heatmap

torch.set_num_threads(1)


def test_grid_matches_paper_definition() -> None:
    xs, ys = normalized_grid(4, 5)
    # X_ij = (2j - (w + 1)) / w for j = 1..w
    assert torch.allclose(xs, torch.tensor([(2 * j - 6) / 5 for j in range(1, 6)]))
    assert torch.allclose(ys, torch.tensor([(2 * i - 5) / 4 for i in range(1, 5)]))


def test_single_hot_pixel_gives_its_centre() -> None:
    prob = torch.zeros(7, 9)
    prob[2, 6] = 1.0
    mean, var = dsnt(prob)
    px = normalized_to_pixels(mean, 7, 9)
    assert px.tolist() == pytest.approx([6.0, 2.0])
    assert var.tolist() == pytest.approx([0.0, 0.0], abs=1e-7)


def test_two_pixel_split_gives_weighted_mean_and_variance() -> None:
    prob = torch.zeros(5, 10)
    prob[1, 3] = 0.25
    prob[1, 7] = 0.75
    mean, var = dsnt(prob)
    px = normalized_to_pixels(mean, 5, 10)
    assert px[0].item() == pytest.approx(0.25 * 3 + 0.75 * 7)
    assert px[1].item() == pytest.approx(1.0)
    # variance in pixels^2: 0.25*0.75*(7-3)^2 = 3; normalised units scale by (2/w)^2
    assert var[0].item() == pytest.approx(3.0 * (2 / 10) ** 2)


def test_gaussian_heatmap_roundtrip_is_subpixel_exact() -> None:
    pts = torch.tensor([[[10.3, 20.7], [40.0, 5.5]]])
    hm = gaussian_heatmaps(pts, torch.tensor([[True, True]]), 32, 48, sigma=1.0)
    assert hm.shape == (1, 2, 32, 48)
    assert hm.max().item() <= 1.0
    xy, sd = local_dsnt(hm, radius=4, floor=0.1)
    assert torch.allclose(xy, pts, atol=0.02)
    noisy = hm + 0.03 * torch.randn(hm.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(local_dsnt(noisy)[0], pts, atol=0.1)
    # the sharp global softmax (the paper's eq. 4 with large beta) snaps towards the arg-max pixel
    snapped, spread = heatmap_coordinates(hm, beta=20.0)
    assert (snapped - pts).abs().max() > 0.1
    assert (spread < 1.0).all()


def test_local_dsnt_is_differentiable() -> None:
    hm = gaussian_heatmaps(torch.tensor([[[6.2, 7.9]]]), torch.tensor([[True]]), 16, 16).requires_grad_(True)
    xy, _ = local_dsnt(hm)
    xy[..., 0].sum().backward()
    assert hm.grad is not None and hm.grad.abs().sum() > 0


def test_flat_heatmap_has_large_spread_and_central_mean() -> None:
    xy, sd = heatmap_coordinates(torch.zeros(1, 1, 16, 16), beta=20.0)
    assert xy[0, 0].tolist() == pytest.approx([7.5, 7.5])
    assert sd[0, 0, 0].item() == pytest.approx(np.sqrt((16**2 - 1) / 12), rel=1e-4)


def test_invalid_keypoints_get_empty_maps() -> None:
    hm = gaussian_heatmaps(torch.tensor([[[3.0, 3.0]]]), torch.tensor([[False]]), 8, 8)
    assert hm.abs().sum().item() == 0.0


def test_pixel_normalised_and_stride_conversions_invert() -> None:
    p = torch.tensor([[3.25, 17.5], [0.0, 0.0]])
    assert torch.allclose(normalized_to_pixels(pixels_to_normalized(p, 20, 30), 20, 30), p)
    assert torch.allclose(heatmap_to_input(input_to_heatmap(p, 2), 2), p)
    # input pixels 0 and 1 are covered by heatmap pixel 0 whose centre is at input 0.5
    assert heatmap_to_input(torch.tensor([0.0]), 2).item() == pytest.approx(0.5)
