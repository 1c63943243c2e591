"""Curvature class of a lateral cervical radiograph with the shipped S-ResNet-34 weights.

:class:`CurvaturePredictor` is one of the X-ray pipeline's ``interfaces.ImageClassifier``::

    model = CurvaturePredictor.load(weights=None, device="cpu")       # None: the shipped weights
    [finding] = model.classify({View.NEUTRAL: image}, {View.NEUTRAL: pixel_spacing_mm})

``image`` is what :func:`pipelines.xray.preprocessing.image_from_dataset` returns: float [0, 1], bone bright,
original pixels (the neutral view is the intended input; flexion/extension images work too). Steps: the spine
locator finds C2-top / C4 / C7-bottom on the letterboxed image, the C2-C7 ROI is cropped (rotated so that the
chord is vertical, 128 x 128), and the classifier gives probabilities of normal / straightened / reversed.
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
from models.curvature import CLASSES, DEFAULT_WEIGHTS, MODEL_CARD
from models.curvature.network import build
from models.curvature.roi import Locator, crop, curvature_box
from pipelines.results import AlgorithmInfo, Finding
from pipelines.vocabulary import NOT_ASSESSABLE, View

ALGORITHM_NAME = "cspine-node curvature class (S-ResNet-34, seed 003)"

FINDING_KEY = "curvature_class_model"
CHORD_RANGE_MM = (50.0, 200.0)
"""Plausible C2-top to C7-bottom distance; outside it the located ROI is not trusted."""


@dataclass(frozen=True)
class CurvaturePrediction:
    label: str
    probabilities: dict[str, float]
    landmarks: np.ndarray
    """(3, 2) located c2_top, c4_centre, c7_bottom (original px)."""
    distance: float | None = None
    """Feature distance of the crop to the training distribution (``models.common.ood``); None without a gate."""
    ood_reason: str = ""
    """Why the crop is out of distribution; empty when the gate accepts it or there is none."""


class CurvaturePredictor(Predictor):
    """A loaded classifier (a ``curvature`` checkpoint: S-ResNet-34 or the plain ResNet-34 baseline, part
    ``network``) plus the spine locator, on one device."""

    checkpoint_model = "curvature"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD
    required_views: tuple[View, ...] = (View.NEUTRAL,)

    def __init__(self, checkpoint: Checkpoint, locator: Locator, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.meta = checkpoint.meta
        self.weights_version = checkpoint.version
        self.input_size = int(self.meta.get("input_size", 128))
        net = build(self.meta["arch"], len(self.meta["classes"]), self.input_size)
        net.load_state_dict(checkpoint.part("network"))
        self.net = for_inference(net, self.device)
        self.locator = locator
        self.gate = FeatureGate.from_meta(self.meta.get("ood"))
        """Out-of-distribution gate (``meta["ood"]``, ``python -m models.curvature.ood``); None: every crop passes."""

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu", *,
             locator: Path | str | None = None) -> CurvaturePredictor:
        """The classifier from ``weights`` (None: the shipped S-ResNet-34) and the spine locator from ``locator``
        (None: the shipped one), both on ``device``."""
        device = resolve_device(device)
        return cls(cls.read_checkpoint(weights), Locator.load(locator, device), device)

    @property
    def version(self) -> str:
        return f"{self.meta.get('arch', '?')}-v{self.weights_version}"

    @property
    def algorithm(self) -> AlgorithmInfo:
        """Identity of the model for Contributing Equipment (IHE AIR) in the SR."""
        return AlgorithmInfo(name=ALGORITHM_NAME, version=self.version, model_card=self.card_text())

    @torch.no_grad()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) crops in [-1, 1] -> (N, 3) class probabilities."""
        return self.probabilities_and_features(crops)[0]

    @torch.no_grad()
    def probabilities_and_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) crops in [-1, 1] -> (N, 3) class probabilities and (N, D) penultimate-layer features."""
        x = torch.from_numpy(np.asarray(crops, dtype=np.float32))[:, None].to(self.device)
        f = self.net.features(x)
        return torch.softmax(self.net.head(f), dim=1).cpu().numpy(), f.cpu().numpy()

    def predict(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> CurvaturePrediction:
        """[0, 1] image (rows, cols) -> prediction; ``landmarks`` overrides the locator (tests, evaluation)."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"expected a 2-D greyscale image, got shape {img.shape}")
        pts = self.locator.locate(img) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        p, f = self.probabilities_and_features(crop(img, curvature_box(pts, self.input_size))[None])
        probs = {c: float(v) for c, v in zip(CLASSES, p[0], strict=True)}
        distance, why = self.gate.check(f)[0] if self.gate is not None else (None, "")
        return CurvaturePrediction(CLASSES[int(np.argmax(p[0]))], probs, pts, distance, why)

    def input_check(self, image: np.ndarray) -> str:
        """The out-of-distribution gate's verdict on ``image`` (``interfaces.ImageInputCheck``): the reason its
        located C2-C7 crop is unlike the training data, empty when the gate accepts it (or there is none). Any
        lateral view; the X-ray pipeline uses it on all three views for the upper-cervical model."""
        return self.predict(image).ood_reason

    def classify(self, images: Mapping[View, np.ndarray],
                 spacing_mm: Mapping[View, tuple[float, float] | None]) -> list[Finding]:
        """``[finding]`` of the neutral view: :meth:`finding` of ``images[View.NEUTRAL]``."""
        if View.NEUTRAL not in images:
            raise ValueError("the curvature model needs the neutral view")
        return [self.finding(images[View.NEUTRAL], spacing_mm.get(View.NEUTRAL))]

    def finding(self, image: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None) -> Finding:
        """Curvature class finding (key ``curvature_class_model``, site C2-C7) of one lateral radiograph.

        ``image``: float (rows, cols) in [0, 1], bone bright, original pixels. ``pixel_spacing_mm`` (row, col)
        at the patient plane is optional: the ROI adapts to the located spine, the spacing only serves a sanity
        check of the located C2-C7 length (outside 50-200 mm the finding is ``not measurable``). A crop that the
        out-of-distribution gate rejects gives ``not assessable`` with the reason, without a class or probability.
        """
        return _finding(self.predict(image), pixel_spacing_mm)


