"""Batch augmentation shared by the curvature and upper cervical classifiers (torch, on the CPU); the
learning-rate schedule is ``models.common.training.cosine_lr``.

Training crops are stored ``context`` x wider than the ROI; :func:`jitter_window` samples a window of the ROI's
size with random scale, shift and rotation (mimicking locator error and patient positioning), an optional
left-right flip (the facing of a lateral radiograph is arbitrary) and a random gamma.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter_window(x: torch.Tensor, out_size: int, context: float, *, generator: torch.Generator | None = None,
                  scale: float = 0.1, shift: float = 0.06, rotate_deg: float = 6.0, flip: bool = True,
                  gamma: float = 0.25, per_channel: float = 0.0) -> torch.Tensor:
    """(B, C, S, S) in [-1, 1] (ROI = central ``S / context``) -> (B, C, out, out) jittered windows.

    All channels of one sample (the three views of one patient) share the jitter and the flip; ``per_channel``
    adds an independent scale / shift of that fraction of the ROI (and ``per_channel x 50`` deg rotation) to
    each channel, as when the ROI of each view is located separately.
    """
    b0, c0 = x.shape[0], x.shape[1]
    rep = c0 if per_channel > 0 else 1
    b = b0 * rep

    def u(lo: float, hi: float, n: int = b0) -> torch.Tensor:
        v = lo + (hi - lo) * torch.rand(n, generator=generator)
        return v.repeat_interleave(rep) if n == b0 else v

    def w(r: float) -> torch.Tensor:
        return u(-r, r, b) if per_channel > 0 else torch.zeros(b)

    s = (1.0 / context) * (1.0 + u(-scale, scale) + w(per_channel))
    a = torch.deg2rad(u(-rotate_deg, rotate_deg) + w(per_channel * 50))
    tx = (u(-shift, shift) + w(per_channel)) * 2 / context
    ty = (u(-shift, shift) + w(per_channel)) * 2 / context
    fx = torch.where(torch.rand(b0, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b0)
    fx = fx.repeat_interleave(rep)
    if rep > 1:
        x = x.reshape(b, 1, *x.shape[-2:])
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = s * torch.cos(a) * fx
    theta[:, 0, 1] = -s * torch.sin(a)
    theta[:, 1, 0] = s * torch.sin(a) * fx
    theta[:, 1, 1] = s * torch.cos(a)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, [b, x.shape[1], out_size, out_size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if gamma:
        g = torch.exp(u(-gamma, gamma)).view(b, 1, 1, 1)
        out = ((out + 1) / 2).clamp(0, 1).pow(g) * 2 - 1
    return out.reshape(b0, c0, out_size, out_size)


def centre_window(x: torch.Tensor, out_size: int, context: float) -> torch.Tensor:
    """The central ROI window of a ``context`` x wider crop, resized to ``out_size`` (evaluation)."""
    s = x.shape[-1]
    side = s / context
    lo = (s - side) / 2
    if abs(side - out_size) < 1e-6 and float(lo).is_integer():
        i = int(lo)
        return x[..., i:i + out_size, i:i + out_size]
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / context
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
