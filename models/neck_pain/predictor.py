"""Probability of postoperative neck-pain recovery from one patient's neutral radiograph and T2 sagittal MRI.

:class:`NeckPainPredictor` is the patient-level report's ``interfaces.PatientModel``::

    model = NeckPainPredictor.load(weights=None, device="cpu")      # None: the shipped weights
    p = model.predict(xray, corners, mri_slice, disc_centres, mri_spacing_mm, {"age": 63, "female": 0})

``xray``: float [0, 1] bone bright in original pixels (``image_from_dataset``); ``corners``: the 24 vertebral
corners C2..C7 in ``KEYPOINT_NAMES`` order (pixels, from the X-ray pipeline); ``mri_slice``: the mid-sagittal
T2 slice (raw magnitudes); ``disc_centres``: (5, 2) pixels of C2-C3..C6-C7 (MRI pipeline keypoints);
``clinical``: any of ``pipelines.vocabulary.CLINICAL_VARIABLES`` (missing ones are masked). Crops as in
training (:mod:`models.neck_pain.inputs`, without jitter).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from models.common.checkpoint import Checkpoint
from models.common.predictor import Predictor, for_inference, resolve_device
from models.neck_pain import DEFAULT_WEIGHTS, MODEL_CARD
from models.neck_pain.inputs import (
    INPUT,
    clinical_vector,
    mri_crop,
    mri_unit,
    xray_anterior_right,
    xray_crop,
    xray_disc_centres,
)
from models.neck_pain.network import make_net
from pipelines.results import AlgorithmInfo

ALGORITHM_NAME = "cspine-node neck-pain recovery (ABPDC+FPRAN)"


class NeckPainPredictor(Predictor):
    """The two-encoder network (a ``neck_pain`` checkpoint, part ``network``; ``meta["variant"]`` says which
    ablation) on one device."""

    checkpoint_model = "neck_pain"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD

    def __init__(self, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.meta = checkpoint.meta
        self.weights_version = checkpoint.version
        net = make_net(self.meta["variant"])
        net.load_state_dict(checkpoint.part("network"))
        self.net = for_inference(net, self.device)

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu") -> NeckPainPredictor:
        """The model from ``weights`` (None: the shipped ``neck_pain_v1.pt``) on ``device``."""
        return cls(cls.read_checkpoint(weights), device)

    @property
    def version(self) -> str:
        return f"neck-pain-v{self.weights_version}-{self.meta.get('variant', '?')}"

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name=ALGORITHM_NAME, version=self.version, model_card=self.card_text())

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
        """Probability of recovery (0..1) of one patient."""
        x, m = self.inputs(xray, corners, mri_slice, disc_centres, mri_spacing_mm)
        vals, mask = clinical_vector(dict(clinical or {}))

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a))[None].to(self.device)

        logit, _ = self.net(t(x)[None], t(m)[None], t(vals), t(mask))
        return float(torch.sigmoid(logit)[0])
