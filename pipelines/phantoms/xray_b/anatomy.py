"""Renderer B's anatomy: a cervical spine parametrised top-down, from C2 to T1, by body proportions and disc wedges.

Written independently of renderer A (``pipelines.phantoms.xray``): its own parametrisation, its own distributions.

Frame: millimetres at the mid-sagittal plane, ``(a, c)`` with ``a`` anterior and ``c`` cranial. Each vertebral body
is built in its own frame (origin at the postero-inferior corner, x along the inferior endplate towards anterior,
y cranial) from an inferior-endplate depth, a superior-endplate depth, an anterior and a posterior height and a
posterior-wall lean. The chain hangs from C2: each disc is given by its posterior height (mm, along the upper
inferior endplate's normal), its wedge angle (deg, *lordosis positive*: the disc opens anteriorly) and the sagittal
translation of the upper body on the lower one (mm, anterior positive). The whole chain is then turned so that T1's
superior endplate has the sampled T1 slope (deg, its anterior end down), which sets the sagittal balance.

Keypoint definitions (the same semantics as ``pipelines.vocabulary.KEYPOINT_NAMES`` and paper 002): the four body
corners where the endplates meet the walls, C2's superior corners at the dens base; the spinolaminar point of each
vertebra is the point of the spinolaminar line nearest to the posterior-wall midpoint, i.e. the midpoint moved
posteriorly along the wall's normal by the canal depth (SDVC).

Distributions (adult population figures, see ``pipelines.xray.plausibility`` for the sources): C3 body depth
~N(15.8, 1.1) mm growing 0.1-0.7 mm per level caudally; C3 anterior height ~N(13.8, 0.9) mm; C2 body (to the dens
base) 1.22-1.6 x C3; T1 taller than C7 by 5-20 %; posterior disc height 2.8-4.6 mm, degenerate discs 25-65 % of
that; C2-C7 lordosis from a mixture (lordotic ~N(20, 9) deg, straight, kyphotic, sigmoid) spread over the segments
with more at C4-C6; segmental range of motion ~N(10, 13, 16, 15, 11) deg (Wu et al. 2007); canal depth ~N(16, 1.4)
mm, narrow (10-13 mm) in 15 % of patients; T1 slope = 0.55 x C2-C7 lordosis + N(10, 5) deg (after Lee et al. 2012; gives C2-C7 SVA ~20 +- 10 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.vocabulary import View

LEVELS: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1")
"""The bodies of the chain (C2-C7 are measured; T1 is drawn and used by the shift-by-one tests)."""


def rot(deg: float) -> np.ndarray:
    """2x2 counter-clockwise rotation by ``deg`` (anatomical frame: a right, c up)."""
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


@dataclass(frozen=True)
class BodyShape:
    """One vertebral body in its own frame (mm): origin at the postero-inferior corner, x anterior, y cranial."""

    depth_inf: float
    depth_sup: float
    h_ant: float
    h_post: float
    lean: float
    """Posterior wall lean (x of the postero-superior corner), mm."""

    def corners(self) -> np.ndarray:
        """(4, 2) AS, AI, PS, PI in the body frame."""
        ps = np.array([self.lean, self.h_post])
        ai = np.array([self.depth_inf, 0.0])
        # the superior endplate leaves PS at the angle that gives the anterior height
        dy = self.h_ant - self.h_post
        dx = math.sqrt(max(self.depth_sup ** 2 - dy ** 2, 1.0))
        as_ = ps + np.array([dx, dy])
        return np.stack([as_, ai, ps, np.zeros(2)])


@dataclass(frozen=True)
class Pose:
    """What differs between the neutral, flexion and extension radiographs: disc wedges, slips, T1 slope."""

    view: View
    disc_wedge_deg: tuple[float, ...]
    """C2-C3 .. C7-T1 (6 values), lordosis positive."""
    slip_mm: tuple[float, ...]
    """Translation of the upper body on the lower, C2-C3 .. C7-T1, anterior positive."""
    t1_slope_deg: float


@dataclass(frozen=True)
class SpineB:
    """One patient of renderer B: the bodies C2-T1, the discs, the canal, the posterior elements."""

    seed: int
    bodies: tuple[BodyShape, ...]
    """C2..T1 (7)."""
    disc_post_mm: tuple[float, ...]
    """Posterior disc height C2-C3 .. C7-T1 (6)."""
    canal_mm: tuple[float, ...]
    """Canal depth (posterior-wall midpoint to the spinolaminar line) C2..T1."""
    spinous_mm: tuple[float, ...]
    """Length of the lamina + spinous process C2..T1."""
    spinous_tilt_deg: tuple[float, ...]
    dens_height_mm: float
    bone_density: float
    """Bone attenuation factor (1 = normal adult; < 1 osteopenic)."""
    lateral_width_mm: float
    """Transverse width of the bodies (path length of the X-rays through them)."""
    neck_width_mm: float
    """Transverse width of the neck (soft-tissue path length)."""
    osteophytes_mm: tuple[float, ...]
    """Anterior osteophyte length at each disc C2-C3 .. C7-T1 (0 = none)."""
    poses: dict[View, Pose] = field(default_factory=dict)


@dataclass(frozen=True)
class ChainB:
    """The chain of one pose in the anatomical frame (mm)."""

    corners: np.ndarray
    """(7, 4, 2) C2..T1 x (AS, AI, PS, PI)."""
    frames: np.ndarray
    """(7, 3, 2): per body its origin (PI) and its x and y unit axes."""
    spinolaminar: np.ndarray
    """(7, 2)."""

    def to_world(self, i: int, local: np.ndarray) -> np.ndarray:
        """Body ``i``'s frame -> anatomical mm."""
        o, ex, ey = self.frames[i]
        local = np.asarray(local, dtype=float)
        return o + local[..., :1] * ex + local[..., 1:2] * ey

    def keypoints(self) -> np.ndarray:
        """(30, 2) anatomical mm in ``KEYPOINT_NAMES`` order (C2-C7 corners, then C2-C7 spinolaminar points)."""
        return np.concatenate([self.corners[:6].reshape(24, 2), self.spinolaminar[:6]])


