"""The multi-task loss of paper 002 (eq. 6 / eq. 31) plus a DSNT coordinate term.

``L = MSE(H_1/4, G_1/4) + CE(softmax(H_1/2), G_1/2 / sum G_1/2)`` over the heatmap pyramid (eq. 3); the
1/2-resolution heatmaps are the DSNT input, so they are supervised as distributions (cross-entropy to the
normalised Gaussian, the distribution form of the heatmap loss), which trains much faster on a CPU budget
than an MSE whose targets are mostly zero (``high_res_loss="mse"`` restores the paper's MSE),
``  + sum_m lambda_m MSE(Q_m(P'), Q_m(P))`` with ``P'`` the DSNT coordinates (eq. 4-5: softmax, then the
expected position) and ``Q`` = Cobb, SVA, listhesis distance and angle, segmental angle, SDVB, SDVC
(eq. 7-30; :mod:`models.xray_keypoints.measures`),
``  + lambda_coord * |P' - P|`` (mean Euclidean distance in model pixels, as the DSNT paper trains)
``  + lambda_view * CE(view)`` for images whose view is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from models.xray_keypoints.dsnt import heatmap_coordinates, local_dsnt
from models.xray_keypoints.heatmaps import gaussian_heatmaps, heatmap_to_input, input_to_heatmap
from models.xray_keypoints.measures import MEASURE_KEYS, measures


@dataclass(frozen=True)
class LossConfig:
    sigma: float = 1.0
    """Gaussian target standard deviation in heatmap pixels (paper: 1)."""
    heatmap_gain: float = 100.0
    """Scale of the heatmap MSE (mostly-zero maps give tiny raw values)."""
    high_res_loss: str = "ce"
    """``ce``: cross-entropy of softmax(H) to the normalised Gaussian, coordinates by global DSNT (eq. 4-5,
    ``beta`` 1); ``mse``: the paper's MSE, coordinates by :func:`local_dsnt` around the peak."""
    beta: float = 1.0
    """Softmax sharpness of the DSNT whose spread is the keypoint uncertainty."""
    dsnt_radius: int = 4
    dsnt_floor: float = 0.1
    """Window half-size (heatmap px) and relative floor of the local DSNT (``mse`` mode)."""
    coord_weight: float = 0.05
    measure_weights: tuple[float, ...] = (0.01, 0.02, 0.05, 0.01, 0.02, 0.02, 0.01)
    """lambda_m per ``MEASURE_KEYS`` (deg^2 / mm^2 losses)."""
    view_weight: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


def multitask_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: dict[str, torch.Tensor],
                   cfg: LossConfig, measure_scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (floats, for logging). ``measure_scale`` ramps the measurement terms in
    (they are meaningless while the heatmaps are still random)."""
    hm_low, hm_high, view_logits = outputs
    kp, valid = batch["keypoints"], batch["valid"]
    size = batch["image"].shape[-1]
    parts: dict[str, torch.Tensor] = {}
    hm_loss = hm_high.new_zeros(())
    vf = valid.float()
    for hm in (hm_low, hm_high):
        stride = size // hm.shape[-1]
        target = gaussian_heatmaps(input_to_heatmap(kp, stride), valid, hm.shape[-2], hm.shape[-1], cfg.sigma)
        if hm is hm_high and cfg.high_res_loss == "ce":
            logp = torch.log_softmax(hm.float().flatten(2), dim=-1)
            dist = target.flatten(2) / target.flatten(2).sum(-1, keepdim=True).clamp_min(1e-12)
            ce = -(dist * logp).sum(-1)  # (B, K)
            hm_loss = hm_loss + (ce * vf).sum() / vf.sum().clamp_min(1)
        else:
            hm_loss = hm_loss + F.mse_loss(hm.float(), target) * cfg.heatmap_gain
    parts["heatmap"] = hm_loss
    stride = size // hm_high.shape[-1]
    pred_hm = coordinates(hm_high, cfg)[0]
    pred = heatmap_to_input(pred_hm, stride)
    dist = (pred - kp).norm(dim=-1)
    parts["coord"] = (dist * vf).sum() / vf.sum().clamp_min(1) * cfg.coord_weight
    all_valid = valid.all(dim=-1)
    meas = hm_high.new_zeros(())
    if all_valid.any() and measure_scale > 0:
        mm = batch["mm_per_px"][all_valid]
        q_pred = measures(pred[all_valid], mm)
        with torch.no_grad():
            q_true = measures(kp[all_valid], mm)
        for key, w in zip(MEASURE_KEYS, cfg.measure_weights, strict=True):
            diff = q_pred[key] - q_true[key]
            meas = meas + measure_scale * w * diff.square().clamp_max(400.0).mean()
    parts["measure"] = meas
    known = batch["view"] >= 0
    parts["view"] = (F.cross_entropy(view_logits[known], batch["view"][known]) * cfg.view_weight
                     if known.any() else hm_high.new_zeros(()))
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()} | {"px_error": float(((dist * vf).sum() / vf.sum().clamp_min(1)).detach())}


def coordinates(hm_high: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap-pixel ``(x, y)`` (B, K, 2) and the DSNT spread (B, K, 2) for the configured mode."""
    if cfg.high_res_loss == "ce":
        return heatmap_coordinates(hm_high.float(), cfg.beta)
    xy, _ = local_dsnt(hm_high.float(), cfg.dsnt_radius, cfg.dsnt_floor)
    _, sd = heatmap_coordinates(hm_high.float(), cfg.beta)
    return xy, sd
