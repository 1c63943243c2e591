"""Six upper cervical (C0-C2) abnormalities from the extension, neutral and flexion radiographs.

:class:`UpperCervicalPredictor` is one of the X-ray pipeline's ``interfaces.ImageClassifier``::

    model = UpperCervicalPredictor.load(weights=None, device="cpu")     # None: the shipped weights
    findings = model.classify({View.EXTENSION: ext, View.NEUTRAL: neu, View.FLEXION: flx}, spacing_mm)

Each image is a float [0, 1] array, bone bright, in its original pixels (what
:func:`pipelines.xray.preprocessing.image_from_dataset` returns). Steps per view: the spine locator
(:mod:`models.curvature.roi`) finds C2-top / C4 / C7-bottom, the upper cervical ROI is cropped (96 x 96,
rotated so the cervical axis is vertical, side 0.6 x the located C2-C7 length: adaptive to scale); then the
network sees the three ROIs together and returns one probability per abnormality.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import Checkpoint
from models.common.ood import FeatureGate
from models.common.predictor import Predictor, for_inference, resolve_device
from models.curvature.roi import Locator, crop, upper_cervical_box
from models.upper_cervical import DEFAULT_WEIGHTS, MODEL_CARD, VIEW_ORDER
from models.upper_cervical.network import CerviHFENet
from pipelines.results import AlgorithmInfo, Finding
from pipelines.vocabulary import (
    NOT_ASSESSABLE,
    UPPER_CERVICAL_LABELS,
    UPPER_CERVICAL_NAMES,
    UPPER_CERVICAL_SITES,
    View,
)

ALGORITHM_NAME = "cspine-node upper cervical abnormalities (CerviHFENet-style, seed 001)"
THRESHOLD = 0.5


@dataclass(frozen=True)
class UpperCervicalPrediction:
    probabilities: dict[str, float]
    landmarks: dict[View, np.ndarray]
    distance: float | None = None
    """Feature distance of the three ROIs to the training distribution (``models.common.ood``); None without a
    gate."""
    ood_reason: str = ""
    """Why the input is out of distribution; empty when the gate accepts it or there is none."""


class UpperCervicalPredictor(Predictor):
    """The CerviHFENet-style classifier (an ``upper_cervical`` checkpoint, part ``network``, with its decision
    thresholds and label relations in ``meta``) plus the spine locator, on one device."""

    checkpoint_model = "upper_cervical"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD
    required_views: tuple[View, ...] = VIEW_ORDER

    def __init__(self, checkpoint: Checkpoint, locator: Locator, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.meta = checkpoint.meta
        self.weights_version = checkpoint.version
        self.input_size = int(self.meta.get("input_size", 96))
        net = CerviHFENet(len(self.meta["labels"]))
        net.load_state_dict(checkpoint.part("network"))
        self.net = for_inference(net, self.device)
        self.locator = locator
        self.gate = FeatureGate.from_meta(self.meta.get("ood"))
        """Out-of-distribution gate (``meta["ood"]``, ``python -m models.upper_cervical.ood``); None: all pass."""

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu", *,
             locator: Path | str | None = None) -> UpperCervicalPredictor:
        """The classifier from ``weights`` (None: the shipped weights) and the spine locator from ``locator``
        (None: the shipped one), both on ``device``."""
        device = resolve_device(device)
        return cls(cls.read_checkpoint(weights), Locator.load(locator, device), device)

    @property
    def version(self) -> str:
        return f"cervihfenet-v{self.weights_version}"

    @property
    def algorithm(self) -> AlgorithmInfo:
        """Identity of the model for Contributing Equipment (IHE AIR) in the SR."""
        return AlgorithmInfo(name=ALGORITHM_NAME, version=self.version, model_card=self.card_text())

    @property
    def exclusive(self) -> list[tuple[int, int]]:
        """Mutually exclusive label pairs found in the training labels (indices into the label order)."""
        return [(int(i), int(j)) for i, j in self.meta.get("relations", {}).get("exclusive", [])]

    def threshold(self, key: str) -> float:
        """Decision threshold of one label (stored with the weights; 0.5 when none was fitted)."""
        return float(self.meta.get("thresholds", {}).get(key, THRESHOLD))

    @torch.no_grad()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) ROI crops in [-1, 1] (view order extension, neutral, flexion) -> (N, 6)."""
        return self.probabilities_and_features(crops)[0]

    @torch.no_grad()
    def probabilities_and_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, S, S) ROI crops in [-1, 1] -> (N, 6) probabilities and (N, 128) penultimate-layer features."""
        x = torch.from_numpy(np.asarray(crops, dtype=np.float32)).to(self.device)
        f = self.net.features(x)
        logits = self.net.relation(self.net.head[3](self.net.head[2](f)))
        return torch.sigmoid(logits).cpu().numpy(), f.cpu().numpy()

    def predict(self, views: Mapping[View, np.ndarray],
                landmarks: Mapping[View, np.ndarray] | None = None) -> UpperCervicalPrediction:
        missing = [v.value for v in VIEW_ORDER if v not in views]
        if missing:
            raise ValueError(f"upper cervical model needs extension, neutral and flexion views; missing: {missing}")
        crops, pts = [], {}
        for v in VIEW_ORDER:
            img = np.asarray(views[v], dtype=np.float32)
            if img.ndim != 2:
                raise ValueError(f"{v.value} view: expected a 2-D greyscale image, got shape {img.shape}")
            p = self.locator.locate(img) if landmarks is None else np.asarray(landmarks[v], dtype=np.float64)
            pts[v] = p
            crops.append(crop(img, upper_cervical_box(p, self.input_size)))
        prob, f = self.probabilities_and_features(np.stack(crops)[None])
        distance, why = self.gate.check(f)[0] if self.gate is not None else (None, "")
        return UpperCervicalPrediction({k: float(q) for k, q in zip(UPPER_CERVICAL_LABELS, prob[0], strict=True)},
                                       pts, distance, why)

    def classify(self, images: Mapping[View, np.ndarray],
                 spacing_mm: Mapping[View, tuple[float, float] | None] | None = None, *,
                 threshold: float | None = None) -> list[Finding]:
        """One :class:`Finding` per abnormality (keys ``UPPER_CERVICAL_LABELS``): value ``present`` when the
        probability reaches the label's threshold (fitted on validation phantoms and stored with the weights;
        ``threshold`` overrides it for all labels) else ``absent``, with the probability. ``spacing_mm`` is not
        used (the ROI adapts to the located spine). Raises ``ValueError`` unless the extension, neutral and
        flexion views are all given. When the out-of-distribution gate rejects the input, all six are ``not
        assessable`` with the reason, without a probability."""
        pred = self.predict(images)
        if pred.ood_reason:
            return [Finding(key, UPPER_CERVICAL_NAMES[key], NOT_ASSESSABLE, UPPER_CERVICAL_SITES[key],
                            evidence=(pred.ood_reason,),
                            threshold="CerviHFENet-style classifier trained on synthetic phantoms; not run on inputs "
                                      "unlike its training data")
                    for key in UPPER_CERVICAL_LABELS]
        probs = np.array([pred.probabilities[k] for k in UPPER_CERVICAL_LABELS])
        th = np.array([threshold if threshold is not None else self.threshold(k) for k in UPPER_CERVICAL_LABELS])
        present = decide(probs, th, self.exclusive)[0]
        out = []
        for n, key in enumerate(UPPER_CERVICAL_LABELS):
            p, t = float(probs[n]), float(th[n])
            out.append(Finding(key, UPPER_CERVICAL_NAMES[key], "present" if present[n] else "absent",
                               UPPER_CERVICAL_SITES[key],
                               evidence=(f"p={p:.2f} from the extension, neutral and flexion views",),
                               probability=p,
                               threshold=f"p >= {t:.2f} (CerviHFENet-style classifier trained on synthetic phantoms; "
                                         "threshold of maximal F1 on validation phantoms; of two mutually exclusive "
                                         "labels only the one with the larger p/threshold)"))
        return out


def decide(probs: np.ndarray, thresholds: np.ndarray, exclusive: list[tuple[int, int]]) -> np.ndarray:
    """(N, K) probabilities -> (N, K) bool decisions: ``p >= threshold``, and for a mutually exclusive pair
    (learned from the training labels) that is predicted together, only the label with the larger margin
    ``p / threshold`` is kept."""
    p = np.atleast_2d(np.asarray(probs, dtype=float))
    th = np.asarray(thresholds, dtype=float)
    out = p >= th
    margin = p / np.maximum(th, 1e-6)
    for i, j in exclusive:
        both = out[:, i] & out[:, j]
        out[both & (margin[:, i] < margin[:, j]), i] = False
        out[both & (margin[:, j] <= margin[:, i]), j] = False
    return out
