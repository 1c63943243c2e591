"""The models the node runs, in one table: which class loads each, its card, its train/evaluate entry points.

``build_models(settings)`` turns ``NodeSettings`` (per model: weights, device, enabled; ``node.settings``) into
the ``pipelines.interfaces.ModelSet`` that the node hands to ``pipelines.analyze`` at worker start. The CLI's
``train``/``evaluate`` targets come from this table too. Nothing here imports torch until a model is loaded.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported when models are built: `serve` reads this table before it starts its worker
    from pipelines.interfaces import Model, ModelSet

LOG = logging.getLogger("models.registry")
ROOT = Path(__file__).resolve().parent


class ModelConfig(Protocol):
    """What the registry reads of one model's settings (``node.settings.ModelSettings``)."""

    weights: Path | None
    device: str | None
    enabled: bool


@dataclass(frozen=True)
class ModelEntry:
    """One model of the node."""

    name: str
    """Key in ``NodeSettings.models`` and in ``ModelSet`` (``keypoints``, ``mri`` ...)."""
    cli: str
    """Target name of ``cspine-node train|evaluate`` (``xray``, ``cord-compression`` ...)."""
    package: str
    """The model's folder under ``models/``."""
    predictor: str
    """Class (in ``<package>.predictor``) with ``load(weights, device)``."""
    task: str

    @property
    def card(self) -> Path:
        return ROOT / self.package / "MODEL_CARD.md"

    @property
    def train_module(self) -> str:
        return f"models.{self.package}.train"

    @property
    def evaluate_module(self) -> str:
        return f"models.{self.package}.evaluate"

    def predictor_class(self) -> Any:  # noqa: ANN401 - the class of this entry's predictor
        return getattr(importlib.import_module(f"models.{self.package}.predictor"), self.predictor)

    def load(self, weights: Path | None, device: str) -> Model:
        return self.predictor_class().load(weights, device)


REGISTRY: tuple[ModelEntry, ...] = (
    ModelEntry("keypoints", "xray", "xray_keypoints", "KeypointPredictor",
               "24 vertebral corners + 6 spinolaminar points on lateral radiographs (paper 002)"),
    ModelEntry("curvature", "curvature", "curvature", "CurvaturePredictor",
               "curvature class normal / straightened / reversed from the neutral view (seed 003)"),
    ModelEntry("upper_cervical", "upper-cervical", "upper_cervical", "UpperCervicalPredictor",
               "six upper-cervical (C0-C2) abnormalities from three views (seed 001)"),
    ModelEntry("cord_compression", "cord-compression", "cord_compression", "CordCompressionPredictor",
               "cord compression per segment from the neutral radiograph, Grad-CAM (seed 004)"),
    ModelEntry("mri", "mri", "mri", "MriPredictor",
               "disc levels, disc herniation, canal and L/R foraminal stenosis on sagittal MRI (paper 002)"),
    ModelEntry("neck_pain", "neck-pain", "neck_pain", "NeckPainPredictor",
               "postoperative neck-pain recovery from X-ray + MRI (seed 000), in the patient-level report"),
)
"""Every model, in the order its findings are reported."""
IMAGE_CLASSIFIERS: tuple[str, ...] = ("curvature", "upper_cervical")
"""The whole-image classifiers of the X-ray pipeline (``ModelSet.image_classifiers``)."""


def entry(name: str) -> ModelEntry:
    for e in REGISTRY:
        if e.name == name or e.cli == name:
            return e
    raise KeyError(f"unknown model {name!r}; known: {', '.join(e.name for e in REGISTRY)}")


def build_models(config: Callable[[str], ModelConfig], *, store: Path | None = None, batch_max_images: int = 1,
                 batch_wait_ms: float = 20.0, on_batch: Callable[[int], None] | None = None) -> ModelSet:
    """Load every enabled model with the weights and device of ``config(name)`` (``NodeSettings.model``).

    Weights: the path the settings name, else the active version in the site's model ``store``
    (``models.store.ModelStore``: checked for its card, metrics and checksum first), else the shipped file.

    A model whose weights are missing or unreadable is left out with a logged error (its findings are then
    reported as not configured), except that an explicitly configured weights path that fails raises: a site
    that names its own weights wants to know at start, not per study. ``batch_max_images`` > 1 wraps the keypoint
    model in a cross-study batcher (threads-pool workers)."""
    from pipelines.interfaces import ModelSet

    loaded: dict[str, Model] = {}
    for e in REGISTRY:
        ms = config(e.name)
        if not ms.enabled:
            LOG.info("model %s disabled by settings", e.name)
            continue
        weights = ms.weights
        if weights is None and store is not None:
            from models.store import ModelStore

            weights = ModelStore(store).active_weights(e.name)  # a broken active version fails here, at start
        try:
            loaded[e.name] = e.load(weights, ms.device or "auto")
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
            if weights is not None:
                raise ValueError(f"model {e.name}: cannot load {weights}: {exc}") from exc
            LOG.error("model %s not loaded: %s", e.name, exc)
            continue
        a = loaded[e.name].algorithm
        LOG.info("loaded model %s %s %s", e.name, a.name, a.version)
    keypoints = loaded.get("keypoints")
    if keypoints is not None and batch_max_images > 1:
        from models.xray_keypoints.batching import BatchingPredictor

        keypoints = BatchingPredictor(keypoints, batch_max_images, batch_wait_ms, on_batch)
    return ModelSet(
        keypoints=keypoints,
        image_classifiers=tuple(loaded[n] for n in IMAGE_CLASSIFIERS if n in loaded),
        cord_compression=loaded.get("cord_compression"),
        mri=loaded.get("mri"),
        neck_pain=loaded.get("neck_pain"),
    )
