"""The anatomy of the X-ray phantom: the patient's parameters and the vertebral chain of one view.

Anatomy is in millimetres at the patient (mid-sagittal) plane, in an *anatomical* frame ``(a, c)``: ``a`` points
anterior, ``c`` points cranial. The vertebral chain is built from C7 upwards: each vertebral body is a
quadrilateral (depth, posterior height, wedge angle, posterior-wall tilt) and each disc a wedge (mid height, disc
angle ``alpha``, sagittal translation ``tau`` along the lower superior endplate). Angles are *lordosis-positive*: a
positive angle turns a vertebra's anterior end towards cranial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.vocabulary import View


def unit_vector(theta_deg: float | np.ndarray) -> np.ndarray:
    """Unit vector(s) at angle ``theta`` (deg) in the anatomical frame, counter-clockwise from anterior."""
    t = np.radians(theta_deg)
    return np.stack([np.cos(t), np.sin(t)], axis=-1)


# ------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class ViewParams:
    """What changes between the neutral, flexion and extension radiographs of one patient."""

    view: View
    c7_angle_deg: float
    """Angle of the C7 inferior endplate (lordosis-positive; negative = anterior end lower, the usual case)."""
    disc_angle_deg: tuple[float, ...]
    """Disc angle per segment C2-C3..C6-C7 (upper inferior endplate vs lower superior endplate), deg."""
    translation_mm: tuple[float, ...]
    """Sagittal translation of the upper vertebra along the lower superior endplate (anterior +), mm."""
    rotation_deg: float
    """In-plane rotation of the whole image content (image-counter-clockwise as seen on screen), deg."""
    anchor_px: tuple[float, float]
    """Image position (x, y) of the C7 postero-inferior corner, in output pixels."""


@dataclass(frozen=True)
class ImageParams:
    """Acquisition and display parameters of one view."""

    shape: tuple[int, int]
    imager_pixel_spacing_mm: float
    magnification: float
    photometric: str
    bits_stored: int
    noise: float
    blur_mm: float
    gamma: float
    shoulder_top_mm: float
    """Height of the shoulder shadow top above the C7 postero-inferior corner (negative = below), mm."""
    shoulder_density: float
    collimation_px: tuple[int, int, int, int]
    """Collimated (unexposed) border widths: left, top, right, bottom, output pixels."""
    text: bool
    window: tuple[float, float]


@dataclass(frozen=True)
class PatientParams:
    """The anatomy of one synthetic patient (mm, deg) and the acquisition of its views."""

    seed: int
    facing: int
    """+1: anterior is image right (+x); -1: anterior is image left."""
    curve_type: str
    """Construction intent: lordotic / straight / kyphotic / s_shaped (the measured class may differ)."""
    body_depth_mm: tuple[float, ...]
    """Inferior endplate depth C2..C7."""
    body_height_mm: tuple[float, ...]
    """Posterior wall height C2..C7 (C2: inferior endplate to the dens base)."""
    wedge_deg: tuple[float, ...]
    """Superior vs inferior endplate angle per vertebra C2..C7 (lordosis-positive)."""
    wall_tilt_deg: tuple[float, ...]
    """Tilt of the posterior wall from the inferior endplate normal, C2..C7 (lordosis-positive)."""
    disc_height_mm: tuple[float, ...]
    """Mid disc height per segment C2-C3..C6-C7."""
    pavlov: tuple[float, ...]
    """Pavlov ratio C2..C7 (canal depth = ratio x SDVB)."""
    osteophytes: tuple[bool, ...]
    """Anterior osteophytes per vertebra C2..C7."""
    spinous_length_mm: tuple[float, ...]
    views: dict[View, ViewParams] = field(default_factory=dict)
    images: dict[View, ImageParams] = field(default_factory=dict)
    posterior_osteophyte_mm: tuple[float, ...] = ()
    """Opt-in (``anatomy``): posterior endplate osteophyte per segment C2-C3..C6-C7 (mm into the canal), drawn
    as spurs at the upper vertebra's postero-inferior and the lower one's postero-superior corner. Empty: none."""
    calcified_herniation_mm: tuple[float, ...] = ()
    """Opt-in (``anatomy``): posterior extent (mm) of a calcified ("hard") disc herniation / disc-osteophyte
    complex per segment, drawn as a faint density behind the disc space; 0 = none or a soft (invisible) one."""


# -------------------------------------------------------------------------------------------- anatomy
@dataclass
class Chain:
    """The vertebral chain of one view in the anatomical frame (mm; a anterior, c cranial)."""

    corners: np.ndarray
    """(6, 4, 2): C2..C7 x (AS, AI, PS, PI)."""
    phi: np.ndarray
    """(6,) inferior endplate angle per vertebra, deg."""
    spinolaminar: np.ndarray
    """(6, 2)."""
    c2_centre: np.ndarray
    posterior_disc_mm: np.ndarray
    """(5,) posterior disc height per segment."""
    t1: np.ndarray
    """(4, 2) T1 corners AS, AI, PS, PI (only the top of T1 is shown)."""


def _vertebra(pi: np.ndarray, phi: float, depth: float, height: float, wedge: float, tilt: float) -> np.ndarray:
    """Corners AS, AI, PS, PI of one body from its PI corner and inferior endplate angle ``phi`` (deg)."""
    ai = pi + depth * unit_vector(phi)
    ps = pi + height * unit_vector(phi + 90.0 + tilt)
    # superior endplate at phi + wedge, anterior corner where it meets a slightly concave anterior wall
    as_ = ps + depth * 1.01 * unit_vector(phi + wedge)
    return np.stack([as_, ai, ps, pi])


def build_chain(p: PatientParams, alpha: tuple[float, ...], tau: tuple[float, ...], c7_angle: float) -> Chain:
    """The chain of one view: disc angles ``alpha`` and translations ``tau`` per segment, C7 endplate angle (deg)."""
    corners = np.zeros((6, 4, 2))
    phi = np.zeros(6)
    post_disc = np.zeros(5)
    phi[5] = c7_angle
    corners[5] = _vertebra(np.zeros(2), phi[5], p.body_depth_mm[5], p.body_height_mm[5], p.wedge_deg[5],
                           p.wall_tilt_deg[5])
    for upper in range(4, -1, -1):
        lower = upper + 1
        sup = phi[lower] + p.wedge_deg[lower]
        a = alpha[upper]
        phi[upper] = sup + a
        h_p = p.disc_height_mm[upper] - 0.5 * p.body_depth_mm[lower] * math.tan(math.radians(a))
        post_disc[upper] = h_p
        pi_u = corners[lower, 2] + h_p * unit_vector(sup + 90.0) + tau[upper] * unit_vector(sup)
        corners[upper] = _vertebra(pi_u, phi[upper], p.body_depth_mm[upper], p.body_height_mm[upper],
                                   p.wedge_deg[upper], p.wall_tilt_deg[upper])
    # spinolaminar points: posterior-wall midpoint moved posteriorly (normal to the wall) by SDVC
    sl = np.zeros((6, 2))
    for i in range(6):
        sdvb = body_sdvb(p, i)
        pm = 0.5 * (corners[i, 2] + corners[i, 3])
        sl[i] = pm - p.pavlov[i] * sdvb * unit_vector(phi[i] + p.wall_tilt_deg[i])
    # C2 centre: intersection of the diagonals AS-PI and AI-PS (solved in the anatomical frame)
    as_, ai, ps, pi = corners[0]
    m = np.column_stack([pi - as_, -(ps - ai)])
    st = np.linalg.solve(m, ai - as_)
    c2c = as_ + st[0] * (pi - as_)
    # T1 below C7 (disc 5.5 mm, small lordotic disc angle)
    sup7_pi = corners[5, 3]
    t1_phi = phi[5] - 2.0
    t1_ps = sup7_pi - 5.0 * unit_vector(t1_phi + 90.0)
    t1_as = t1_ps + p.body_depth_mm[5] * 1.05 * unit_vector(t1_phi)
    t1_pi = t1_ps - 14.5 * unit_vector(t1_phi + 90.0)
    t1_ai = t1_pi + p.body_depth_mm[5] * 1.05 * unit_vector(t1_phi + 1.0)
    return Chain(corners, phi, sl, c2c, post_disc, np.stack([t1_as, t1_ai, t1_ps, t1_pi]))


def body_sdvb(p: PatientParams, i: int) -> float:
    """SDVB of vertebra ``i`` from its construction (distance of the anterior and posterior wall midpoints)."""
    d, h, w, t = p.body_depth_mm[i], p.body_height_mm[i], p.wedge_deg[i], p.wall_tilt_deg[i]
    # local frame: PI at 0, inferior endplate along +a
    ai = np.array([d, 0.0])
    ps = h * np.array([math.cos(math.radians(90 + t)), math.sin(math.radians(90 + t))])
    as_ = ps + 1.01 * d * np.array([math.cos(math.radians(w)), math.sin(math.radians(w))])
    am = 0.5 * (ai + as_)
    pm = 0.5 * ps
    return float(math.hypot(*(am - pm)))

