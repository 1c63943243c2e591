"""Cord compression per segment on the neutral radiograph, with Grad-CAM maps, for the X-ray pipeline.

:class:`CordCompressionPredictor` is the X-ray pipeline's ``interfaces.SegmentClassifier``::

    model = CordCompressionPredictor.load(weights=None, device="cpu")   # None: the shipped weights
    findings, heatmaps = model.classify(image, keypoints, image_uid)

``image`` is the float [0, 1] radiograph, bone bright, in original pixels
(:func:`pipelines.xray.preprocessing.image_from_dataset`); ``keypoints`` the 30 X-ray keypoints (x, y px) of
that image (the keypoint model's). Each segment C2-C3..C6-C7 is cropped (:mod:`models.cord_compression.roi`),
classified, and its Grad-CAM (last conv block) is mapped back onto the image pixels it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import Checkpoint
from models.common.ood import FeatureGate
from models.common.predictor import Predictor, for_inference, resolve_device
from models.cord_compression import ALGORITHM_NAME, DEFAULT_WEIGHTS, MODEL_CARD
from models.cord_compression.network import SegmentCNN
from models.cord_compression.roi import crop_to_image, normalise, segment_crops
from pipelines.results import SEGMENTS, AlgorithmInfo, Finding, HeatMap
from pipelines.vocabulary import NOT_ASSESSABLE
from pipelines.xray.preprocessing import AffineTransform

FINDING_NAME = "Spinal cord compression"
REFERENCE = "MRI reference: residual canal AP < cord AP + 1 mm at the disc level (Kang grade >= 2)"


@dataclass(frozen=True)
class SegmentPrediction:
    segment: str
    probability: float
    present: bool
    cam: np.ndarray
    """Grad-CAM on the crop grid (rows, cols) in [0, 1]."""
    transform: AffineTransform
    """Crop -> original pixels."""
    distance: float | None = None
    """Feature distance of the crop to the training crops of its segment (``models.common.ood``); None without a
    gate."""
    ood_reason: str = ""
    """Why the crop is out of distribution; empty when the gate accepts it or there is none."""


class CordCompressionPredictor(Predictor):
    """The per-segment CNN (a ``cord_compression`` checkpoint, part ``network``, with its decision threshold in
    ``meta``) on one device."""

    checkpoint_model = "cord_compression"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD

    def __init__(self, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.meta = checkpoint.meta
        self.weights_version = checkpoint.version
        net = SegmentCNN()
        net.load_state_dict(checkpoint.part("network"))
        self.net = for_inference(net, self.device)
        self.gate = FeatureGate.from_meta(self.meta.get("ood"))
        """Out-of-distribution gate per segment (``meta["ood"]``, ``python -m models.cord_compression.ood``)."""

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu") -> CordCompressionPredictor:
        """The model from ``weights`` (None: the shipped ``segment_cnn_v1.pt``) on ``device``."""
        return cls(cls.read_checkpoint(weights), device)

    @property
    def version(self) -> str:
        return f"segment-cnn-v{self.weights_version}"

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def algorithm(self) -> AlgorithmInfo:
        """Identity of the model for Contributing Equipment (IHE AIR) in the SR."""
        return AlgorithmInfo(name=f"{ALGORITHM_NAME} (per-segment CNN + Grad-CAM, seed 004)", version=self.version,
                             model_card=self.card_text())

    def predict(self, image: np.ndarray, keypoints: np.ndarray, *, gradcam: bool = True) -> list[SegmentPrediction]:
        img = np.asarray(image, dtype=np.float32)
        kp = np.asarray(keypoints, dtype=np.float64)
        if img.ndim != 2:
            raise ValueError(f"expected a 2-D greyscale image, got shape {img.shape}")
        if kp.shape != (30, 2) or not np.all(np.isfinite(kp)):
            raise ValueError(f"expected 30 finite keypoints (x, y), got shape {kp.shape}")
        crops, tfs = segment_crops(img, kp)
        x = torch.from_numpy(normalise(crops)).unsqueeze(1).to(self.device)
        seg = torch.arange(len(SEGMENTS), device=self.device)
        if gradcam:
            logits, cams = self.net.gradcam(x, seg)
        else:
            with torch.no_grad():
                logits = self.net(x, seg)
            cams = torch.zeros(x.shape[0], *x.shape[-2:])
        probs = torch.sigmoid(logits).cpu().numpy()
        cams = cams.cpu().numpy()
        checked: list[tuple[float | None, str]] = [(None, "")] * len(SEGMENTS)
        if self.gate is not None:
            checked = self.gate.check(self.features(x), group=seg.cpu().numpy())
        return [SegmentPrediction(s, float(p), bool(p >= self.threshold), cams[j], tfs[j], *checked[j])
                for j, (s, p) in enumerate(zip(SEGMENTS, probs, strict=True))]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> np.ndarray:
        """(N, 1, H, W) normalised crops -> (N, 64) pooled features of the last conv block (what the head reads
        beside the segment's one-hot; the out-of-distribution gate measures their distance)."""
        return self.net.forward_features(x).mean(dim=(2, 3)).cpu().numpy()

    def classify(self, image: np.ndarray, keypoints: np.ndarray, image_uid: str
                 ) -> tuple[list[Finding], list[HeatMap]]:
        """One :class:`Finding` per segment (key ``cord_compression``, value present/absent, probability) and one
        Grad-CAM :class:`HeatMap` per segment on the original pixels of ``image`` (SOPInstanceUID ``image_uid``).
        ``keypoints``: the 30 keypoints (x, y px) of that image. A segment whose crop the out-of-distribution gate
        rejects is ``not assessable`` with the reason, without a probability or heat map."""
        preds = self.predict(image, keypoints)
        rows, cols = np.asarray(image).shape
        findings, maps = [], []
        for sp in preds:
            if sp.ood_reason:
                findings.append(Finding("cord_compression", FINDING_NAME, NOT_ASSESSABLE, sp.segment,
                                        evidence=(f"{sp.segment} segment crop: {sp.ood_reason}",),
                                        threshold=f"per-segment CNN trained on synthetic phantoms against the "
                                                  f"{REFERENCE}; not run on crops unlike its training data"))
                continue
            findings.append(Finding(
                "cord_compression", FINDING_NAME, "present" if sp.present else "absent", sp.segment,
                evidence=(f"p={sp.probability:.2f} from the {sp.segment} segment crop of the neutral radiograph "
                          "(posterior osteophytes, disc space, canal depth)",),
                probability=sp.probability,
                threshold=f"p >= {self.threshold:.2f} (per-segment CNN trained on synthetic phantoms against the "
                          f"{REFERENCE}; threshold of maximal Youden J on validation phantoms)"))
            patch, (y0, x0) = crop_to_image(sp.cam, sp.transform, (rows, cols))
            maps.append(HeatMap(f"{sp.segment} cord compression Grad-CAM", image_uid, sp.segment, patch, (y0, x0),
                                key="cord_compression", probability=sp.probability,
                                description="Grad-CAM of the last conv block, normalised to its maximum per segment"))
        return findings, maps
