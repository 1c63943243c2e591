"""The differentiable torch measurements (multi-task loss, eq. 9-30) agree with the numpy geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.xray_keypoints.measures import measures
from pipelines.phantoms.xray import generate_study
from pipelines.results import SEGMENTS
from pipelines.xray import geometry
from pipelines.xray.geometry import CANAL_LEVELS

torch.set_num_threads(1)

KEYS = {"cobb": "cobb_c2_c7", "sva": "sva_c2_c7", "listhesis_distance": "listhesis_distance",
        "listhesis_angle": "listhesis_angle", "segmental_angle": "segmental_angle", "sdvb": "sdvb", "sdvc": "sdvc"}


@pytest.fixture(scope="module")
def study():
    return generate_study(5, shape=(320, 256))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("spacing", [None, (0.21, 0.17)])
def test_torch_measures_equal_numpy_geometry(study, seed: int, spacing: tuple[float, float] | None) -> None:
    for pv in study.views.values():
        sp = spacing or pv.pixel_spacing_mm
        rng = np.random.default_rng(seed)
        pts = pv.keypoints + rng.normal(0, 1.5, pv.keypoints.shape)  # not only the phantom's exact shapes
        ref = {(m.key, m.site): m.value for m in geometry.measure_view(pts, sp)}
        q = measures(torch.tensor(pts[None]), torch.tensor([[sp[0], sp[1]]], dtype=torch.float64))
        for ours, key in KEYS.items():
            sites = ["C2-C7"] if ours in ("cobb", "sva") else (list(CANAL_LEVELS) if ours in ("sdvb", "sdvc") else list(SEGMENTS))
            got = q[ours][0].reshape(-1).numpy()
            want = np.array([ref[(key, site)] for site in sites])
            assert np.allclose(got, want, atol=1e-6), (ours, got, want)


def test_isotropic_spacing_and_gradients(study) -> None:
    pv = next(iter(study.views.values()))
    sp = pv.pixel_spacing_mm[0]
    pts = torch.tensor(pv.keypoints[None], requires_grad=True)
    q = measures(pts, torch.tensor([sp], dtype=torch.float64))
    assert q["cobb"].item() == pytest.approx(geometry.cobb_angle(pv.keypoints, pv.pixel_spacing_mm), abs=1e-6)
    sum(v.sum() for v in q.values()).backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
