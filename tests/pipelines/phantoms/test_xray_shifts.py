"""The shift suite (``pipelines.phantoms.shifts``) on both renderers: geometric shifts move the keypoints exactly
with the pixels, intensity shifts leave them alone, the truth follows, and the result is deterministic."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from pipelines.phantoms import shifts
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray_b import generate_study_b
from pipelines.vocabulary import View


@pytest.fixture(scope="module")
def views():  # noqa: ANN201
    a = generate_study(12, shape=(320, 288), views=(View.NEUTRAL,)).views[View.NEUTRAL]
    b = generate_study_b(12, max_size=320, views=(View.NEUTRAL,)).views[View.NEUTRAL]
    return {"a": a, "b": b}


def dots(pv):  # noqa: ANN001, ANN201
    """The view with its pixels replaced by bright discs (radius 2 px) at the keypoints on a dark background."""
    rows, cols = pv.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = np.zeros((rows, cols))
    for x, y in pv.keypoints:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 4.0] = 1.0
    maxval = (1 << pv.bits_stored) - 1
    stored = (1.0 - img) if pv.photometric == "MONOCHROME1" else img
    return replace(pv, pixels=np.rint(stored * maxval).astype(np.uint16))


def unit(pv) -> np.ndarray:  # noqa: ANN001
    img = pv.pixels.astype(np.float64) / ((1 << pv.bits_stored) - 1)
    return 1.0 - img if pv.photometric == "MONOCHROME1" else img


def test_parse() -> None:
    assert shifts.parse("rotate:-30, jpeg,mono1") == [("rotate", -30.0), ("jpeg", 25.0), ("mono1", None)]
    assert shifts.parse("") == [] and shifts.parse("none") == []
    with pytest.raises(ValueError, match="unknown shift 'tilt'"):
        shifts.parse("tilt:3")
    for spec in shifts.SUITE:
        shifts.parse(spec)


@pytest.mark.parametrize("style", ["a", "b"])
@pytest.mark.parametrize("spec", ["rotate:30", "rotate:-30", "scale:0.6", "scale:1.5", "collimate", "collimate:40",
                                  "mirror", "spacing:0.2", "rotate:13,scale:0.7,mirror"])
def test_geometric_shifts_move_the_keypoints_with_the_pixels(views, style: str, spec: str) -> None:  # noqa: ANN001
    pv = dots(views[style])
    out = shifts.shift_view(pv, spec, np.random.default_rng(0))
    img = unit(out)
    rows, cols = out.shape
    on = 0
    for (x, y), vis in zip(out.keypoints, out.visible, strict=True):
        if not vis:
            continue
        xi, yi = int(round(x)), int(round(y))
        assert img[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2].max() > 0.5, (spec, x, y)
        on += 1
    assert on >= 20
    # and nothing bright is left where there is no keypoint
    far = np.ones((rows, cols), bool)
    for x, y in out.keypoints:
        r = 4 + 3 / max(min(out.imager_pixel_spacing_mm[0] / pv.imager_pixel_spacing_mm[0], 1.0), 0.2)
        far[max(int(y - r), 0):int(y + r) + 1, max(int(x - r), 0):int(x + r) + 1] = False
    assert img[far].max() < 0.3


def test_rotation_is_exact(views) -> None:  # noqa: ANN001
    pv = views["b"]
    out = shifts.rotate(pv, 30.0)
    d0, d1 = pv.keypoints[20] - pv.keypoints[0], out.keypoints[20] - out.keypoints[0]
    assert np.hypot(*d1) == pytest.approx(np.hypot(*d0), rel=1e-12)
    turn = math.degrees(math.atan2(d1[1], d1[0]) - math.atan2(d0[1], d0[0]))
    assert (turn + 180) % 360 - 180 == pytest.approx(-30.0, abs=1e-9)  # counter-clockwise on screen (y down)
    assert out.imager_pixel_spacing_mm == pv.imager_pixel_spacing_mm


def test_truth_follows_geometric_shifts(views) -> None:  # noqa: ANN001
    pv = views["a"]
    before = {(m.key, m.site): m.value for m in pv.truth}
    for spec in ("rotate:-30", "scale:0.5", "spacing:0.1", "mirror"):
        out = shifts.shift_view(pv, spec, np.random.default_rng(0))
        after = {(m.key, m.site): m.value for m in out.truth}
        assert after[("cobb_c2_c7", "C2-C7")] == pytest.approx(before[("cobb_c2_c7", "C2-C7")], abs=0.01), spec
        assert after[("sdvb", "C4")] == pytest.approx(before[("sdvb", "C4")], abs=0.01), spec  # mm: spacing follows
    scaled = shifts.shift_view(pv, "scale:0.5", np.random.default_rng(0))
    assert scaled.pixel_spacing_mm[0] == pytest.approx(pv.pixel_spacing_mm[0] * pv.shape[0] / scaled.shape[0])


@pytest.mark.parametrize("spec", ["mono1", "invert", "gamma:2", "gamma:0.5", "noise", "blur", "jpeg", "metal",
                                  "collar"])
def test_intensity_shifts_keep_the_keypoints(views, spec: str) -> None:  # noqa: ANN001
    for pv in views.values():
        out = shifts.shift_view(pv, spec, np.random.default_rng(0))
        assert np.array_equal(out.keypoints, pv.keypoints) and np.array_equal(out.visible, pv.visible)
        assert out.shape == pv.shape and out.truth == pv.truth
        if spec == "mono1":
            assert out.photometric == "MONOCHROME1" and np.abs(unit(out) - unit(pv)).max() < 1e-3
        else:
            assert np.abs(unit(out) - unit(pv)).mean() > 1e-3
        if spec == "invert":
            assert np.allclose(unit(out), 1.0 - unit(pv), atol=1e-3)


def test_shoulders_hide_c7(views) -> None:  # noqa: ANN001
    pv = views["a"]
    out = shifts.shift_view(pv, "shoulders", np.random.default_rng(0))
    assert not out.visible[20:24].any() and out.visible[:16].all() == pv.visible[:16].all()
    below = out.keypoints[20:24].mean(axis=0).astype(int)
    assert unit(out)[below[1], below[0]] > unit(pv)[below[1], below[0]]


def test_shift_study_is_deterministic_and_keeps_the_dynamic_truth() -> None:
    st = generate_study_b(2, max_size=224)
    a = shifts.shift_study(st, "rotate:20,noise,jpeg")
    b = shifts.shift_study(st, "rotate:20,noise,jpeg")
    for v in st.views:
        assert np.array_equal(a.views[v].pixels, b.views[v].pixels)
    dyn0 = {m.site: m.value for m in st.truth if m.view is None and m.key == "listhesis_angle"}
    dyn1 = {m.site: m.value for m in a.truth if m.view is None and m.key == "listhesis_angle"}
    assert dyn0 == pytest.approx(dyn1, abs=1e-6)  # rotation changes no angle
    assert shifts.shift_study(st, "") is st
