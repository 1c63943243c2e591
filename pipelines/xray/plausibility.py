"""The anatomical plausibility gate: does a view's set of keypoints look like a cervical spine C2-C7?

Pure geometry on the 24 corners (and the 6 spinolaminar points) of one lateral radiograph, numpy only. It checks
what a radiologist checks at a glance before trusting a measurement: six vertebral bodies in order along the
chain, no two overlapping, plausible body depth and height and their ratios to the neighbours, plausible disc
spaces, C2 taller than the bodies below it, endplates and walls that do not cross, a smooth chain, and the canal
(spinolaminar points behind the posterior walls at a plausible distance).

**Frame.** Nothing assumes an image orientation: each body's cranio-caudal axis is read from its own corners
(superior endplate midpoint -> inferior endplate midpoint) and its anterior direction from its walls (posterior
wall midpoint -> anterior wall midpoint), so a rotated, mirrored or upside-down image passes when its keypoints
do. Points are ``(30, 2)`` pixels in ``vocabulary.KEYPOINT_NAMES`` order (x right, y down), the spacing
``(row, col)`` mm per pixel at the patient plane, or None.

**Without a pixel spacing** the absolute checks in mm are skipped; every other check is a ratio (to the body's
own size or its neighbours') or an angle, so the gate still runs (the spacing-free fallback).

**Thresholds** (:class:`Limits`) are deliberately generous: they must pass every real adult spine, including
degenerate ones (collapsed discs, wedged bodies, listhesis, flexion and extension), and fail only what cannot be
a spine. Sources for the normal ranges, widened by at least 30 % either way and by a further 20 % for a wrong
magnification when given in mm:

* C3-C7 body sagittal depth 14-19 mm and height 11-16 mm, height/depth 0.7-1.0 (Panjabi et al. 1991, *Spine*
  16:861, quantitative 3-D anatomy of C2-C7; Tominaga et al. 1995 and Gilad & Nissan 1986, radiographic
  morphometry); neighbouring bodies differ by < 15 % (same sources) -> limits 8-30 mm, 5.5-26 mm, 0.35-1.6,
  neighbour ratio 0.6-1.65 (height) / 0.7-1.45 (depth).
* C2: the body below the dens base (the corners this project and paper 002 annotate: the "upper margin of C2"
  is the dens base) is 15-24 mm tall against 11-16 mm for C3 (Gilad & Nissan 1986; Nucci et al. 1995, axis
  morphometry), i.e. 1.1-1.7 x C3, and taller than C7 (14-16 mm) -> ``c2_height_ratio``: C2 >= 1.07 x the mean
  height of C3-C7, <= 3.0 (a corner put on the dens tip). This is the check that sees a chain shifted down by
  one vertebra (then "C2" is C3 and "C7" is T1, the tallest of the lower bodies: the ratio drops to ~1.0). It
  is the least generous limit: on renderer A, whose C2 is only ~1.2 x C3, about 1.5 % of true views fail it.
* Disc height 3.5-7 mm, anterior up to 9 mm in extension (Frobin et al. 2002, *Clin Biomech* 17:21,
  radiographic disc height C2-C7) -> a disc taller than 0.9 x its bodies (or 14 mm) means a level is missing;
  endplates may touch in a collapsed disc but not overlap by more than 1.5 mm or 15 % of the body height.
* Segmental angle within +-20 deg across flexion-extension (Frobin 2002; Wu et al. 2007 segmental ROM 10-18
  deg) -> successive body axes differ by at most 32 deg, successive steps of the centre chain by at most 40 deg.
* Translation of one body on the next < 3.5 mm is normal, 3.5 mm unstable (White & Panjabi); more than half the
  body depth (grade II listhesis) is beyond what this gate lets through.
* Canal sagittal diameter 14-18 mm, stenotic below 10-12 mm; Torg-Pavlov ratio 0.75-1.2 (Pavlov et al. 1987,
  *Radiology* 164:771) -> 5-30 mm and 0.3-1.8 x the body depth. A failed canal check gates only what uses the
  spinolaminar points (SDVC, Pavlov ratio, canal stenosis, cord compression).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.vocabulary import VERTEBRAE

__all__ = ["CANAL_KEYS", "Limits", "Plausibility", "check_view"]

CANAL_KEYS: frozenset[str] = frozenset({"sdvc", "pavlov_ratio"})
"""Measurement keys that use the spinolaminar points (gated by the canal checks as well as the body checks)."""

_AS, _AI, _PS, _PI = 0, 1, 2, 3


@dataclass(frozen=True)
class Limits:
    """The gate's thresholds (mm, deg, ratios); see the module docstring for their sources."""

    depth_mm: tuple[float, float] = (8.0, 30.0)
    height_mm: tuple[float, float] = (5.5, 26.0)
    c2_height_mm: tuple[float, float] = (8.0, 45.0)
    height_depth: tuple[float, float] = (0.35, 1.6)
    c2_height_depth: tuple[float, float] = (0.55, 2.8)
    neighbour_height: tuple[float, float] = (0.6, 1.65)
    neighbour_depth: tuple[float, float] = (0.7, 1.45)
    c2_height_ratio: tuple[float, float] = (1.07, 3.0)
    """C2 height / mean height of C3-C7."""
    step_min: float = 0.55
    """Centre-to-centre step along the chain / mean height of the two bodies: below this, two levels share a body."""
    overlap: float = 0.15
    """Intersection area / smaller body area above this: the two bodies overlap."""
    disc_max: float = 0.9
    """Disc height / mean height of its two bodies above this: a level is missing (a vertebra skipped)."""
    disc_max_mm: float = 14.0
    disc_min: float = 0.15
    """Endplate overlap (negative disc height) / mean body height beyond this (and beyond ``disc_min_mm``)."""
    disc_min_mm: float = 1.5
    kink_deg: float = 32.0
    """Largest angle between successive body axes."""
    chain_turn_deg: float = 40.0
    """Largest turn between successive centre-to-centre steps."""
    wall_angle_deg: tuple[float, float] = (50.0, 130.0)
    """Angle between a body's cranio-caudal axis and its anterior direction."""
    slip: float = 0.5
    """Translation of a body on the next / mean depth above this."""
    canal_mm: tuple[float, float] = (5.0, 30.0)
    canal_depth: tuple[float, float] = (0.3, 1.8)
    outside_margin: float = 0.02
    """A corner further than this fraction of the image size outside the image fails the view."""


