"""models.registry: every model of the node loads from the settings (weights, device, enabled) and implements the
interface its pipeline states (pipelines.interfaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.registry import REGISTRY, build_models, entry
from node.settings import NodeSettings
from pipelines.interfaces import (
    ImageClassifier,
    KeypointModel,
    Model,
    MriModel,
    PatientModel,
    SegmentClassifier,
)


def test_every_model_loads_and_names_itself(models) -> None:  # noqa: ANN001
    assert isinstance(models.keypoints, Model) and callable(models.keypoints.predict)
    assert [c.algorithm for c in models.image_classifiers] == [entry("curvature").load(None, "cpu").algorithm,
                                                               entry("upper_cervical").load(None, "cpu").algorithm]
    algorithms = models.algorithms()
    assert len(algorithms) == len(REGISTRY) and all(a.name and a.version and a.model_card for a in algorithms)
    assert len({a.name for a in algorithms}) == len(REGISTRY)


def test_each_model_has_the_shape_its_pipeline_needs(models) -> None:  # noqa: ANN001
    checks = {KeypointModel: [models.keypoints], ImageClassifier: list(models.image_classifiers),
              SegmentClassifier: [models.cord_compression], MriModel: [models.mri], PatientModel: [models.neck_pain]}
    methods = {KeypointModel: "predict", ImageClassifier: "classify", SegmentClassifier: "classify",
               MriModel: "analyse", PatientModel: "predict"}
    for proto, impls in checks.items():
        for m in impls:
            assert m is not None and callable(getattr(m, methods[proto])), (proto.__name__, m)
    assert {tuple(v.value for v in c.required_views) for c in models.image_classifiers} == {
        ("neutral",), ("extension", "neutral", "flexion")}


def test_settings_disable_a_model_and_a_bad_weights_path_fails_at_start(tmp_path: Path) -> None:
    off = {n: {"enabled": False} for n in ("curvature", "upper_cervical", "cord_compression", "neck_pain", "keypoints")}
    only_mri = build_models(NodeSettings(device="cpu", models=off).model)
    assert only_mri.keypoints is None and only_mri.image_classifiers == () and only_mri.mri is not None
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model mri: cannot load"):
        build_models(NodeSettings(device="cpu", models={**off, "mri": {"weights": str(broken)}}).model)
