"""Differentiable spatial to numerical transform (DSNT, paper 002 eq. 4-5; Nibali et al. 2018).

A heatmap ``H`` (``..., h, w``) is normalised with a softmax (scaled by ``beta``: MSE-trained heatmaps peak
at 1, so an unscaled softmax would be almost flat) into a probability map ``Z``; the coordinates are the
expectations ``<Z, X>_F`` and ``<Z, Y>_F`` with ``X_ij = (2j - (w + 1)) / w`` and ``Y_ij = (2i - (h + 1)) / h``
(1-based ``i, j``), so the centre of the top-left pixel lies at ``(-1 + 1/w, -1 + 1/h)``.
The variance of ``Z`` around the expectation is the keypoint spread used for uncertainty.
"""

from __future__ import annotations

import torch


def normalized_grid(h: int, w: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the 1-D normalised coordinates of pixel centres: ``xs`` (w,), ``ys`` (h,) in (-1, 1)."""
    xs = (2 * torch.arange(1, w + 1, device=device, dtype=dtype) - (w + 1)) / w
    ys = (2 * torch.arange(1, h + 1, device=device, dtype=dtype) - (h + 1)) / h
    return xs, ys


def softmax_2d(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Softmax over the last two dimensions of ``beta * heatmaps``."""
    *lead, h, w = heatmaps.shape
    flat = (beta * heatmaps).reshape(*lead, h * w).float()
    return torch.softmax(flat, dim=-1).reshape(*lead, h, w)


def dsnt(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected normalised coordinates and their variance under ``prob`` (``..., h, w``, sums to 1).

    Returns ``mean`` (``..., 2``) as normalised ``(x, y)`` in (-1, 1) and ``var`` (``..., 2``) in normalised units².
    """
    h, w = prob.shape[-2:]
    xs, ys = normalized_grid(h, w, device=prob.device, dtype=prob.dtype)
    px = prob.sum(dim=-2)  # (..., w) marginal over rows
    py = prob.sum(dim=-1)  # (..., h)
    mx = (px * xs).sum(-1)
    my = (py * ys).sum(-1)
    vx = (px * (xs - mx.unsqueeze(-1)) ** 2).sum(-1)
    vy = (py * (ys - my.unsqueeze(-1)) ** 2).sum(-1)
    return torch.stack([mx, my], dim=-1), torch.stack([vx, vy], dim=-1)


def normalized_to_pixels(coords: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Normalised ``(x, y)`` -> heatmap pixel coordinates (0 = centre of the first pixel)."""
    x = (coords[..., 0] * w + w - 1) / 2
    y = (coords[..., 1] * h + h - 1) / 2
    return torch.stack([x, y], dim=-1)


def pixels_to_normalized(coords: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Heatmap pixel coordinates -> normalised ``(x, y)``; inverse of :func:`normalized_to_pixels`."""
    x = (2 * coords[..., 0] + 1 - w) / w
    y = (2 * coords[..., 1] + 1 - h) / h
    return torch.stack([x, y], dim=-1)


def heatmap_coordinates(heatmaps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DSNT on raw heatmaps (``..., h, w``): pixel ``(x, y)`` (``..., 2``) and one-sigma spread in pixels (``..., 2``)."""
    h, w = heatmaps.shape[-2:]
    mean, var = dsnt(softmax_2d(heatmaps, beta))
    px = normalized_to_pixels(mean, h, w)
    sd = torch.stack([var[..., 0].clamp_min(0).sqrt() * w / 2, var[..., 1].clamp_min(0).sqrt() * h / 2], dim=-1)
    return px, sd


def local_dsnt(heatmaps: torch.Tensor, radius: int = 4, floor: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """DSNT restricted to a ``(2r+1)^2`` window around each heatmap's maximum, with a linear normalisation.

    Heatmaps trained with MSE against unit-peak Gaussians (eq. 1-3) are flat away from the peak, so a
    global softmax (eq. 4) spreads probability over thousands of background pixels and pulls the expectation
    towards the map centre, while a sharp softmax (large ``beta``) snaps to the arg-max pixel. Here the
    probability map is ``relu(H - floor * max(H))`` inside the window, normalised to sum 1: unbiased for a
    symmetric peak, insensitive to background noise, and still differentiable in the heatmap values.

    Returns pixel ``(x, y)`` (``B, K, 2``) and the one-sigma spread inside the window (``B, K, 2``, pixels).
    """
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    idx = flat.argmax(-1)
    iy, ix = idx // w, idx % w
    offs = torch.arange(-radius, radius + 1, device=heatmaps.device)
    ys, xs = iy[..., None] + offs, ix[..., None] + offs  # (B, K, 2r+1)
    inside = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    ysc, xsc = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
    bi = torch.arange(b, device=heatmaps.device)[:, None, None, None]
    ki = torch.arange(k, device=heatmaps.device)[None, :, None, None]
    patch = heatmaps[bi, ki, ysc[..., :, None], xsc[..., None, :]].float()  # (B, K, 2r+1, 2r+1)
    mask = (inside[0][..., :, None] & inside[1][..., None, :]).float()
    peak = patch.amax(dim=(-2, -1), keepdim=True)
    wts = torch.relu(patch - floor * peak) * mask
    norm = wts.sum(dim=(-2, -1), keepdim=True)
    prob = torch.where(norm > 1e-12, wts / norm.clamp_min(1e-12), mask / mask.sum(dim=(-2, -1), keepdim=True))
    gx, gy = xs.float()[..., None, :], ys.float()[..., :, None]
    mx = (prob * gx).sum(dim=(-2, -1))
    my = (prob * gy).sum(dim=(-2, -1))
    vx = (prob * (gx - mx[..., None, None]) ** 2).sum(dim=(-2, -1))
    vy = (prob * (gy - my[..., None, None]) ** 2).sum(dim=(-2, -1))
    return torch.stack([mx, my], -1), torch.stack([vx, vy], -1).clamp_min(0).sqrt()
