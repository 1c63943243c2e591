"""Curvature class of a lateral cervical radiograph with the shipped S-ResNet-34 weights.

Entry point for the X-ray pipeline::

    finding = predict_curvature(image, pixel_spacing_mm)   # image: float [0, 1], bone bright, original pixels

``image`` is what :func:`pipelines.xray.preprocessing.image_from_dataset` returns (the neutral view is the
intended input; flexion/extension images work too). Steps: the spine locator finds C2-top / C4 / C7-bottom on
the letterboxed image, the C2-C7 ROI is cropped (rotated so that the chord is vertical, 128 x 128), and the
classifier gives probabilities of normal / straightened / reversed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.curvature import CLASSES, DEFAULT_WEIGHTS
from models.curvature.network import build
from models.curvature.roi import Locator, crop, curvature_box
from pipelines.results import AlgorithmInfo, Finding

FINDING_KEY = "curvature_class_model"
CHORD_RANGE_MM = (50.0, 200.0)
"""Plausible C2-top to C7-bottom distance; outside it the located ROI is not trusted."""


@dataclass(frozen=True)
class CurvaturePrediction:
    label: str
    probabilities: dict[str, float]
    landmarks: np.ndarray
    """(3, 2) located c2_top, c4_centre, c7_bottom (original px)."""


class CurvaturePredictor:
    """A loaded classifier (S-ResNet-34 or the plain ResNet-34 baseline) plus the spine locator."""

    def __init__(self, net: torch.nn.Module, meta: dict, locator: Locator) -> None:
        self.net = net.eval()
        self.meta = meta
        self.locator = locator
        self.input_size = int(meta.get("input_size", 128))

    @property
    def version(self) -> str:
        return f"{self.meta.get('arch', '?')}-v{self.meta.get('version', '?')}"

    @classmethod
    def load(cls, weights: Path | str | None = None, locator: Path | str | None = None) -> CurvaturePredictor:
        ck = torch.load(Path(weights or DEFAULT_WEIGHTS), map_location="cpu", weights_only=True)
        meta = ck["meta"]
        net = build(meta["arch"], len(meta["classes"]), int(meta["input_size"]))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()})
        return cls(net, meta, Locator.load(locator))

    @torch.no_grad()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) crops in [-1, 1] -> (N, 3) class probabilities."""
        x = torch.from_numpy(np.asarray(crops, dtype=np.float32))[:, None]
        return torch.softmax(self.net(x), dim=1).numpy()

    def predict(self, image: np.ndarray, landmarks: np.ndarray | None = None) -> CurvaturePrediction:
        """[0, 1] image (rows, cols) -> prediction; ``landmarks`` overrides the locator (tests, evaluation)."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"expected a 2-D greyscale image, got shape {img.shape}")
        pts = self.locator.locate(img) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        p = self.probabilities(crop(img, curvature_box(pts, self.input_size))[None])[0]
        probs = {c: float(v) for c, v in zip(CLASSES, p, strict=True)}
        return CurvaturePrediction(CLASSES[int(np.argmax(p))], probs, pts)


@functools.lru_cache(maxsize=2)
def default_predictor(weights: str | None = None) -> CurvaturePredictor:
    """The shipped weights, loaded once per process."""
    return CurvaturePredictor.load(weights)


def predict_curvature(image: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None, *,
                      weights: Path | str | None = None) -> Finding:
    """Curvature class finding (key ``curvature_class_model``, site C2-C7) of one lateral radiograph.

    ``image``: float (rows, cols) in [0, 1], bone bright, original pixels. ``pixel_spacing_mm`` (row, col) at
    the patient plane is optional: the ROI adapts to the located spine, the spacing only serves a sanity
    check of the located C2-C7 length (outside 50-200 mm the finding is ``not measurable``).
    """
    pred = default_predictor(str(weights) if weights else None).predict(image)
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
    return Finding(FINDING_KEY, name, pred.label, "C2-C7", evidence=tuple(evidence),
                   probability=pred.probabilities[pred.label], threshold=rule)


def algorithm_info(weights: Path | str | None = None) -> AlgorithmInfo:
    """Identity of the model for Contributing Equipment (IHE AIR) in the SR."""
    version = default_predictor(str(weights) if weights else None).version
    return AlgorithmInfo(name="cspine-node curvature class (S-ResNet-34, seed 003)", version=version,
                         model_card="research use only; trained on synthetic phantoms; see models/curvature/MODEL_CARD.md")
