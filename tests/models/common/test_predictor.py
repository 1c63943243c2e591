"""The one predictor shape: every model loads with ``Cls.load(weights, device)`` from its shipped weights, reports
its ``algorithm`` and offers the methods of its ``pipelines.interfaces`` protocol; the device choice."""

from __future__ import annotations

import importlib
import inspect
import logging

import pytest
import torch

from models.common.checkpoint import CheckpointError, save_checkpoint
from models.common.predictor import LoadablePredictor, Predictor, resolve_device
from pipelines.interfaces import (
    ImageClassifier,
    KeypointModel,
    Model,
    MriModel,
    PatientModel,
    SegmentClassifier,
)
from pipelines.results import AlgorithmInfo
from pipelines.vocabulary import View

PREDICTORS = {
    "models.xray_keypoints.predictor.KeypointPredictor": KeypointModel,
    "models.curvature.predictor.CurvaturePredictor": ImageClassifier,
    "models.upper_cervical.predictor.UpperCervicalPredictor": ImageClassifier,
    "models.cord_compression.predictor.CordCompressionPredictor": SegmentClassifier,
    "models.mri.predictor.MriPredictor": MriModel,
    "models.neck_pain.predictor.NeckPainPredictor": PatientModel,
}


def _class(path: str) -> type[Predictor]:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_resolve_device_falls_back_to_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with caplog.at_level(logging.WARNING, logger="models"):
        assert resolve_device(f"cuda:{n}") == torch.device("cpu")  # one past the last visible device
    assert "falling back to the CPU" in caplog.text


@pytest.mark.parametrize("path", sorted(PREDICTORS))
def test_every_predictor_has_the_one_shape(path: str) -> None:
    cls, protocol = _class(path), PREDICTORS[path]
    assert issubclass(cls, Predictor) and cls.default_weights.is_file() and cls.model_card.is_file()
    assert list(inspect.signature(cls.load).parameters)[:2] == ["weights", "device"]
    model = cls.load(None, "cpu")
    assert isinstance(model, Model) and isinstance(model, LoadablePredictor)
    assert model.device == torch.device("cpu")
    info = model.algorithm
    assert isinstance(info, AlgorithmInfo) and info.name and info.version and "synthetic" in info.model_card
    for name, member in inspect.getmembers(protocol):
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
            assert hasattr(model, name), f"{cls.__name__} lacks {protocol.__name__}.{name}"
            if inspect.isfunction(member):
                want = list(inspect.signature(member).parameters)[1:]
                have = list(inspect.signature(getattr(model, name)).parameters)
                assert have[:len(want)] == want, (name, have, want)
    if protocol is ImageClassifier:
        assert all(isinstance(v, View) for v in model.required_views)


def test_a_checkpoint_of_another_model_is_refused(tmp_path) -> None:  # noqa: ANN001
    from models.cord_compression.network import SegmentCNN
    from models.cord_compression.predictor import CordCompressionPredictor
    from models.mri.predictor import MriPredictor

    path = save_checkpoint(tmp_path / "cc.pt", "cord_compression", "9", {"network": SegmentCNN()}, {"threshold": 0.4})
    model = CordCompressionPredictor.load(path)
    assert model.version == "segment-cnn-v9" and model.threshold == 0.4
    with pytest.raises(CheckpointError, match="expected 'mri'"):
        MriPredictor.load(path)
