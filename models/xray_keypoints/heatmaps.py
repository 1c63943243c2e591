"""Gaussian heatmap targets (paper 002: a 2-D Gaussian per keypoint, standard deviation 1 heatmap pixel)."""

from __future__ import annotations

import torch


def gaussian_heatmaps(points: torch.Tensor, valid: torch.Tensor, h: int, w: int, sigma: float = 1.0) -> torch.Tensor:
    """Targets ``(B, K, h, w)`` with peak 1 at ``points`` (``(B, K, 2)`` heatmap-pixel ``(x, y)``, 0 = first
    pixel centre); keypoints with ``valid`` False (``(B, K)``) get an all-zero map."""
    xs = torch.arange(w, dtype=points.dtype, device=points.device)
    ys = torch.arange(h, dtype=points.dtype, device=points.device)
    gx = torch.exp(-((xs - points[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, K, w)
    gy = torch.exp(-((ys - points[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, K, h)
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    return maps * valid.to(maps.dtype)[..., None, None]


def input_to_heatmap(points: torch.Tensor, stride: int) -> torch.Tensor:
    """Model-input pixel coordinates -> heatmap pixel coordinates for a heatmap ``stride`` times smaller."""
    return (points + 0.5) / stride - 0.5


def heatmap_to_input(points: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap pixel coordinates -> model-input pixel coordinates (inverse of :func:`input_to_heatmap`)."""
    return (points + 0.5) * stride - 0.5
