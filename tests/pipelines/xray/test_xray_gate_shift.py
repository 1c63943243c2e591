"""CI guard for issue 13: the plausibility gate on a small shift set of both renderers.

The true keypoints of a few renderer A and renderer B studies (three views each) under geometric shifts
(collimation to C2-C7, rotation +-30 deg, scaling, mirroring, a 0.1 mm detector, a combination) must pass the gate;
the same keypoints with a simulated level error must fail it: a collapsed level at each of C3-C6 (two predicted
levels on one vertebra, the lower ones shifted by one), a chain shifted down by one vertebra, a skipped vertebra and
a swapped pair. If a level collapse gets through, this test fails."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.phantoms.shifts import shift_study
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray_b import generate_study_b
from pipelines.xray.plausibility import check_view

SHIFTS = ("collimate", "rotate:30", "rotate:-30", "scale:0.5", "mirror", "spacing:0.1", "rotate:-25,mirror,collimate:40")


def _studies() -> list:
    return ([generate_study(s, shape=(384, 320)) for s in range(3)]
            + [generate_study_b(s, max_size=256) for s in range(3)])


@pytest.fixture(scope="module")
def shifted() -> list:
    return [(spec, shift_study(st, spec)) for st in _studies() for spec in SHIFTS]


def body(points: np.ndarray, i: int) -> np.ndarray:
    return points[4 * i:4 * i + 4]


def collapsed(points: np.ndarray, k: int) -> np.ndarray:
    """Levels k and k+1 predicted on vertebra k (a few pixels apart), every lower level shifted up by one."""
    out = points.copy()
    out[4 * (k + 1):4 * (k + 2)] = body(points, k) + 1.5
    out[4 * (k + 2):24] = points[4 * (k + 1):20]
    return out


def shifted_by_one(pv) -> np.ndarray:  # noqa: ANN001
    """"C2".."C6" on C3..C7, "C7" on T1 (renderer B draws T1; for A it is C7 moved one level down)."""
    p = pv.keypoints
    out = p.copy()
    out[:20] = p[4:24]
    t1 = getattr(pv, "t1_corners", None)
    out[20:24] = t1 if t1 is not None else body(p, 5) + (body(p, 5) - body(p, 4))
    return out


def test_truth_passes_under_shifts(shifted) -> None:  # noqa: ANN001
    n = 0
    for spec, st in shifted:
        for pv in st.views.values():
            r = check_view(pv.keypoints, pv.pixel_spacing_mm, shape=pv.shape)
            assert r.passed and r.canal_passed, (st.seed, spec, pv.view, r.failures, r.canal_failures)
            n += 1
    assert n == 6 * len(SHIFTS) * 3


def test_level_errors_fail_under_shifts(shifted) -> None:  # noqa: ANN001
    through: list[str] = []
    for spec, st in shifted:
        for pv in st.views.values():
            sp = pv.pixel_spacing_mm
            cases = {f"collapse at C{k + 2}": collapsed(pv.keypoints, k) for k in range(1, 5)}
            cases["shift by one"] = shifted_by_one(pv)
            skip = pv.keypoints.copy()
            skip[12:20] = pv.keypoints[16:24]  # C5 predicted on C6, C6 on C7 ...
            skip[20:24] = shifted_by_one(pv)[20:24]  # ... and C7 on T1: C4-C5 spans a whole vertebra
            cases["skipped vertebra"] = skip
            swap = pv.keypoints.copy()
            swap[8:12], swap[12:16] = pv.keypoints[12:16], pv.keypoints[8:12]
            cases["swapped C4/C5"] = swap
            for name, pts in cases.items():
                r = check_view(pts, sp)  # no image bounds: "C7 outside the image" must not be what catches it
                if r.passed:
                    through.append(f"seed {st.seed} {spec} {pv.view.value}: {name}")
                elif name.startswith("collapse"):
                    assert "overlap" in r.reason, (name, r.reason)
    assert through == []
