"""Differentiable (torch) versions of the radiograph measurements used by the multi-task loss (paper 002
eq. 9-30). They must agree with the numpy reference in ``pipelines.xray.geometry`` (tested).

Input ``points`` (B, 30, 2) in pixels (x right, y down, ``KEYPOINT_NAMES`` order) and ``mm_per_px``: (B,)
isotropic or (B, 2) as (row, col) spacing; the points are converted to mm first, as ``geometry`` does.
Returns a dict of tensors: ``cobb`` (B,) deg, ``sva`` (B,) mm, ``listhesis_distance`` (B, 5) mm,
``listhesis_angle`` (B, 5) deg, ``segmental_angle`` (B, 5) deg (segments C2-C3..C6-C7), ``sdvb`` (B, 5) mm
and ``sdvc`` (B, 5) mm (C3..C7). Angles are lordosis-positive; the translation is anterior-positive.
"""

from __future__ import annotations

import torch

MEASURE_KEYS: tuple[str, ...] = ("cobb", "sva", "listhesis_distance", "listhesis_angle", "sdvb", "sdvc", "segmental_angle")

AS, AI, PS, PI = 0, 1, 2, 3


def _corner(points: torch.Tensor, vertebra: int, role: int) -> torch.Tensor:
    return points[:, 4 * vertebra + role]


def _angle(v: torch.Tensor) -> torch.Tensor:
    return torch.atan2(v[..., 1], v[..., 0])


def _wrap_deg(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + 180.0, 360.0) - 180.0


def anterior_sign(points: torch.Tensor) -> torch.Tensor:
    """+1 where the anterior side faces +x (image right), -1 where it faces -x; shape (B,)."""
    ant = points[:, 0:24:4].mean(1) + points[:, 1:24:4].mean(1)
    post = points[:, 2:24:4].mean(1) + points[:, 3:24:4].mean(1)
    return torch.where(ant[:, 0] >= post[:, 0], 1.0, -1.0).to(points.dtype)


def measures(points: torch.Tensor, mm_per_px: torch.Tensor) -> dict[str, torch.Tensor]:
    """All measurements of a batch (see the module docstring)."""
    sp = mm_per_px.to(points.dtype)
    scale = torch.stack([sp, sp], -1) if sp.ndim == 1 else sp.flip(-1)  # (B, 2) as (x, y) = (col, row)
    points = points * scale[:, None, :]
    mm_per_px = torch.ones(points.shape[0], dtype=points.dtype, device=points.device)
    s = anterior_sign(points)
    # Cobb C2-C7: angle between the inferior endplates of C2 and C7; lordosis positive.
    e2 = _corner(points, 0, AI) - _corner(points, 0, PI)
    e7 = _corner(points, 5, AI) - _corner(points, 5, PI)
    cobb = s * _wrap_deg(torch.rad2deg(_angle(e7) - _angle(e2)))
    # SVA C2-C7: horizontal offset of the C2 centroid (diagonal intersection) from C7 postero-superior corner.
    c2 = _diagonal_intersection(points, 0)
    sva = s * (c2[:, 0] - _corner(points, 5, PS)[:, 0]) * mm_per_px
    ld, la, seg, sdvb, sdvc = [], [], [], [], []
    for v in range(5):
        # translation (eq. 20-21): signed distance of the lower postero-superior corner from the line of the
        # upper posterior wall, anterior positive (upper vertebra slipped forwards)
        wall = _corner(points, v, PS) - _corner(points, v, PI)
        n = torch.stack([-wall[:, 1], wall[:, 0]], -1) / wall.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        n = n * torch.sign((n * (_corner(points, v, AS) - _corner(points, v, PS))).sum(-1, keepdim=True))
        ld.append((_corner(points, v, PI) - _corner(points, v + 1, PS)).mul(n).sum(-1) * mm_per_px)
        lo_sup = _corner(points, v + 1, AS) - _corner(points, v + 1, PS)
        # posterior wall angulation: upper vs lower posterior wall (lordosis positive)
        up_wall = _corner(points, v, PS) - _corner(points, v, PI)
        lo_wall = _corner(points, v + 1, PS) - _corner(points, v + 1, PI)
        la.append(s * _wrap_deg(torch.rad2deg(_angle(lo_wall) - _angle(up_wall))))
        # segmental (disc) angle: upper inferior endplate vs lower superior endplate
        up_inf = _corner(points, v, AI) - _corner(points, v, PI)
        seg.append(s * _wrap_deg(torch.rad2deg(_angle(lo_sup) - _angle(up_inf))))
        w = v + 1
        ant_mid = (_corner(points, w, AS) + _corner(points, w, AI)) / 2
        post_mid = (_corner(points, w, PS) + _corner(points, w, PI)) / 2
        sdvb.append((ant_mid - post_mid).norm(dim=-1) * mm_per_px)
        sdvc.append((points[:, 24 + w] - post_mid).norm(dim=-1) * mm_per_px)
    return {"cobb": cobb, "sva": sva, "listhesis_distance": torch.stack(ld, 1), "listhesis_angle": torch.stack(la, 1),
            "segmental_angle": torch.stack(seg, 1),
            "sdvb": torch.stack(sdvb, 1), "sdvc": torch.stack(sdvc, 1)}


def _diagonal_intersection(points: torch.Tensor, v: int) -> torch.Tensor:
    """Intersection of the diagonals AS-PI and AI-PS of vertebra ``v`` (B, 2)."""
    a, b = _corner(points, v, AS), _corner(points, v, PI)
    c, d = _corner(points, v, AI), _corner(points, v, PS)
    r, q = b - a, d - c
    denom = r[:, 0] * q[:, 1] - r[:, 1] * q[:, 0]
    denom = torch.where(denom.abs() < 1e-6, torch.full_like(denom, 1e-6), denom)
    t = ((c - a)[:, 0] * q[:, 1] - (c - a)[:, 1] * q[:, 0]) / denom
    return a + t.unsqueeze(-1) * r