def _finding(pred: CurvaturePrediction, pixel_spacing_mm: tuple[float, float] | None) -> Finding:
    """The finding of one prediction (``not measurable`` when the located C2-C7 length is implausible)."""
    probs = ", ".join(f"p({k})={v:.2f}" for k, v in pred.probabilities.items())
    evidence = [probs]
    rule = ("argmax of S-ResNet-34 class probabilities; classes as in the training labels: C2-C7 Cobb >= 10 deg "
            "normal, < 0 deg reversed, else straightened (project convention)")
    name = "Cervical curvature class (S-ResNet-34 model)"
    if pixel_spacing_mm is not None:
        d = (pred.landmarks[0] - pred.landmarks[2]) * np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]])
        chord = float(np.hypot(*d))
        evidence.append(f"located C2-top to C7-bottom {chord:.0f} mm")
        if not CHORD_RANGE_MM[0] <= chord <= CHORD_RANGE_MM[1]:
            return Finding(FINDING_KEY, name, "not measurable", "C2-C7",
                           evidence=(*evidence, "cervical spine not found reliably"), threshold=rule)
    if pred.ood_reason:
        return Finding(FINDING_KEY, name, NOT_ASSESSABLE, "C2-C7", evidence=(pred.ood_reason, *evidence[1:]),
                       threshold=rule)
    return Finding(FINDING_KEY, name, pred.label, "C2-C7", evidence=tuple(evidence),
                   probability=pred.probabilities[pred.label], threshold=rule)