@dataclass(frozen=True)
class Plausibility:
    """The gate's verdict on one view: ``failures`` name the failed body/chain checks, ``canal_failures`` the
    failed canal checks (they gate only the measurements of :data:`CANAL_KEYS`)."""

    failures: tuple[str, ...] = ()
    canal_failures: tuple[str, ...] = ()
    calibrated: bool = True
    """False when the mm checks were skipped (no pixel spacing)."""
    metrics: dict[str, list[float]] = field(default_factory=dict, compare=False)
    """Per-body heights/depths (mm or px), disc heights, angles: what the checks looked at."""

    @property
    def passed(self) -> bool:
        """True when the bodies and the chain are plausible (the canal may still have failed)."""
        return not self.failures

    @property
    def canal_passed(self) -> bool:
        return not self.failures and not self.canal_failures

    @property
    def reason(self) -> str:
        """``"implausible anatomy: <first failures>"`` ('' when passed)."""
        return _reason(self.failures)

    @property
    def canal_reason(self) -> str:
        return _reason(self.failures + self.canal_failures)

    def reason_for(self, key: str) -> str:
        """Why measurement ``key`` may not be reported ('' when it may)."""
        return self.canal_reason if key in CANAL_KEYS else self.reason


def _reason(failures: tuple[str, ...]) -> str:
    if not failures:
        return ""
    more = f" (+{len(failures) - 2} more)" if len(failures) > 2 else ""
    return "implausible anatomy: " + "; ".join(failures[:2]) + more


