"""The cascade's training data can mix renderer A, renderer B (tight fields included) and the shift suite, and
fine-tuning starts from a cascade weights file."""

from __future__ import annotations

import numpy as np
import torch

from models.xray_keypoints.cascade_train import _init, _study_views, stage1_network, stage2_network
from models.xray_keypoints.network import KeypointNet
from models.xray_keypoints.predictor import KeypointPredictor

torch.set_num_threads(1)


def test_mixed_studies_are_drawn_from_the_seed() -> None:
    plain = _study_views(5, (160, 200), "realistic")
    assert [v.image.shape for v in plain] == [v.image.shape for v in _study_views(5, (160, 200), "realistic", 0.0, 0.0)]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(plain, _study_views(5, (160, 200), "realistic"),
                                                                 strict=True))
    b_views = _study_views(5, (160, 200), "realistic", b_fraction=1.0, shift_fraction=1.0, tight_fraction=1.0)
    assert len(b_views) == 3
    for v in b_views:
        assert v.image.dtype == np.uint8 and max(v.image.shape) <= 400
        assert v.keypoints.shape == (30, 2) and v.visible.shape == (30,) and v.small_keypoints.shape == (30, 2)
    assert not np.array_equal(b_views[0].keypoints, plain[0].keypoints)


def test_fine_tuning_starts_from_the_shipped_cascade() -> None:
    shipped = KeypointPredictor.read_checkpoint(None)
    for stage, cfg in (("stage1", stage1_network((16, 32, 64))), ("stage2", stage2_network((16, 32, 64)))):
        model = KeypointNet(cfg)
        _init(model, shipped.path, stage)
        ref = shipped.part(stage)
        assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items() if k in ref)
