"""Intervals that hold the truth at their stated rate: test-time variants map back to the original pixels, their
disagreement widens the spread, the conformal factors are fitted per measurement, the pipeline widens each interval
side by its factor, and the trust evaluation reports the reliability at 50-99 %."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.xray_keypoints import interval_calibration as ic
from models.xray_keypoints import trust
from models.xray_keypoints.tta import DEFAULT_VARIANTS, Variant, combine, level_jumps
from pipelines.results import Measurement
from pipelines.vocabulary import View
from pipelines.xray.pipeline import calibrated_interval
from pipelines.xray.preprocessing import AffineTransform

torch.set_num_threads(1)


def test_plain_variant_is_the_letterbox_and_variants_map_back() -> None:
    plain = Variant().letterbox(900, 700, 160)
    assert np.allclose(plain.matrix, AffineTransform.letterbox(900, 700, 160).matrix)
    centre = np.array([(700 - 1) / 2, (900 - 1) / 2])
    for v in DEFAULT_VARIANTS:
        t = v.letterbox(900, 700, 160)
        p = np.array([[10.0, 20.0], [150.0, 80.0]])
        assert np.allclose(t.to_model(t.to_original(p)), p)
        assert np.allclose(t.to_original(np.array([79.5, 79.5])), centre - np.array(v.shift) * 160 * t.scale)
        assert (t.matrix[0, 0] < 0) == v.mirror and t.scale == pytest.approx(plain.scale / v.zoom)
        assert Variant.from_dict(v.to_dict()) == v


def test_combine_adds_the_between_variant_spread() -> None:
    p = np.zeros((30, 2))
    s = np.full(30, 0.5)
    point, total, between = combine([p, p, p], [s, s, s])
    assert np.allclose(point, p) and np.allclose(between, 0) and np.allclose(total, 0.5)
    q = p.copy()
    q[:, 0] = 3.0  # one variant 3 px off in x
    point, total, between = combine([p, q, p], [s, s, s])
    assert np.allclose(point, p)  # the plain prediction is the point
    assert np.allclose(between, np.sqrt(np.var([0, 3, 0], ddof=1) / 2))
    assert np.allclose(total, np.sqrt(0.25 + between**2))
    assert np.allclose(combine([p, q], [s, s], point="mean")[0][:, 0], 1.5)


def test_a_variant_on_another_level_is_a_level_jump() -> None:
    kp = np.zeros((30, 2))
    kp[:24, 1] = np.repeat(np.arange(6) * 20.0, 4)  # body centres 20 px apart
    near, jumped = kp.copy(), kp.copy()
    near[:24, 0] += 4.0  # 0.2 gap
    jumped[:20] = kp[4:24]  # every vertebra one level down
    jumped[20:24] = kp[20:24] + [0.0, 20.0]
    assert level_jumps([kp, near, jumped]).tolist() == [False, False, True]
    s = np.full(30, 0.5)
    _, total, _ = combine([kp, near, jumped], [s, s, s])
    assert np.median(total) > 5.0  # a level jump makes the spread large: the gates stop the view
    _, kept, _ = combine([kp, near, jumped], [s, s, s], drop_jumps=True)
    assert np.allclose(kept[:24], np.sqrt(0.25 + np.var([0.0, 4.0], ddof=1) / 2)) and np.allclose(kept[24:], 0.5)


def test_tta_prediction_on_a_phantom() -> None:
    """Shipped weights with the three variants: same points as the plain pass, spread at least the heatmap spread
    of the view, a few tenths of a millimetre on the training renderer."""
    from models.xray_keypoints.predictor import KeypointPredictor
    from pipelines.phantoms.xray import generate_study
    from pipelines.xray.preprocessing import to_unit_range

    pred = KeypointPredictor.load(None, device=torch.device("cpu"))
    pv = generate_study(990_501, shape=(900, 760)).views[View.NEUTRAL]
    img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
    pred.variants = (Variant(),)
    plain = pred.predict(img)
    pred.variants = DEFAULT_VARIANTS
    tta = pred.predict(img)
    assert np.allclose(tta.keypoints, plain.keypoints)
    mm = pv.pixel_spacing_mm[0]
    assert 0.05 < np.median(tta.sigma_px) * mm < 0.3
    assert np.median(np.hypot(*(tta.keypoints[:24] - pv.keypoints[:24]).T)) * mm < 0.6
    assert tta.interval_scale == pred.interval_scale


def _m(value: float | None, interval: tuple[float, float] | None, key: str = "cobb_c2_c7", unit: str = "deg"
       ) -> Measurement:
    return Measurement(key=key, name=key, value=value, unit=unit, site="C2-C7", view=View.NEUTRAL, interval=interval)


def test_pipeline_widens_each_side_by_its_factor() -> None:
    m = calibrated_interval(_m(10.0, (8.0, 13.0)), {"cobb_c2_c7": 2.0, "deg": 3.0})
    assert m.interval == pytest.approx((6.0, 16.0))
    m = calibrated_interval(_m(10.0, (8.0, 13.0), key="segmental_angle"), {"cobb_c2_c7": 2.0, "deg": 3.0})
    assert m.interval == pytest.approx((4.0, 19.0))  # the unit's factor
    assert calibrated_interval(_m(10.0, (8.0, 13.0)), {}).interval == (8.0, 13.0)
    assert calibrated_interval(_m(None, None), {"deg": 2.0}).interval is None


def _view(value: float, interval: tuple[float, float], truth: float, key: str = "cobb_c2_c7") -> trust.ViewOutcome:
    o = trust.ViewOutcome(0, "none", View.NEUTRAL, np.zeros(24), np.ones(6, bool))
    o.reported = {key: (value, interval, "")}
    o.truth = {key: truth}
    return o


def test_conformal_factor_and_domain_weights() -> None:
    assert ic.score(10.0, (8.0, 14.0), 13.0) == pytest.approx(0.75)  # the upper side (4)
    assert ic.score(10.0, (8.0, 14.0), 6.0) == pytest.approx(2.0)  # the lower side (2)
    assert ic.conformal_quantile(list(range(1, 20)), 0.95) == 19  # ceil(20 x 0.95) = 19th
    assert math.isinf(ic.conformal_quantile([1.0, 2.0], 0.95))
    rng = np.random.default_rng(0)
    # domain "a": errors within the interval's scale; domain "b": three times it (1 interval side = 1)
    a = [_view(0.0, (-1.0, 1.0), float(e)) for e in rng.normal(0, 0.51, 200)]
    b = [_view(0.0, (-1.0, 1.0), float(e)) for e in rng.normal(0, 1.53, 40)]
    fit = ic.fit({"a": a, "b": b}, max_interval={"deg": 100.0})
    f = fit["scale"]["cobb_c2_c7"]
    assert fit["counts"]["cobb_c2_c7"] == 240 and fit["scale"]["deg"] == f
    assert 1.5 < f < 3.5  # between the two domains' own factors (1, 3): each domain weighs the same
    cov = ic.coverage(a + b, fit["scale"], keys=("cobb_c2_c7",))
    assert cov["cobb_c2_c7"]["0.95"] >= 0.95 and cov["cobb_c2_c7"]["n"] == 240
    # the interval gate: with a limit the widened intervals exceed, nothing is left to fit
    assert ic.fit({"a": a}, max_interval={"deg": 1.0})["rounds"] >= 1
    # worst-set pooling: the factor of the domain that needs the widest intervals (about 3), so both hold
    worst = ic.fit({"a": a, "b": b}, max_interval={"deg": 100.0}, worst=True)["scale"]["cobb_c2_c7"]
    assert worst > f and 2.4 < worst < 6.0  # b has 40 scores: its 39th smallest
    for dom in (a, b):
        assert ic.coverage(dom, {"cobb_c2_c7": worst}, keys=("cobb_c2_c7",))["cobb_c2_c7"]["0.95"] >= 0.9


def test_trust_reports_reliability() -> None:
    views = [_view(0.0, (-1.0, 1.0), t) for t in (0.1, 0.5, 0.9, 1.5)]
    m = trust.summarize(views)
    rel = m["Cobb"]["reliability"]
    assert rel["0.95"] == pytest.approx(m["Cobb"]["coverage_95"]) == pytest.approx(0.75)
    assert rel["0.5"] == pytest.approx(0.25)  # z(0.75) / z(0.975) = 0.34: only 0.1 inside
    assert list(rel) == ["0.5", "0.8", "0.9", "0.95", "0.99"]
    assert m["measured_fraction"] == 1.0


def test_reliability_plot(tmp_path) -> None:  # noqa: ANN001
    m = trust.summarize([_view(0.0, (-1.0, 1.0), t) for t in (0.1, 0.5, 0.9, 1.5)])
    path = trust.plot_reliability({"A": m, "B": m}, tmp_path / "rel.png")
    assert path.stat().st_size > 1000