def build_chain(s: SpineB, pose: Pose) -> ChainB:
    """Hang the bodies from C2 with the pose's disc wedges and slips, then turn the chain to the T1 slope."""
    shapes = [b.corners() for b in s.bodies]
    frames = np.zeros((7, 3, 2))
    theta = 0.0  # world angle of the current body's inferior endplate
    origin = np.zeros(2)
    for i in range(7):
        ex = np.array([math.cos(math.radians(theta)), math.sin(math.radians(theta))])
        frames[i] = (origin, ex, np.array([-ex[1], ex[0]]))
        if i == 6:
            break
        # the lower body's superior endplate: the upper inferior endplate turned by the wedge (opens anteriorly)
        lower = shapes[i + 1]
        sup_dir = lower[0] - lower[2]
        beta = math.degrees(math.atan2(sup_dir[1], sup_dir[0]))
        phi = theta - pose.disc_wedge_deg[i] - beta
        ps_world = origin - s.disc_post_mm[i] * frames[i, 2] - pose.slip_mm[i] * ex
        origin = ps_world - rot(phi) @ lower[2]
        theta = phi
    corners = np.stack([frames[i, 0] + shapes[i] @ np.stack([frames[i, 1], frames[i, 2]]) for i in range(7)])
    # turn the chain about T1's postero-superior corner so T1's superior endplate has the T1 slope
    t1 = corners[6]
    d = t1[0] - t1[2]
    turn = -pose.t1_slope_deg - math.degrees(math.atan2(d[1], d[0]))
    r = rot(turn)
    pivot = t1[2].copy()
    corners = (corners - pivot) @ r.T
    frames = np.stack([np.stack([(f[0] - pivot) @ r.T, f[1] @ r.T, f[2] @ r.T]) for f in frames])
    sl = np.zeros((7, 2))
    for i in range(7):
        as_, ai, ps, pi = corners[i]
        wall = ps - pi
        n_ant = np.array([wall[1], -wall[0]]) / np.hypot(*wall)  # wall rotated clockwise: anterior
        if n_ant @ (ai - pi) < 0:
            n_ant = -n_ant
        sl[i] = 0.5 * (ps + pi) - s.canal_mm[i] * n_ant
    return ChainB(corners, frames, sl)


