"""Probability of postoperative neck-pain recovery from one patient's neutral radiograph and T2 sagittal MRI.

Entry point for the patient-level report (:mod:`pipelines.patient`)::

    p = NeckPainPredictor.load().predict(xray, corners, mri_slice, disc_centres, mri_spacing_mm, {"age": 63, "female": 0})

``xray``: float [0, 1] bone bright in original pixels (``image_from_dataset``); ``corners``: the 24 vertebral
corners C2..C7 in ``KEYPOINT_NAMES`` order (pixels, from the X-ray pipeline); ``mri_slice``: the mid-sagittal
T2 slice (raw magnitudes); ``disc_centres``: (5, 2) pixels of C2-C3..C6-C7 (MRI pipeline keypoints);
``clinical``: any of ``pipelines.outcome.phantom.CLINICAL`` (missing ones are masked). Crops as in training
(:mod:`models.neck_pain.data`, without jitter).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from models.neck_pain import DEFAULT_WEIGHTS
from models.neck_pain.data import (
    INPUT,
    clinical_vector,
    mri_crop,
    mri_unit,
    xray_anterior_right,
    xray_crop,
    xray_disc_centres,
)
from models.neck_pain.network import NeckPainNet
from pipelines.results import AlgorithmInfo


class NeckPainPredictor:
    def __init__(self, net: NeckPainNet, meta: dict) -> None:
        self.net = net.eval()
        self.meta = meta

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name="cspine-node neck-pain recovery (ABPDC+FPRAN)",
                             version=f"neck-pain-v{self.meta.get('version', '?')}-{self.meta.get('variant', '?')}",
                             model_card="models/neck_pain/MODEL_CARD.md: research use; trained on synthetic phantoms")

    @classmethod
    def load(cls, weights: Path | str | None = None) -> NeckPainPredictor:
        from models.neck_pain.train import load

        net, meta = load(weights or DEFAULT_WEIGHTS)
        return cls(net, meta)

    def inputs(self, xray: np.ndarray, corners: np.ndarray, mri_slice: np.ndarray, disc_centres: np.ndarray,
               mri_spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """The two ``INPUT`` x ``INPUT`` crops the network sees."""
        corners = np.asarray(corners, float)
        if corners.shape[0] < 24 or not np.isfinite(corners[:24]).all():
            raise ValueError("need the 24 vertebral corners C2..C7 of the neutral radiograph")
        centres = np.asarray(disc_centres, float)
        if centres.shape != (5, 2) or not np.isfinite(centres).all():
            raise ValueError("need the five MRI disc centres C2-C3..C6-C7")
        xc = xray_crop(xray_disc_centres(corners), xray_anterior_right(corners))
        mc = mri_crop(centres, float(mri_spacing_mm))
        return xc.sample(np.asarray(xray, np.float32), INPUT), mc.sample(mri_unit(np.asarray(mri_slice)), INPUT)

    @torch.no_grad()
    def predict(self, xray: np.ndarray, corners: np.ndarray, mri_slice: np.ndarray, disc_centres: np.ndarray,
                mri_spacing_mm: float, clinical: Mapping[str, float | None] | None = None) -> float:
        x, m = self.inputs(xray, corners, mri_slice, disc_centres, mri_spacing_mm)
        vals, mask = clinical_vector(dict(clinical or {}))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731
        logit, _ = self.net(t(x)[None], t(m)[None], t(vals), t(mask))
        return float(torch.sigmoid(logit)[0])


@functools.lru_cache(maxsize=2)
def default_predictor(weights: str | None = None) -> NeckPainPredictor:
    """The shipped model, loaded once per process."""
    return NeckPainPredictor.load(weights)
