"""Geometry against the phantom's construction, hand-made points, invariances and degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.phantoms.xray import generate_study
from pipelines.results import SEGMENTS, View
from pipelines.xray import geometry as g
from pipelines.xray import kernels as k
from pipelines.xray.findings import curvature_class

ROT_INVARIANT = ("cobb_c2_c7", "segmental_angle", "listhesis_distance", "listhesis_angle", "sdvb", "sdvc",
                 "pavlov_ratio", "curvature_index", "curvature_offset")


def _by_key(ms):
    return {(m.key, m.site, m.view): m for m in ms}


def _straight_spine(disc_angles=(0, 0, 0, 0, 0), facing=1, depth=15.0, height=13.0, disc=5.0, canal=14.0,
                    shift=(0, 0, 0, 0, 0)):
    """Hand-made points (mm == px with spacing 1): C7 at the bottom, each disc turns the vertebra above by
    ``disc_angles[i]`` (lordosis positive: anterior end towards cranial), ``shift`` slides the upper vertebra
    anteriorly. Built in an anatomical frame (a anterior, c cranial) and mapped to the image."""
    corners = np.zeros((6, 4, 2))
    phi = 0.0
    pi = np.zeros(2)

    def e(t):
        return np.array([math.cos(math.radians(t)), math.sin(math.radians(t))])

    for v in range(5, -1, -1):
        if v < 5:
            seg = v  # segment index of (v, v+1)
            ps_low = corners[v + 1, 2]
            sup = phi
            phi = sup + disc_angles[seg]
            pi = ps_low + disc * e(sup + 90) + shift[seg] * e(sup)
        corners[v] = [pi + height * e(phi + 90) + depth * e(phi), pi + depth * e(phi), pi + height * e(phi + 90), pi]
    sl = np.array([corners[v, 2:4].mean(axis=0) - canal * e(_phi) for v, _phi in enumerate(_phis(disc_angles))])
    pts = np.concatenate([corners.reshape(24, 2), sl])
    img = np.column_stack([facing * pts[:, 0] + 200.0, 300.0 - pts[:, 1]])
    return img


def _phis(disc_angles):
    phis = [0.0] * 6
    for v in range(4, -1, -1):
        phis[v] = phis[v + 1] + disc_angles[v]
    return phis


def test_hand_made_lordosis_sign_and_value():
    p = _straight_spine((4, 4, 4, 4, 4))
    assert g.cobb_angle(p, (1, 1)) == pytest.approx(20.0, abs=1e-9)
    assert g.segmental_angles(p, (1, 1)) == pytest.approx({s: 4.0 for s in SEGMENTS})
    # kyphosis is negative, facing left changes nothing
    k = _straight_spine((-3, -3, -3, -3, -3), facing=-1)
    assert g.cobb_angle(k, (1, 1)) == pytest.approx(-15.0, abs=1e-9)
    assert g.curvature_index(k, (1, 1)) < 0 < g.curvature_index(p, (1, 1))


def test_hand_made_translation_and_canal():
    p = _straight_spine(shift=(0, 0, 2.5, 0, 0))
    t, a = g.listhesis(p, (0.5, 0.5), "C4-C5")
    assert t == pytest.approx(1.25) and a == pytest.approx(0.0, abs=1e-9)  # anterolisthesis positive, in mm
    assert g.listhesis(p, (0.5, 0.5), "C3-C4")[0] == pytest.approx(0.0, abs=1e-9)
    assert g.sdvb(p, (1, 1), "C5") == pytest.approx(15.0)
    assert g.sdvc(p, (1, 1), "C5") == pytest.approx(14.0)
    assert g.pavlov(p, (1, 1), "C5") == pytest.approx(14 / 15)
    # SVA: C2 centre 7.5 mm anterior of C7's postero-superior corner (straight vertical spine)
    assert g.sva(p, (1, 1)) == pytest.approx(7.5 + 2.5)  # C4 and everything above slid 2.5 mm anteriorly
    assert g.sva(_straight_spine(), (1, 1)) == pytest.approx(7.5)
    assert g.sva(_straight_spine(facing=-1), (1, 1)) == pytest.approx(7.5)
    assert curvature_class(p, (1, 1)) == "straightened"


def _check_against_truth(study, tol=1e-6):
    for view, pv in study.views.items():
        got = _by_key(g.measure_view(pv.keypoints, pv.pixel_spacing_mm, view=view))
        for m in pv.truth:
            assert got[(m.key, m.site, view)].value == pytest.approx(m.value, abs=tol), (m.key, m.site, view)
    if View.FLEXION in study.views and View.EXTENSION in study.views:
        f, e = study.views[View.FLEXION], study.views[View.EXTENSION]
        dyn = _by_key(g.measure_dynamic(f.keypoints, e.keypoints, f.pixel_spacing_mm, e.pixel_spacing_mm))
        truths = [m for m in study.truth if m.view is None]
        assert len(truths) == 10
        for m in truths:
            assert dyn[(m.key, m.site, None)].value == pytest.approx(m.value, abs=tol)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), difficulty=st.sampled_from(["easy", "realistic", "hard"]))
def test_geometry_recovers_phantom_construction(seed, difficulty):
    study = generate_study(seed, shape=(96, 96), difficulty=difficulty)
    _check_against_truth(study)


def _transform(points, angle_deg, shift, mirror):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    q = points.copy()
    if mirror:
        q[:, 0] = -q[:, 0]
    r = np.array([[c, -s], [s, c]])
    return q @ r.T + np.asarray(shift)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), angle=st.floats(-60, 60), dx=st.floats(-500, 500), dy=st.floats(-500, 500),
       mirror=st.booleans())
def test_invariance_to_rotation_translation_and_mirroring(seed, angle, dx, dy, mirror):
    study = generate_study(seed, views=(View.NEUTRAL,), shape=(64, 64), difficulty="easy")
    pv = study.views[View.NEUTRAL]
    sp = pv.pixel_spacing_mm
    base = _by_key(g.measure_view(pv.keypoints, sp))
    moved = _by_key(g.measure_view(_transform(pv.keypoints, angle, (dx, dy), mirror), sp))
    for key, m in base.items():
        if key[0] in ROT_INVARIANT:
            assert moved[key].value == pytest.approx(m.value, abs=1e-6), key
    # SVA is defined against the image vertical: invariant to translation and mirroring, not rotation
    shifted = g.sva(_transform(pv.keypoints, 0.0, (dx, dy), mirror), sp)
    assert shifted == pytest.approx(base[("sva_c2_c7", "C2-C7", None)].value, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), sx=st.floats(0.05, 0.5), sy=st.floats(0.05, 0.5))
def test_anisotropic_spacing_is_handled_in_mm(seed, sx, sy):
    study = generate_study(seed, views=(View.NEUTRAL,), shape=(64, 64), difficulty="easy")
    pv = study.views[View.NEUTRAL]
    row, col = pv.pixel_spacing_mm
    # resample the same anatomy onto a grid with (sy, sx) mm pixels
    pts = pv.keypoints * np.array([col / sx, row / sy])
    got = _by_key(g.measure_view(pts, (sy, sx), view=View.NEUTRAL))
    for m in pv.truth:
        assert got[(m.key, m.site, m.view)].value == pytest.approx(m.value, abs=1e-6)


def test_spacing_scales_distances_not_angles():
    p = _straight_spine((5, 3, 2, 4, 1))
    assert g.sdvb(p, (0.2, 0.2), "C4") == pytest.approx(0.2 * g.sdvb(p, (1, 1), "C4"))
    assert g.cobb_angle(p, (0.2, 0.2)) == pytest.approx(g.cobb_angle(p, (1, 1)))
    assert g.pavlov(p, (0.2, 0.2), "C4") == pytest.approx(g.pavlov(p, (1, 1), "C4"))


def test_degenerate_inputs_raise_clear_errors():
    p = _straight_spine((4, 4, 4, 4, 4))
    nan = p.copy()
    nan[k.idx("C7", "AI")] = np.nan
    with pytest.raises(g.GeometryError, match="C7 antero-inferior"):
        g.cobb_angle(nan, (1, 1))
    same = p.copy()
    same[k.idx("C2", "AI")] = same[k.idx("C2", "PI")]
    with pytest.raises(g.GeometryError, match="coincide"):
        g.cobb_angle(same, (1, 1))
    line = np.column_stack([np.linspace(0, 100, 30), np.linspace(0, 50, 30)])
    with pytest.raises(g.GeometryError, match="collinear"):
        g.cobb_angle(line, (1, 1))
    with pytest.raises(g.GeometryError, match="shape"):
        g.cobb_angle(p[:24], (1, 1))
    with pytest.raises(g.GeometryError, match="spacing"):
        g.sdvb(p, (0, 1), "C3")
    with pytest.raises(g.GeometryError):
        g.segmental_angle(p, (1, 1), "C3-C5")
    assert issubclass(g.GeometryError, ValueError)


def test_missing_vertebra_gives_not_measurable_and_c6_fallback():
    p = _straight_spine((4, 4, 4, 4, 4))
    p[20:24] = np.nan  # C7 corners
    p[29] = np.nan  # C7 spinolaminar
    ms = _by_key(g.measure_view(p, (1, 1), view=View.NEUTRAL))
    cobb = ms[("cobb_c2_c7", "C2-C7", View.NEUTRAL)]
    assert cobb.value is None and "C7" in cobb.reason
    sub = ms[("cobb_c2_c6", "C2-C6", View.NEUTRAL)]
    assert sub.value == pytest.approx(16.0) and "C6 used" in sub.reason
    assert ms[("pavlov_ratio", "C7", View.NEUTRAL)].value is None
    assert ms[("pavlov_ratio", "C6", View.NEUTRAL)].value == pytest.approx(14 / 15)
    assert ms[("segmental_angle", "C6-C7", View.NEUTRAL)].value is None


def test_visible_mask_counts_as_missing():
    p = _straight_spine((4, 4, 4, 4, 4))
    vis = np.ones(30, bool)
    vis[k.idx("C3", "PS")] = False
    ms = _by_key(g.measure_view(p, (1, 1), visible=vis))
    assert ms[("sdvb", "C3", None)].value is None
    assert ms[("sdvb", "C4", None)].value == pytest.approx(15.0)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_measure_view_never_returns_nan(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p = rng.uniform(0, 100, (30, 2))
    mode = data.draw(st.sampled_from(["random", "collinear", "holes", "coincident"]))
    if mode == "collinear":
        t = rng.uniform(0, 1, 30)
        p = np.column_stack([t * 80, t * 40 + 3])
    elif mode == "holes":
        p[rng.random(30) < 0.3] = np.nan
    elif mode == "coincident":
        p[:] = p[0]
    for m in g.measure_view(p, (0.2, 0.2), sigma_px=np.full(30, 1.0), n_samples=16):
        assert m.value is None or math.isfinite(m.value)
        assert m.reason  # why it is not measurable, or how it is defined and signed
        if m.interval is not None:
            assert all(math.isfinite(v) for v in m.interval)


def test_monte_carlo_interval_brackets_value_and_grows_with_sigma():
    study = generate_study(11, views=(View.NEUTRAL, View.FLEXION, View.EXTENSION), shape=(128, 128))
    pv = study.views[View.NEUTRAL]
    small = _by_key(g.measure_view(pv.keypoints, pv.pixel_spacing_mm, sigma_px=np.full(30, 0.2),
                                   rng=np.random.default_rng(1)))
    big = _by_key(g.measure_view(pv.keypoints, pv.pixel_spacing_mm, sigma_px=np.full(30, 2.0),
                                 rng=np.random.default_rng(1)))
    for key in (("cobb_c2_c7", "C2-C7", None), ("sdvc", "C5", None), ("sva_c2_c7", "C2-C7", None)):
        lo, hi = small[key].interval
        assert lo <= small[key].value <= hi
        assert (big[key].interval[1] - big[key].interval[0]) > 3 * (hi - lo)
    f, e = study.views[View.FLEXION], study.views[View.EXTENSION]
    dyn = g.measure_dynamic(f.keypoints, e.keypoints, f.pixel_spacing_mm, e.pixel_spacing_mm,
                            sigma_px=(np.full(30, 0.5), None))
    assert all(m.interval is not None and m.view is None for m in dyn)