# ------------------------------------------------------------------------------------------------ sampling
_ROM_MEAN = (10.0, 13.0, 16.0, 15.0, 11.0, 6.0)
"""Segmental flexion-extension range of motion C2-C3 .. C7-T1, deg (Wu et al. 2007, Anderst et al. 2015)."""


def sample_spine(rng: np.random.Generator, seed: int, views: tuple[View, ...]) -> SpineB:
    """One patient of renderer B and its poses (see the module docstring for the distributions)."""
    size = float(np.exp(rng.normal(0.0, 0.075)))
    d3 = rng.normal(15.8, 1.1) * size
    growth = rng.uniform(0.1, 0.7)
    h3 = rng.normal(13.8, 0.9) * size
    height_profile = np.array([1.0, 0.985, 0.975, 0.99, 1.05]) * rng.normal(1.0, 0.025, 5)
    bodies = []
    for i in range(7):
        if i == 0:
            depth = d3 * rng.uniform(0.96, 1.08)
            h_ant = h3 * rng.uniform(1.22, 1.6)
        elif i == 6:
            depth = bodies[5].depth_inf * rng.uniform(1.02, 1.1)
            h_ant = bodies[5].h_ant * rng.uniform(1.05, 1.2)
        else:
            depth = (d3 + growth * (i - 1)) * rng.normal(1.0, 0.02)
            h_ant = h3 * height_profile[i - 1]
        h_post = h_ant * (1.0 + rng.normal(0.03, 0.035))
        bodies.append(BodyShape(depth_inf=float(depth), depth_sup=float(depth * rng.uniform(0.93, 1.0)),
                                h_ant=float(h_ant), h_post=float(h_post), lean=float(rng.normal(0.0, 0.6))))
    disc = rng.uniform(2.8, 4.6) * size * rng.normal(1.0, 0.07, 6)
    disc[5] *= 0.9
    degenerate = rng.random(6) < np.array([0.05, 0.12, 0.25, 0.4, 0.3, 0.08])
    disc = np.where(degenerate, disc * rng.uniform(0.25, 0.65, 6), disc)
    osteo = np.where(degenerate & (rng.random(6) < 0.8), rng.uniform(1.0, 4.0, 6), 0.0)
    narrow = rng.random() < 0.15
    canal = rng.normal(16.0, 1.4, 7) * size if not narrow else rng.uniform(10.0, 13.0, 7) * size
    canal[0] += rng.uniform(1.0, 3.0)  # the canal widens at C2
    spinous = np.array([30.0, 20.0, 19.0, 21.0, 25.0, 32.0, 34.0]) * size * rng.normal(1.0, 0.08, 7)
    tilt = np.array([25.0, 30.0, 32.0, 35.0, 35.0, 30.0, 35.0]) + rng.normal(0.0, 5.0, 7)

    # the neutral curve: a mixture of the shapes seen in adults, spread over the segments
    kind = rng.choice(4, p=[0.6, 0.18, 0.12, 0.1])
    weights = rng.dirichlet(np.array([2.0, 3.0, 4.0, 4.0, 3.0]) * 2.0)
    if kind == 0:
        lordosis = float(np.clip(rng.normal(20.0, 9.0), 6.0, 45.0))
    elif kind == 1:
        lordosis = rng.uniform(-5.0, 6.0)
    elif kind == 2:
        lordosis = rng.uniform(-25.0, -6.0)
    else:
        lordosis = 0.0
    # segment angle = disc wedge + the lower body's wedge (its superior endplate vs its inferior one)
    body_wedge = np.array([math.degrees(math.atan2(b.h_ant - b.h_post, b.depth_inf)) for b in bodies])
    seg = lordosis * weights
    if kind == 3:  # sigmoid: lordotic above, kyphotic below (or the reverse)
        sgn = 1.0 if rng.random() < 0.6 else -1.0
        seg = sgn * np.array([rng.uniform(3, 8), rng.uniform(2, 7), rng.uniform(-2, 2), -rng.uniform(2, 7),
                              -rng.uniform(2, 6)])
    wedge_n = np.append(seg - body_wedge[1:6], rng.normal(1.0, 1.5))
    slip_n = np.where(rng.random(6) < 0.1, rng.choice([-1.0, 1.0], 6) * rng.uniform(1.0, 3.0, 6),
                      rng.normal(0.0, 0.35, 6))
    rom = np.array(_ROM_MEAN) * np.clip(rng.normal(1.0, 0.25, 6), 0.4, 1.6) * np.where(degenerate, 0.5, 1.0)
    share = rng.uniform(0.4, 0.65, 6)
    cobb_n = float(wedge_n[:5].sum() + body_wedge[1:6].sum())
    # the T1 slope grows with the lordosis (T1 slope ~25 deg for C2-C7 lordosis ~15 deg: Lee et al. 2012)
    slope_n = float(np.clip(0.55 * cobb_n + rng.normal(10.0, 5.0), 0.0, 40.0))

    # flexion and extension: the segmental motion, limited so that C2-C7 stays within -40 .. +55 deg
    flex, ext = rom * share, rom * (1 - share)
    flex *= min(1.0, max(cobb_n + 40.0, 0.0) / max(float(flex[:5].sum()), 1e-6))
    ext *= min(1.0, max(55.0 - cobb_n, 0.0) / max(float(ext[:5].sum()), 1e-6))
    poses: dict[View, Pose] = {}
    for view in views:
        if view == View.NEUTRAL:
            w, sl, t1 = wedge_n, slip_n, slope_n
        elif view == View.FLEXION:
            w = wedge_n - flex
            sl = slip_n + flex * rng.uniform(0.06, 0.14, 6)
            t1 = slope_n + rng.uniform(-2.0, 4.0)
        else:
            w = wedge_n + ext
            sl = slip_n - ext * rng.uniform(0.04, 0.1, 6)
            t1 = slope_n - rng.uniform(-2.0, 4.0)
        # keep every disc open: both its heights at least 0.6 mm
        max_open = np.degrees(np.arctan((disc - 0.6) / np.array([b.depth_inf for b in bodies[:6]])))
        max_open = np.maximum(max_open, 0.5)
        w = np.clip(w, -max_open, 25.0)
        poses[view] = Pose(view, tuple(float(v) for v in w), tuple(float(v) for v in sl), float(t1))
    return SpineB(seed=seed, bodies=tuple(bodies), disc_post_mm=tuple(float(v) for v in disc),
                  canal_mm=tuple(float(v) for v in canal), spinous_mm=tuple(float(v) for v in spinous),
                  spinous_tilt_deg=tuple(float(v) for v in tilt),
                  dens_height_mm=float(rng.uniform(13.0, 17.0) * size),
                  bone_density=float(np.clip(rng.normal(1.0, 0.12), 0.65, 1.25)),
                  lateral_width_mm=float(rng.uniform(17.0, 24.0) * size),
                  neck_width_mm=float(rng.uniform(95.0, 135.0) * size),
                  osteophytes_mm=tuple(float(v) for v in osteo), poses=poses)
