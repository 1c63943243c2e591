"""Load the keypoint weights and predict the 30 keypoints (with spread) on a radiograph.

:class:`KeypointPredictor` is the X-ray pipeline's ``interfaces.KeypointModel``::

    predictor = KeypointPredictor.load(weights=None, device="cpu")   # None: the shipped weights
    prediction = predictor.predict(image)   # image: float [0, 1], bone bright, original pixels

Two architectures (``meta["architecture"]`` of the ``xray_keypoints`` checkpoint, ``models.common.checkpoint``):

- ``cascade`` (shipped, 1.1.0; parts ``stage1``, ``stage2``): the coarse-to-fine cascade of ``cascade.py``.
  Stage 1 finds the 6 vertebral-body centres and spinolaminar points on the letterboxed whole image; stage 2
  predicts the 4 corners + spinolaminar point of each vertebra in an oriented, anatomy-scaled crop around its
  centre, ``iterations`` times (re-cropped at the refined centres).
- ``single`` (1.0.0; part ``network``): one network for all 30 points, two passes (whole image, then a square
  box around the first-pass keypoints).

Coordinates come from DSNT (eq. 4-5) on the 1/2-resolution heatmaps; the spread is the standard deviation of
the DSNT distribution, which grows when a heatmap is flat or has several peaks, times a calibration factor
stored with the weights (fitted on held-out phantoms so that it matches the RMS error). Cascade weights with
test-time variants (meta ``tta``, ``tta.py``) run once per variant and add the between-variant spread; the interval
calibration (meta ``interval_calibration``, ``interval_calibration.py``) travels with every prediction as
``KeypointPrediction.interval_scale``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import Checkpoint, CheckpointError
from models.common.predictor import Predictor, for_inference, resolve_device
from models.xray_keypoints import DEFAULT_WEIGHTS, MODEL_CARD
from models.xray_keypoints.cascade import (
    N_LEVELS,
    DeviceImage,
    assemble,
    block_reduce,
    crop_transform,
    level_channel,
    reduction_factor,
    rotate,
    sample_crops,
    spine_frames,
)
from models.xray_keypoints.heatmaps import heatmap_to_input
from models.xray_keypoints.inputs import VIEW_ORDER, AugmentConfig, spine_box
from models.xray_keypoints.losses import LossConfig, coordinates
from models.xray_keypoints.network import KeypointNet, NetworkConfig
from models.xray_keypoints.tta import Variant, combine
from pipelines.interfaces import KeypointPrediction
from pipelines.results import AlgorithmInfo
from pipelines.xray.preprocessing import AffineTransform, model_input

ALGORITHM_NAME = "cspine-xray-keypoints"


class KeypointPredictor(Predictor):
    """The trained network(s) with their configuration (an ``xray_keypoints`` checkpoint written by
    ``train.py`` or ``cascade_train.py``), on one device."""

    checkpoint_model = "xray_keypoints"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD

    def __init__(self, checkpoint: Checkpoint, device: torch.device | str = "cpu", *,
                 preprocess_on_device: bool | None = None) -> None:
        """``preprocess_on_device``: letterbox and crop the cascade's inputs with torch on ``device``
        (:class:`~models.xray_keypoints.cascade.DeviceImage`) instead of scipy on the CPU; default: on a GPU."""
        self.device = resolve_device(device)
        self.preprocess_on_device = self.device.type != "cpu" if preprocess_on_device is None else preprocess_on_device
        meta = checkpoint.meta
        self.version = checkpoint.version
        self.sigma_scale = float(meta.get("sigma_scale", 1.0))
        self.metrics = dict(meta.get("metrics", {}))
        tta = dict(meta.get("tta") or {})
        self.variants: tuple[Variant, ...] = tuple(Variant.from_dict(v) for v in tta.get("variants", ())) or (Variant(),)
        """Test-time variants of the cascade (``tta.py``; one plain variant: no TTA)."""
        self.tta_point = str(tta.get("point", "first"))
        self.tta_weight = float(tta.get("weight", 1.0))
        self.interval_scale: dict[str, float] = {str(k): float(v) for k, v in
                                                 (meta.get("interval_calibration") or {}).get("scale", {}).items()}
        """Measurement key (or unit) -> factor on the Monte-Carlo 95 % interval (``interval_calibration.py``)."""
        architecture = meta.get("architecture")
        if architecture not in ("cascade", "single"):
            raise CheckpointError(f"{checkpoint.path}: unknown keypoint architecture {architecture!r}")
        self.cascade = architecture == "cascade"
        if self.cascade:
            s1, s2 = meta["stage1"], meta["stage2"]
            self.network_config = NetworkConfig.from_dict(s1["network"])
            self.loss_config = _loss_config(s1.get("loss", {}))
            self.augment = AugmentConfig(size=int(s1["size"]))
            self.model = _network(self.network_config, checkpoint.part("stage1"), self.device)
            self.stage2_config = NetworkConfig.from_dict(s2["network"])
            self.stage2_loss = _loss_config(s2.get("loss", {}))
            self.crop = dict(s2["crop"])
            self.stage2 = _network(self.stage2_config, checkpoint.part("stage2"), self.device)
            return
        self.network_config = NetworkConfig.from_dict(meta["network"])
        self.loss_config = _loss_config(meta.get("loss", {}))
        self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("augment", {}).items()})
        self.model = _network(self.network_config, checkpoint.part("network"), self.device)

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu", *,
             preprocess_on_device: bool | None = None) -> KeypointPredictor:
        """The keypoint model from ``weights`` (None: the shipped ``xray_keypoints_v2.pt``) on ``device``."""
        return cls(cls.read_checkpoint(weights), device, preprocess_on_device=preprocess_on_device)

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name=ALGORITHM_NAME, version=self.version, model_card=self.card_text())

    @property
    def size(self) -> int:
        return self.augment.size

    @property
    def iterations(self) -> int:
        """Stage-2 passes (cascade weights; 0 for one-stage weights)."""
        return int(self.crop.get("iterations", 1)) if self.cascade else 0

    @torch.inference_mode()
    def _forward(self, inputs: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, S, S) model inputs -> model-pixel keypoints (B, 30, 2), spread (B, 30), view probs (B, 3)."""
        x = _tensor(inputs, self.device)[:, None]
        _, hm, view_logits = self.model(x)
        stride = self.size // hm.shape[-1]
        xy, sd = coordinates(hm, self.loss_config)
        xy = heatmap_to_input(xy, stride)
        spread = sd.norm(dim=-1) / np.sqrt(2) * stride
        return xy.cpu().numpy(), spread.cpu().numpy(), torch.softmax(view_logits.float(), -1).cpu().numpy()

    def predict_batch(self, images: list[np.ndarray], *, refine: bool = True) -> list[KeypointPrediction]:
        """Predict on [0, 1] images (rows, cols), bone bright, any sizes. ``refine=False``: the first pass only
        (one-stage weights: the whole-image pass; cascade: stage 1, whose 12 points fill the corner slots).

        Cascade weights with test-time variants (``self.variants``) run every image once per variant (one batch)
        and combine them with :func:`models.xray_keypoints.tta.combine`: the between-variant spread joins the
        heatmap spread."""
        variants = self.variants if self.cascade and refine else (Variant(),)
        k = len(variants)
        src = [i for i in range(len(images)) for _ in range(k)]
        var = [v for _ in images for v in variants]
        ims = [images[i] for i in src]
        ts = [v.letterbox(*im.shape, self.size) for im, v in zip(ims, var, strict=True)]
        dev = None
        if self.preprocess_on_device and self.cascade:
            per_image = [DeviceImage(im, self.device) for im in images]
            dev = [per_image[i] for i in src]
        if dev is not None:  # the same resampling as model_input, with torch on the device
            inputs = torch.cat([d.sample([t], max(1, int(np.floor(t.scale)))) for d, t in zip(dev, ts, strict=True)])
            xy, sd, vp = self._forward(inputs * 2 - 1)
        else:
            xy, sd, vp = self._forward(np.stack([model_input(im, t) for im, t in zip(ims, ts, strict=True)]))
        kps = [t.to_original(p) for t, p in zip(ts, xy, strict=True)]
        sds = [t.sigma_to_original(s) for t, s in zip(ts, sd, strict=True)]
        if self.cascade:
            if refine:
                kps, sds = self._stage2(ims, kps, dev, var, src)
            else:
                kps = [np.concatenate([np.repeat(k[:N_LEVELS], 4, axis=0), k[N_LEVELS:]]) for k in kps]
                sds = [np.concatenate([np.repeat(s[:N_LEVELS], 4), s[N_LEVELS:]]) for s in sds]
        elif refine:
            ts2 = []
            for k_ in kps:
                cx, cy, side = spine_box(k_, np.ones(len(k_), bool), self.augment.refine_margin)
                ts2.append(AffineTransform.box(cx, cy, max(side, 1.0), self.size))
            xy2, sd2, vp2 = self._forward(np.stack([model_input(im, t) for im, t in zip(images, ts2, strict=True)]))
            kps = [t.to_original(p) for t, p in zip(ts2, xy2, strict=True)]
            sds = [t.sigma_to_original(s) for t, s in zip(ts2, sd2, strict=True)]
            vp = (vp + vp2) / 2
        out = []
        for i in range(len(images)):
            sl = slice(i * k, (i + 1) * k)
            if k == 1:
                point, sigma = kps[i], sds[i] * self.sigma_scale
            else:
                point, sigma, _ = combine(kps[sl], [s * self.sigma_scale for s in sds[sl]], point=self.tta_point,
                                          weight=self.tta_weight)
            probs = vp[sl].mean(axis=0)
            out.append(KeypointPrediction(point, sigma, {v: float(probs[j]) for j, v in enumerate(VIEW_ORDER)},
                                          interval_scale=dict(self.interval_scale)))
        return out

    @torch.inference_mode()
    def _stage2(self, images: list[np.ndarray], stage1: list[np.ndarray], dev: list[DeviceImage] | None = None,
                variants: list[Variant] | None = None, source: list[int] | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-vertebra crops around the stage-1 centres -> (30, 2) keypoints and (30,) spread per image.

        Fallback for a misplaced stage-1 centre: a vertebra whose stage-2 spread (crop pixels, median of its
        5 points) is far above the others' is re-cropped at the centre predicted from the other vertebrae
        (quadratic in the level), and the new result is kept where its spread is smaller. ``variants``: each
        image's test-time variant (crop rotation and scale); ``source``: which images are the same array (they
        share the block-reduced copies).
        """
        variants = variants or [Variant()] * len(images)
        source = source or list(range(len(images)))
        caches: dict[int, dict[int, np.ndarray]] = {}
        reduced = [caches.setdefault(j, {}) for j in source]
        centres = [k[:N_LEVELS].copy() for k in stage1]
        spinolaminar = [k[N_LEVELS:].copy() for k in stage1]
        pts, spread, crop_sd = self._passes(images, centres, spinolaminar, reduced, max(1, self.iterations), dev,
                                            variants)
        for i in range(len(images)):
            lvl = np.median(crop_sd[i], axis=1)
            bad = lvl > max(3.0 * float(np.median(lvl)), 2.0)
            if not bad.any() or bad.sum() > 2:
                continue
            good = np.flatnonzero(~bad)
            c = pts[i][:, :4].mean(axis=1)
            fit = [np.polyfit(good, c[good, d], 2) for d in (0, 1)]
            guess = c.copy()
            guess[bad] = np.column_stack([np.polyval(fit[d], np.flatnonzero(bad)) for d in (0, 1)])
            p2, s2, c2 = self._passes([images[i]], [guess], [pts[i][:, 4]], [reduced[i]], max(1, self.iterations),
                                      [dev[i]] if dev is not None else None, [variants[i]])
            better = bad & (np.median(c2[0], axis=1) < lvl)
            pts[i][better], spread[i][better] = p2[0][better], s2[0][better]
        return [assemble(p) for p in pts], [assemble(s) for s in spread]

    def _passes(self, images: list[np.ndarray], centres: list[np.ndarray], spinolaminar: list[np.ndarray],
                reduced: list[dict[int, np.ndarray] | None], n: int, dev: list[DeviceImage] | None = None,
                variants: list[Variant] | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """``n`` stage-2 passes (each re-cropped at the previous centres). Per image: points (6, 5, 2) and
        spread (6, 5) in original pixels, spread (6, 5) in crop pixels. ``reduced`` caches block-reduced images
        (factor -> image, per image); with ``dev`` the crops are sampled on the device; ``variants`` rotate and
        scale the crops (test-time augmentation)."""
        variants = variants or [Variant()] * len(images)
        size, factor = int(self.crop["size"]), float(self.crop["side_factor"])
        levels = np.stack([level_channel(lv, size) for lv in range(N_LEVELS)])
        levels_t = torch.from_numpy(levels).to(self.device) if dev is not None else None
        centres, spinolaminar = list(centres), list(spinolaminar)
        pts, spread, crop_sd = [], [], []
        for _ in range(n):
            crops, transforms = [], []
            for i, im in enumerate(images):
                up, ant, gap = spine_frames(centres[i], spinolaminar[i])
                a, side = variants[i].crop_rotation_deg, factor * gap * variants[i].crop_scale
                if a:
                    up, ant = rotate(up, a), rotate(ant, a)
                ts = [crop_transform(centres[i][lv], up[lv], ant[lv], side, size) for lv in range(N_LEVELS)]
                f = reduction_factor(ts)
                transforms.append(ts)
                if dev is not None:
                    crops.append(torch.stack([dev[i].sample(ts, f) * 2 - 1, levels_t], dim=1))
                    continue
                if reduced[i] is None:
                    reduced[i] = {}
                if f not in reduced[i]:
                    reduced[i][f] = block_reduce(im, f)
                crops.append(np.stack([sample_crops(im, ts, reduced=(reduced[i][f], f)) * 2 - 1, levels], axis=1))
            x = torch.cat(crops) if dev is not None else np.concatenate(crops)
            xy, sd = self._forward_stage2(x)
            pts, spread, crop_sd = [], [], []
            for i, ts in enumerate(transforms):
                sl = slice(i * N_LEVELS, (i + 1) * N_LEVELS)
                pts.append(np.stack([t.to_original(q) for t, q in zip(ts, xy[sl], strict=True)]))
                spread.append(np.stack([t.sigma_to_original(q) for t, q in zip(ts, sd[sl], strict=True)]))
                crop_sd.append(sd[sl])
                centres[i] = pts[-1][:, :4].mean(axis=1)
                spinolaminar[i] = pts[-1][:, 4]
        return pts, spread, crop_sd

    @torch.inference_mode()
    def _forward_stage2(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2, S, S) crops + level channel -> crop-pixel points (N, 5, 2) and spread (N, 5)."""
        t = _tensor(x, self.device)
        _, hm, _ = self.stage2(t)
        stride = int(self.crop["size"]) // hm.shape[-1]
        xy, sd = coordinates(hm, self.stage2_loss)
        xy = heatmap_to_input(xy, stride)
        return xy.cpu().numpy(), (sd.norm(dim=-1) / np.sqrt(2) * stride).cpu().numpy()

    def predict(self, image: np.ndarray, *, refine: bool = True) -> KeypointPrediction:
        """The 30 keypoints of one [0, 1] image (rows, cols), bone bright, in its original pixels."""
        return self.predict_batch([image], refine=refine)[0]


def _tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """float32 on ``device`` (numpy arrays are copied; tensors already there are used as they are)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


def _loss_config(d: dict) -> LossConfig:
    return LossConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _network(config: NetworkConfig, state: dict[str, torch.Tensor], device: torch.device) -> KeypointNet:
    model = KeypointNet(config)
    model.load_state_dict(state)
    return for_inference(model, device)