# --------------------------------------------------------------------------------------------- geometry
def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle between two vectors, deg."""
    return float(np.degrees(np.arctan2(abs(_cross(u, v)), float(u @ v))))


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    signed = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return poly if signed > 0 else poly[::-1]


def _clip(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon ``subject`` inside the convex polygon ``clip`` (both CCW)."""
    out = [p for p in subject]
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        edge = b - a
        inp, out = out, []
        if not inp:
            break
        for j in range(len(inp)):
            cur, prev = inp[j], inp[j - 1]
            cin, pin = _cross(edge, cur - a) >= 0, _cross(edge, prev - a) >= 0
            if cin != pin:
                d = cur - prev
                den = _cross(edge, d)
                if den != 0:
                    t = _cross(edge, a - prev) / den
                    out.append(prev + t * d)
            if cin:
                out.append(cur)
    return np.array(out) if len(out) >= 3 else np.zeros((0, 2))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of two convex quadrilaterals / the smaller area."""
    inter = _clip(_ccw(a), _ccw(b))
    small = min(_area(a), _area(b))
    return _area(inter) / small if len(inter) and small > 0 else 0.0


def _convex(quad: np.ndarray) -> bool:
    """True when the outline AS, AI, PI, PS is a simple convex quadrilateral (no crossing endplates or walls)."""
    edges = np.roll(quad, -1, axis=0) - quad
    turns = _cross(edges, np.roll(edges, -1, axis=0))
    return bool(np.all(turns > 0) or np.all(turns < 0))


def _outline(c: np.ndarray) -> np.ndarray:
    """Corners (AS, AI, PS, PI) -> outline in drawing order AS, AI, PI, PS."""
    return c[[_AS, _AI, _PI, _PS]]


def _within(v: float, lim: tuple[float, float]) -> bool:
    return lim[0] <= v <= lim[1]


# --------------------------------------------------------------------------------------------- the gate
def check_view(points: np.ndarray, spacing_mm: Sequence[float] | None = None, *,
               shape: tuple[int, int] | None = None, limits: Limits = Limits()) -> Plausibility:
    """Run every check on one view's keypoints; see the module docstring.

    ``points`` (30, 2) px; ``spacing_mm`` (row, col) mm/px at the patient plane, or None (ratios only);
    ``shape`` (rows, cols) of the image, to refuse bodies predicted outside it."""
    lim = limits
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (30, 2):
        return Plausibility(("keypoints are not the 30 points of the model",), calibrated=spacing_mm is not None)
    calibrated = spacing_mm is not None
    scale = np.array([float(spacing_mm[1]), float(spacing_mm[0])]) if calibrated else np.ones(2)  # type: ignore[index]
    unit = "mm" if calibrated else "px"
    fails: list[str] = []
    corners_px = pts[:24].reshape(6, 4, 2)
    missing = [VERTEBRAE[i] for i in range(6) if not np.all(np.isfinite(corners_px[i]))]
    if missing:
        return Plausibility((f"{', '.join(missing)} not found (keypoints missing)",), calibrated=calibrated)
    if shape is not None:
        rows, cols = shape
        mx, my = lim.outside_margin * cols, lim.outside_margin * rows
        for i in range(6):
            x, y = corners_px[i, :, 0], corners_px[i, :, 1]
            if np.any((x < -0.5 - mx) | (x > cols - 0.5 + mx) | (y < -0.5 - my) | (y > rows - 0.5 + my)):
                fails.append(f"{VERTEBRAE[i]} lies outside the image")
    c = corners_px * scale
    sup = 0.5 * (c[:, _AS] + c[:, _PS])
    inf = 0.5 * (c[:, _AI] + c[:, _PI])
    axis = inf - sup  # cranial -> caudal, per body
    ant = 0.5 * (c[:, _AS] + c[:, _AI]) - 0.5 * (c[:, _PS] + c[:, _PI])
    height = 0.5 * (np.hypot(*(c[:, _AS] - c[:, _AI]).T) + np.hypot(*(c[:, _PS] - c[:, _PI]).T))
    depth = 0.5 * (np.hypot(*(c[:, _AS] - c[:, _PS]).T) + np.hypot(*(c[:, _AI] - c[:, _PI]).T))
    centre = c.mean(axis=1)
    outlines = [_outline(c[i]) for i in range(6)]
    metrics: dict[str, list[float]] = {f"height_{unit}": height.tolist(), f"depth_{unit}": depth.tolist()}

    # each body on its own: a simple convex outline, walls roughly across the endplates, consistent facing
    bad_shape = set()
    for i, name in enumerate(VERTEBRAE):
        if min(height[i], depth[i]) <= 1e-6 or not _convex(outlines[i]):
            fails.append(f"{name} outline is twisted (endplates or walls cross)")
            bad_shape.add(i)
            continue
        wa = _angle(axis[i], ant[i])
        if not _within(wa, lim.wall_angle_deg):
            fails.append(f"{name} is skewed ({wa:.0f} deg between its walls and endplates)")
            bad_shape.add(i)
    facing = np.sign(_cross(axis, ant))
    if not bad_shape and len(set(facing.tolist())) > 1:
        major = 1.0 if (facing > 0).sum() >= 3 else -1.0
        odd = [VERTEBRAE[i] for i in range(6) if facing[i] != major]
        fails.append(f"{', '.join(odd)} faces the other way (anterior and posterior swapped)")
    if bad_shape or len(set(facing.tolist())) > 1:
        return Plausibility(tuple(fails), calibrated=calibrated, metrics=metrics)

    # sizes: absolute (mm) and relative to the body itself and its neighbours
    for i, name in enumerate(VERTEBRAE):
        hl, dl = (lim.c2_height_mm, lim.c2_height_depth) if i == 0 else (lim.height_mm, lim.height_depth)
        if calibrated and not _within(height[i], hl):
            fails.append(f"{name} height {height[i]:.1f} mm outside {hl[0]:g}-{hl[1]:g} mm")
        if calibrated and not _within(depth[i], lim.depth_mm):
            fails.append(f"{name} depth {depth[i]:.1f} mm outside {lim.depth_mm[0]:g}-{lim.depth_mm[1]:g} mm")
        r = height[i] / depth[i]
        if not _within(r, dl):
            fails.append(f"{name} height/depth {r:.2f} outside {dl[0]:g}-{dl[1]:g}")
    for i in range(1, 5):
        a, b = VERTEBRAE[i], VERTEBRAE[i + 1]
        rh, rd = height[i + 1] / height[i], depth[i + 1] / depth[i]
        if not _within(rh, lim.neighbour_height):
            fails.append(f"{b} height {rh:.2f} x {a}'s")
        if not _within(rd, lim.neighbour_depth):
            fails.append(f"{b} depth {rd:.2f} x {a}'s")
    rd2 = depth[0] / depth[1]
    if not _within(rd2, lim.neighbour_depth):
        fails.append(f"C2 depth {rd2:.2f} x C3's")
    c2r = height[0] / float(np.mean(height[1:]))
    metrics["c2_height_ratio"] = [float(c2r)]
    if c2r < lim.c2_height_ratio[0]:
        fails.append(f"C2 not taller than C3-C7 (height ratio {c2r:.2f} < {lim.c2_height_ratio[0]:g}; "
                     "levels shifted by one?)")
    elif c2r > lim.c2_height_ratio[1]:
        fails.append(f"C2 height {c2r:.2f} x C3-C7's (over {lim.c2_height_ratio[1]:g})")

    # the chain: order, no two bodies on one vertebra, discs, smoothness
    discs, kinks = [], []
    for i in range(5):
        a, b = VERTEBRAE[i], VERTEBRAE[i + 1]
        u = axis[i] / np.hypot(*axis[i]) + axis[i + 1] / np.hypot(*axis[i + 1])
        u /= max(float(np.hypot(*u)), 1e-9)
        h = 0.5 * (height[i] + height[i + 1])
        along = float((centre[i + 1] - centre[i]) @ u)
        ov = _overlap(outlines[i], outlines[i + 1])
        if ov > lim.overlap or 0 < along < lim.step_min * h:
            fails.append(f"{a} and {b} overlap ({ov:.0%} of the smaller body; two levels on one vertebra?)")
            continue
        if along <= 0:
            fails.append(f"{a} and {b} out of order (swapped levels?)")
            continue
        gap_a = float((c[i + 1, _AS] - c[i, _AI]) @ u)
        gap_p = float((c[i + 1, _PS] - c[i, _PI]) @ u)
        discs.append(0.5 * (gap_a + gap_p))
        lo = min(gap_a, gap_p)
        if lo < -max(lim.disc_min * h, lim.disc_min_mm if calibrated else 0.0):
            fails.append(f"endplates of {a} and {b} cross ({lo:.1f} {unit})")
        hi = max(gap_a, gap_p)
        if hi > lim.disc_max * h or (calibrated and hi > lim.disc_max_mm):
            fails.append(f"disc space {a}-{b} too wide ({hi:.1f} {unit}; a level missing?)")
        k = _angle(axis[i], axis[i + 1])
        kinks.append(k)
        if k > lim.kink_deg:
            fails.append(f"kink of {k:.0f} deg between {a} and {b}")
        ant_u = (ant[i] + ant[i + 1]) / np.hypot(*(ant[i] + ant[i + 1]))
        slip = abs(float((centre[i] - centre[i + 1]) @ ant_u)) / (0.5 * (depth[i] + depth[i + 1]))
        if slip > lim.slip:
            fails.append(f"{a} translated on {b} by {slip:.0%} of the body depth")
    for i in range(4):
        s1, s2 = centre[i + 1] - centre[i], centre[i + 2] - centre[i + 1]
        t = _angle(s1, s2)
        if t > lim.chain_turn_deg:
            fails.append(f"the chain turns {t:.0f} deg at {VERTEBRAE[i + 1]}")
    for i in range(4):  # bodies two apart must not overlap either (a level folded back)
        ov = _overlap(outlines[i], outlines[i + 2])
        if ov > lim.overlap:
            fails.append(f"{VERTEBRAE[i]} and {VERTEBRAE[i + 2]} overlap ({ov:.0%})")
    metrics[f"disc_{unit}"] = discs
    metrics["kink_deg"] = kinks
    return Plausibility(tuple(dict.fromkeys(fails)), _canal(pts, scale, c, ant, depth, calibrated, lim),
                        calibrated, metrics)


def _canal(pts: np.ndarray, scale: np.ndarray, c: np.ndarray, ant: np.ndarray, depth: np.ndarray,
           calibrated: bool, lim: Limits) -> tuple[str, ...]:
    """The spinolaminar points: behind each posterior wall at a plausible canal depth."""
    sl = pts[24:30] * scale
    fails = []
    for i, name in enumerate(VERTEBRAE):
        if not np.all(np.isfinite(sl[i])):
            continue  # a missing spinolaminar point only makes its own measurements not measurable
        wall_mid = 0.5 * (c[i, _PS] + c[i, _PI])
        d = float((wall_mid - sl[i]) @ (ant[i] / np.hypot(*ant[i])))
        if d <= 0:
            fails.append(f"{name} spinolaminar point in front of the posterior wall")
            continue
        if calibrated and not _within(d, lim.canal_mm):
            fails.append(f"{name} canal depth {d:.1f} mm outside {lim.canal_mm[0]:g}-{lim.canal_mm[1]:g} mm")
        elif not _within(d / depth[i], lim.canal_depth):
            fails.append(f"{name} canal depth {d / depth[i]:.2f} x the body depth")
    return tuple(fails)
