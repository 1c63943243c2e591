"""What the pipelines need from a model, as small typed interfaces (``typing.Protocol``).

``pipelines/`` never imports ``models/``: it states here what it calls, and ``models/`` implements it
(``models.registry`` builds every implementation from ``NodeSettings``: weights, device, batch). The node hands
the built ``ModelSet`` to ``pipelines.analyze`` at worker start. Every model exposes ``algorithm`` (an
``AlgorithmInfo``: name, version, model card) for provenance: it goes into Contributing Equipment (IHE AIR).

Image conventions for every call: a radiograph is a float array (rows, columns) in [0, 1], bone bright, in the
original stored pixels (``pipelines.xray.preprocessing.image_from_dataset``); points are (x, y) pixels, x right,
y down; spacings are (row, column) mm per pixel at the patient plane, or None when unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from pipelines.results import AlgorithmInfo, Finding, HeatMap
from pipelines.vocabulary import View


@runtime_checkable
class Model(Protocol):
    """Every model: its identity for provenance."""

    @property
    def algorithm(self) -> AlgorithmInfo: ...


# -- X-ray ---------------------------------------------------------------------------------------------


@dataclass
class KeypointPrediction:
    """The 30 keypoints of one radiograph (``vocabulary.KEYPOINT_NAMES`` order) in its original pixels."""

    keypoints: np.ndarray
    """(30, 2) x, y in pixels."""
    sigma_px: np.ndarray
    """(30,) calibrated one-sigma spread of each point, pixels."""
    view_probs: dict[View, float] = field(default_factory=dict)
    """Predicted view probabilities (used when the DICOM header names no view)."""
    interval_scale: dict[str, float] = field(default_factory=dict)
    """Calibration of the measurement intervals: measurement key (e.g. ``cobb_c2_c7``), else unit (``deg``, ``mm``,
    ``1``) -> factor on each side of the Monte-Carlo 95 % interval around the value (the model's empirical
    calibration, so that the interval holds the truth at its stated rate); missing: 1."""

    @property
    def view(self) -> View:
        return max(self.view_probs, key=self.view_probs.__getitem__)


class KeypointModel(Model, Protocol):
    """Vertebral corners and spinolaminar points on a lateral radiograph (paper 002)."""

    def predict(self, image: np.ndarray) -> KeypointPrediction: ...


class ImageClassifier(Model, Protocol):
    """A whole-image classifier over one or more views of a study (seeds 003 and 001).

    ``required_views``: the views it needs; the pipeline calls it only when all are present (and passed the
    keypoint gate), else it reports why not."""

    @property
    def required_views(self) -> tuple[View, ...]: ...

    def classify(self, images: Mapping[View, np.ndarray],
                 spacing_mm: Mapping[View, tuple[float, float] | None]) -> list[Finding]: ...


@runtime_checkable
class ImageInputCheck(Protocol):
    """A model that can say whether one radiograph is like its training data without classifying it (its
    out-of-distribution gate). The X-ray pipeline borrows the curvature model's (seed 003) for the upper-cervical
    model (seed 001), whose own gate does not separate unlike images (issue 13; see
    ``pipelines.xray.classifiers.check_upper_cervical_input``)."""

    def input_check(self, image: np.ndarray) -> str:
        """Why ``image`` is unlike the model's training data (the reason text); empty when it passes."""
        ...


class SegmentClassifier(Model, Protocol):
    """A per-segment classifier on crops located by the keypoints of one view (seed 004), with explanation
    maps (Grad-CAM) on that image's pixels."""

    def classify(self, image: np.ndarray, keypoints: np.ndarray,
                 image_uid: str) -> tuple[list[Finding], list[HeatMap]]: ...


# -- MRI -----------------------------------------------------------------------------------------------


@dataclass
class VolumeAnalysis:
    """MRI model outputs for one series, in canonical pixel coordinates of the analysed slices."""

    centres_px: np.ndarray
    """(5, 2) disc centres (x, y), levels C2-C3..C6-C7, on the mid-sagittal slice."""
    sigma_px: np.ndarray
    """(5,) heatmap spread in original pixels."""
    peak: np.ndarray
    """(5,) probability mass of each disc heatmap near its peak (about 1 when confident)."""
    disc_mask: np.ndarray
    """(rows, columns) bool, all graded discs, mid-sagittal slice."""
    canal_mask: np.ndarray
    probabilities: dict[str, np.ndarray]
    """task -> (5,) probabilities, tasks as ``vocabulary.TASKS``."""
    mid: int
    left: int
    right: int
    second_peak: np.ndarray | None = None
    """(5,) the largest mass of each level's heatmap near a place other than its chosen one (more than about 8 mm
    away): near ``peak`` when the level could as well be elsewhere; None when the model does not say."""
    view_top_px: float = 0.0
    """First image row (canonical) the localiser saw; 0 when it saw the whole image height."""
    moved_mm: np.ndarray | None = None
    """(5, k) how far (mm) each level's centre moved when the localiser ran again on k slightly changed inputs
    (contrast, window position, scale); None when the model did not try."""


class MriModel(Model, Protocol):
    """Disc-level localisation and per-level grading on a canonical sagittal volume."""

    def analyse(self, volume: np.ndarray, pixel_spacing_mm: tuple[float, float], mid: int, left: int,
                right: int) -> VolumeAnalysis: ...


# -- patient level -------------------------------------------------------------------------------------


class PatientModel(Model, Protocol):
    """A prediction from both modalities of one patient (seed 000: postoperative neck-pain recovery)."""

    def predict(self, xray: np.ndarray, corners: np.ndarray, mri_slice: np.ndarray, disc_centres: np.ndarray,
                mri_spacing_mm: float, clinical: Mapping[str, float | None]) -> float: ...


# -- the set a worker holds ----------------------------------------------------------------------------


@dataclass
class ModelSet:
    """The models one worker runs; a model left None is reported as "not configured" where it would run."""

    keypoints: KeypointModel | None = None
    image_classifiers: tuple[ImageClassifier, ...] = ()
    """Whole-image classifiers of the X-ray pipeline, in the order their findings are reported."""
    cord_compression: SegmentClassifier | None = None
    mri: MriModel | None = None
    neck_pain: PatientModel | None = None

    def algorithms(self) -> list[AlgorithmInfo]:
        """The identity of every configured model."""
        models = (self.keypoints, *self.image_classifiers, self.cord_compression, self.mri, self.neck_pain)
        return [m.algorithm for m in models if m is not None]
