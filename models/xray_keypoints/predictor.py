"""Load the keypoint weights and predict the 30 keypoints (with spread) on a radiograph.

Two passes with the same network: the whole image letterboxed, then a square box around the first-pass
keypoints (``AugmentConfig.refine_margin``) for a finer sampling of the cervical spine. Coordinates come
from DSNT (eq. 4-5) on the 1/2-resolution heatmaps; the spread is the standard deviation of the DSNT
distribution, which grows when a heatmap is flat or has several peaks, times a calibration factor stored
with the weights (fitted on held-out phantoms so that it matches the RMS error).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.xray_keypoints import DEFAULT_WEIGHTS
from models.xray_keypoints.data import VIEW_ORDER, AugmentConfig, spine_box
from models.xray_keypoints.heatmaps import heatmap_to_input
from models.xray_keypoints.losses import LossConfig, coordinates
from models.xray_keypoints.network import KeypointNet, NetworkConfig
from pipelines.results import View
from pipelines.xray.preprocessing import AffineTransform, model_input


@dataclass
class Prediction:
    """Keypoints of one image in its original pixels."""

    keypoints: np.ndarray
    """(30, 2) x, y."""
    sigma_px: np.ndarray
    """(30,) one-sigma spread (calibrated), original pixels."""
    view_probs: dict[View, float] = field(default_factory=dict)
    """Predicted view probabilities."""

    @property
    def view(self) -> View:
        return max(self.view_probs, key=self.view_probs.__getitem__)


def resolve_device(name: str | None = None) -> torch.device:
    """``CSPINE_DEVICE`` (``auto``/``cpu``/``cuda``/``cuda:1``) -> a torch device; auto prefers CUDA."""
    name = (name or os.environ.get("CSPINE_DEVICE") or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class KeypointPredictor:
    """The trained network with its configuration (from a weights file written by ``train.py``)."""

    def __init__(self, checkpoint: dict, device: torch.device | None = None) -> None:
        self.device = device or resolve_device()
        self.network_config = NetworkConfig.from_dict(checkpoint["network"])
        self.loss_config = LossConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in checkpoint.get("loss", {}).items()})
        self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in checkpoint.get("augment", {}).items()})
        self.version = str(checkpoint.get("version", "0"))
        self.sigma_scale = float(checkpoint.get("sigma_scale", 1.0))
        self.metrics = dict(checkpoint.get("metrics", {}))
        self.model = KeypointNet(self.network_config)
        self.model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
        self.model.to(self.device).eval()

    @classmethod
    def load(cls, path: Path | str | None = None, device: torch.device | None = None) -> KeypointPredictor:
        """Load weights from ``path``, else ``CSPINE_XRAY_WEIGHTS``, else the shipped file."""
        p = Path(path or os.environ.get("CSPINE_XRAY_WEIGHTS") or DEFAULT_WEIGHTS)
        if not p.is_file():
            raise FileNotFoundError(f"X-ray keypoint weights not found: {p}")
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        return cls(ckpt, device)

    @property
    def size(self) -> int:
        return self.augment.size

    @torch.inference_mode()
    def _forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, S, S) model inputs -> model-pixel keypoints (B, 30, 2), spread (B, 30), view probs (B, 3)."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[:, None].to(self.device)
        _, hm, view_logits = self.model(x)
        stride = self.size // hm.shape[-1]
        xy, sd = coordinates(hm, self.loss_config)
        xy = heatmap_to_input(xy, stride)
        spread = sd.norm(dim=-1) / np.sqrt(2) * stride
        return xy.cpu().numpy(), spread.cpu().numpy(), torch.softmax(view_logits.float(), -1).cpu().numpy()

    def predict_batch(self, images: list[np.ndarray], *, refine: bool = True) -> list[Prediction]:
        """Predict on [0, 1] images (rows, cols), bone bright, any sizes."""
        ts = [AffineTransform.letterbox(*im.shape, self.size) for im in images]
        xy, sd, vp = self._forward(np.stack([model_input(im, t) for im, t in zip(images, ts, strict=True)]))
        kps = [t.to_original(p) for t, p in zip(ts, xy, strict=True)]
        sds = [t.sigma_to_original(s) for t, s in zip(ts, sd, strict=True)]
        if refine:
            ts2 = []
            for k in kps:
                cx, cy, side = spine_box(k, np.ones(len(k), bool), self.augment.refine_margin)
                ts2.append(AffineTransform.box(cx, cy, max(side, 1.0), self.size))
            xy2, sd2, vp2 = self._forward(np.stack([model_input(im, t) for im, t in zip(images, ts2, strict=True)]))
            kps = [t.to_original(p) for t, p in zip(ts2, xy2, strict=True)]
            sds = [t.sigma_to_original(s) for t, s in zip(ts2, sd2, strict=True)]
            vp = (vp + vp2) / 2
        return [
            Prediction(k, s * self.sigma_scale, {v: float(p[i]) for i, v in enumerate(VIEW_ORDER)})
            for k, s, p in zip(kps, sds, vp, strict=True)
        ]

    def predict(self, image: np.ndarray, *, refine: bool = True) -> Prediction:
        return self.predict_batch([image], refine=refine)[0]
