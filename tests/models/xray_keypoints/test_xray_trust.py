"""The trust evaluation (``cspine-node evaluate xray --style a|b --shift ...``): level assignment, the metrics it
prints, and one run of the node's pipeline with the shipped model on a renderer B study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.xray_keypoints import trust
from pipelines.phantoms.xray_b import generate_study_b
from pipelines.vocabulary import View


@pytest.fixture(scope="module")
def truth():  # noqa: ANN201
    pv = generate_study_b(1, max_size=256, views=(View.NEUTRAL,)).views[View.NEUTRAL]
    return pv.keypoints, pv.t1_corners


def test_level_assignment(truth) -> None:  # noqa: ANN001
    kp, t1 = truth
    assert trust.level_assignment(kp + 3.0, kp, t1).all()
    shifted = kp.copy()
    shifted[:20], shifted[20:24] = kp[4:24], t1
    assert not trust.level_assignment(shifted, kp, t1).any()  # every level one vertebra off
    up = kp.copy()
    up[4:24] = kp[:20]
    up[:4] = kp[:4] - (kp[4:8] - kp[:4])  # "C2" on C1 (above C2), the rest one level up
    assert not trust.level_assignment(up, kp, t1).any()
    collapsed = kp.copy()
    collapsed[12:16] = kp[8:12]
    collapsed[16:24] = kp[12:20]
    assert trust.level_assignment(collapsed, kp, t1).tolist() == [True, True, True, False, False, False]


def _outcome(assigned: bool, value: float | None, interval, truth_value: float, reason: str = "") -> trust.ViewOutcome:  # noqa: ANN001
    o = trust.ViewOutcome(0, "none", View.NEUTRAL, np.array([0.5, 1.5]), np.array([True] * 5 + [assigned]))
    o.reported = {"cobb_c2_c7": (value, interval, reason), "sva_c2_c7": (None, None, reason)}
    o.truth = {"cobb_c2_c7": truth_value, "sva_c2_c7": 10.0}
    return o


def test_summary_counts_what_matters() -> None:
    views = [
        _outcome(True, 10.0, (8.0, 12.0), 11.0),  # measured, covered
        _outcome(True, 20.0, (19.0, 21.0), 25.0),  # measured, not covered
        _outcome(False, 5.0, (4.0, 6.0), 30.0),  # mis-assigned and measured: the worst output
        _outcome(False, None, None, 3.0, "not measurable: implausible anatomy: C4 and C5 overlap (80%)"),
    ]
    m = trust.summarize(views)
    assert m["Cobb"]["n"] == 3 and m["Cobb"]["mae"] == pytest.approx((1 + 5 + 25) / 3)
    assert m["Cobb"]["coverage_95"] == pytest.approx(1 / 3) and m["coverage_95"] == pytest.approx(1 / 3)
    assert m["gated_fraction"] == pytest.approx(0.25)
    assert m["gated_reasons"] == {"implausible anatomy: C# and C# overlap": 1}
    assert (m["misassigned_views"], m["misassigned_measurable"], m["misassigned_caught"]) == (2, 1, 1)
    assert m["corner_error_mm"]["median"] == pytest.approx(1.0)


def test_evaluate_runs_the_pipeline_on_renderer_b(models) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    views = trust.evaluate(models.keypoints, style="b", seed=3, count=1, shift="rotate:20", max_size=512,
                           progress=False)
    assert sorted(v.view.value for v in views) == ["extension", "flexion", "neutral"]
    for v in views:
        assert v.shift == "rotate:20" and v.corner_error_mm.shape == (24,)
        assert set(v.reported) >= {"cobb_c2_c7", "sva_c2_c7"} and "cobb_c2_c7" in v.truth
        value, _, reason = v.reported["cobb_c2_c7"]
        assert value is not None or reason.startswith("not measurable")
    m = trust.summarize(views)
    assert m["views"] == 3 and 0.0 <= m["gated_fraction"] <= 1.0
