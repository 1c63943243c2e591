"""Synthetic lateral cervical radiographs (neutral / flexion / extension) with exact ground truth.

The phantom is built in two steps:

1. **Anatomy** in millimetres at the patient (mid-sagittal) plane, in an *anatomical* frame ``(a, c)``:
   ``a`` points anterior, ``c`` points cranial. The vertebral chain is built from C7 upwards: each vertebral
   body is a quadrilateral (depth, posterior height, wedge angle, posterior-wall tilt) and each disc a wedge
   (mid height, disc angle ``alpha``, sagittal translation ``tau`` along the lower superior endplate).
   Angles are *lordosis-positive*: a positive angle turns a vertebra's anterior end towards cranial.
2. **Projection and rendering**: the anatomical frame is mapped to the image (``facing`` = +1 puts anterior
   at image right), rotated by a small in-plane angle, magnified by ``magnification`` onto a detector with
   ``imager_pixel_spacing_mm`` and rendered with vectorised polygon filling (PIL in bounding-box crops) into an
   attenuation map; a tone curve, quantum-like noise, blur, collimation and burned-in text follow.

Every true measurement is computed from the construction parameters (closed-form angle sums, the disc
placement formula), *not* with :mod:`pipelines.xray.geometry`, so tests comparing the two are not circular.
Distances are at the patient plane: ``pixel spacing at the patient = imager pixel spacing / magnification``.

Image coordinates: x right, y down, ``(0, 0)`` the centre of the top-left pixel (see ``pipelines.results``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pipelines.results import SEGMENTS, VERTEBRAE, Finding, Measurement, View
from pipelines.xray.geometry import CANAL_LEVELS, MEASUREMENT_NAMES

__all__ = [
    "PatientParams",
    "ViewParams",
    "PhantomView",
    "PhantomStudy",
    "generate_study",
    "generate_view",
    "write_study",
    "write_coco",
    "cli",
    "MEASUREMENT_NAMES",
]

DIFFICULTIES = ("easy", "realistic", "hard")
CURVE_TYPES = ("lordotic", "straight", "kyphotic", "s_shaped")


def _e(theta_deg: float | np.ndarray) -> np.ndarray:
    """Unit vector(s) at angle ``theta`` (deg) in the anatomical frame, counter-clockwise from anterior."""
    t = np.radians(theta_deg)
    return np.stack([np.cos(t), np.sin(t)], axis=-1)


# --------------------------------------------------------------------------------------------- parameters
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


# ---------------------------------------------------------------------------------------------- outputs
@dataclass
class PhantomView:
    """One rendered radiograph with its ground truth."""

    view: View
    pixels: np.ndarray
    """uint16 (rows, cols): the stored values (already inverted when MONOCHROME1)."""
    photometric: str
    bits_stored: int
    imager_pixel_spacing_mm: tuple[float, float]
    """(row, col) at the detector."""
    magnification: float
    """EstimatedRadiographicMagnificationFactor; patient-plane spacing = imager spacing / magnification."""
    keypoints: np.ndarray
    """(30, 2) float x, y in pixels, ``pipelines.results.KEYPOINT_NAMES`` order (true location, also when not visible)."""
    visible: np.ndarray
    """(30,) bool: False where the point is hidden (shoulders) or outside the exposed field."""
    vertebra_polygons: dict[str, np.ndarray]
    """"C2".."C7" -> (K, 2) x, y px outline of the vertebral body (C2 including the dens)."""
    canal_polygon: np.ndarray
    """(K, 2) x, y px outline of the canal between posterior walls and spinolaminar points C2-C7."""
    truth: list[Measurement]
    sop_instance_uid: str = ""

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(row, col) mm per pixel at the patient plane (what measurements use)."""
        r, c = self.imager_pixel_spacing_mm
        return (r / self.magnification, c / self.magnification)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass
class PhantomStudy:
    """One synthetic patient's lateral cervical study."""

    seed: int
    params: PatientParams
    views: dict[View, PhantomView]
    truth: list[Measurement]
    """Per-view truths of all views plus the flexion-extension differences (view None)."""
    findings: list[Finding]
    """Findings derived from the true measurements with the default thresholds."""
    study_uid: str = ""


# ------------------------------------------------------------------------------------------ sampling
def _sample_patient(rng: np.random.Generator, seed: int, views: tuple[View, ...], shape: tuple[int, int] | None,
                    difficulty: str, anatomy: dict | None = None) -> PatientParams:
    hard = difficulty == "hard"
    easy = difficulty == "easy"
    scale = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.18))
    depth = np.array([15.5, 15.0, 15.3, 15.8, 16.3, 16.8]) * scale * rng.normal(1.0, 0.03, 6)
    height = np.array([16.0, 13.2, 13.0, 12.8, 12.8, 13.6]) * scale * rng.normal(1.0, 0.04, 6)
    wedge = rng.normal(-1.0, 1.2, 6)
    wedge[0] = rng.normal(-4.0, 2.0)  # C2 top margin (dens base) is tilted
    wall_tilt = rng.normal(0.0, 2.0, 6)
    disc = np.array([4.2, 4.8, 5.2, 5.4, 5.2]) * scale * rng.normal(1.0, 0.06, 5)
    degenerate = rng.random(5) < np.array([0.05, 0.15, 0.3, 0.45, 0.3])
    disc = np.where(degenerate, disc * rng.uniform(0.35, 0.7, 5), disc)
    osteo = np.zeros(6, dtype=bool)
    for i in range(5):
        if degenerate[i] and rng.random() < 0.7:
            osteo[i] = osteo[i + 1] = True
    narrow = rng.random() < 0.3
    pavlov = rng.uniform(0.85, 1.1, 6)
    if narrow:
        pavlov = rng.uniform(0.6, 0.8, 6)
        pavlov[rng.random(6) < 0.2] = rng.uniform(0.76, 0.9)
    spin = np.array([22.0, 17.0, 17.0, 19.0, 23.0, 30.0]) * scale * rng.normal(1.0, 0.08, 6)

    if anatomy is not None:  # the same patient as another phantom (overrides after the draws: same rng stream)
        depth, height, disc, pavlov, osteo, spin = _anatomy_arrays(anatomy)
    curve_type = str(rng.choice(CURVE_TYPES, p=[0.5, 0.2, 0.15, 0.15]))
    d_mean = depth[1:].mean()
    max_alpha = np.degrees(np.arctan((disc - 0.7) / (d_mean / 2)))  # keep both disc heights > 0.7 mm
    if curve_type == "s_shaped":
        s = 1.0 if rng.random() < 0.6 else -1.0
        alpha_n = np.concatenate([s * rng.uniform(3, 9, 2), -s * rng.uniform(2, 7, 3)])
    else:
        lo, hi = {"lordotic": (12, 45), "straight": (-4, 8), "kyphotic": (-30, -6)}[curve_type]
        cobb = rng.uniform(lo, hi)
        weights = rng.dirichlet(np.full(5, 4.0))
        alpha_n = (cobb - wedge[1:].sum()) * weights
    if anatomy is not None:
        # segment angle (vertebra to vertebra, lordosis +) = disc angle + wedge of the lower vertebra
        alpha_n = np.asarray(anatomy["segment_angle_deg"], dtype=float) - wedge[1:]
        cobb_a = float(anatomy.get("cobb_c2_c7_deg", alpha_n.sum() + wedge[1:].sum()))
        curve_type = "lordotic" if cobb_a > 8 else ("kyphotic" if cobb_a < -4 else "straight")
    alpha_n = np.clip(alpha_n, -max_alpha, max_alpha)

    # dynamics: segmental range of motion (flexion-extension), translation change
    rom = np.where(rng.random(5) < 0.04, rng.uniform(11.5, 18, 5), rng.uniform(3, 10.5, 5))
    rom = np.where(degenerate, rom * 0.6, rom)
    flex_share = rng.uniform(0.35, 0.7, 5)
    tau_n = rng.normal(0.0, 0.5, 5)
    slip = rng.random(5) < 0.12
    tau_n = np.where(slip, rng.choice([-1, 1], 5) * rng.uniform(1.2, 3.0, 5), tau_n)
    dtau = np.where(rng.random(5) < 0.04, rng.uniform(3.7, 5.5, 5), rng.uniform(0.2, 2.5, 5))
    t_share = rng.uniform(0.4, 0.7, 5)

    sva_target = float(np.clip(rng.normal(18, 9), 0, 60)) if rng.random() > 0.15 else rng.uniform(40, 58)
    facing = 1 if rng.random() < 0.6 else -1

    # acquisition (shared by all views of the study)
    if shape is None:
        ips = float(rng.choice([0.1, 0.125, 0.139, 0.143, 0.148, 0.16, 0.175, 0.2]))
        fov_r, fov_c = rng.uniform(225, 300), rng.uniform(180, 260)
        out_shape = (int(round(fov_r / ips)), int(round(fov_c / ips)))
        out_shape = (int(np.clip(out_shape[0], 1125, 3032)), int(np.clip(out_shape[1], 908, 2973)))
    else:
        out_shape = (int(shape[0]), int(shape[1]))
        if min(out_shape) < 32:
            raise ValueError(f"phantom shape {shape} too small (min 32 px)")
        ips = None
    magnification = float(rng.uniform(1.08, 1.2))
    if ips is None:
        ips = rng.uniform(195, 250) / out_shape[0] * magnification  # field of view 195-250 mm (rows)
    photometric = "MONOCHROME1" if rng.random() < 0.35 else "MONOCHROME2"
    bits = int(rng.choice([12, 14, 16]))

    vp: dict[View, ViewParams] = {}
    ip: dict[View, ImageParams] = {}
    c7_n = None
    for view in views:
        if view == View.NEUTRAL:
            alpha = alpha_n
            tau = tau_n
        elif view == View.FLEXION:
            alpha = alpha_n - rom * flex_share
            tau = tau_n + dtau * t_share
        else:
            alpha = alpha_n + rom * (1 - flex_share)
            tau = tau_n - dtau * (1 - t_share)
        alpha = np.clip(alpha, -max_alpha, max_alpha)
        rot = 0.0 if easy else float(np.clip(rng.normal(0, 5.0 if hard else 2.0), -10, 10))
        vp[view] = ViewParams(view=view, c7_angle_deg=0.0, disc_angle_deg=tuple(float(a) for a in alpha),
                              translation_mm=tuple(float(t) for t in tau), rotation_deg=rot, anchor_px=(0.0, 0.0))
    # choose the C7 angle of the neutral view from the target SVA, then flexion / extension around it
    tmp = PatientParams(seed, facing, curve_type, tuple(depth), tuple(height), tuple(wedge), tuple(wall_tilt),
                        tuple(disc), tuple(pavlov), tuple(bool(o) for o in osteo), tuple(spin))
    base_view = View.NEUTRAL if View.NEUTRAL in vp else next(iter(vp))
    c7_n = _c7_angle_for_sva(tmp, vp[base_view], sva_target)
    for view in list(vp):
        c7 = c7_n
        if view == View.FLEXION and base_view == View.NEUTRAL:
            c7 = c7_n + rng.uniform(-3, 2)
        elif view == View.EXTENSION and base_view == View.NEUTRAL:
            c7 = c7_n + rng.uniform(-2, 3)
        rows, cols = out_shape
        ax = cols * (rng.uniform(0.40, 0.52) if facing > 0 else rng.uniform(0.48, 0.60))
        ay = rows * rng.uniform(0.70, 0.80)
        vp[view] = ViewParams(view=view, c7_angle_deg=float(c7), disc_angle_deg=vp[view].disc_angle_deg,
                              translation_mm=vp[view].translation_mm, rotation_deg=vp[view].rotation_deg,
                              anchor_px=(float(ax), float(ay)))
        shoulder_hides = (not easy) and rng.random() < (0.55 if hard else 0.35)
        shoulder_top = rng.uniform(-8, 12) if shoulder_hides else rng.uniform(-45, -20)
        collim = (tuple(int(v) for v in (rng.uniform(0, 0.07, 4) * np.array([cols, rows, cols, rows])))
                  if rng.random() < 0.5 and not easy else (0, 0, 0, 0))
        noise = {"easy": 0.008, "realistic": rng.uniform(0.01, 0.03), "hard": rng.uniform(0.025, 0.05)}[difficulty]
        ip[view] = ImageParams(
            shape=out_shape, imager_pixel_spacing_mm=float(ips), magnification=magnification,
            photometric=photometric, bits_stored=bits, noise=float(noise),
            blur_mm=float(rng.uniform(0.15, 0.35) if not hard else rng.uniform(0.3, 0.6)),
            gamma=float(rng.uniform(0.8, 1.3)), shoulder_top_mm=float(shoulder_top),
            shoulder_density=float(rng.uniform(1.5, 3.0)), collimation_px=collim,  # type: ignore[arg-type]
            text=(not easy) and rng.random() < 0.8,
            window=(float(rng.uniform(0.0, 0.08)), float(rng.uniform(0.9, 1.0))),
        )
    return PatientParams(seed, facing, curve_type, tuple(float(v) for v in depth), tuple(float(v) for v in height),
                         tuple(float(v) for v in wedge), tuple(float(v) for v in wall_tilt),
                         tuple(float(v) for v in disc), tuple(float(v) for v in pavlov),
                         tuple(bool(o) for o in osteo), tuple(float(v) for v in spin), vp, ip,
                         *_degeneration_signs(anatomy))


def _degeneration_signs(anatomy: dict | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The opt-in radiographic signs of canal encroachment of an ``anatomy`` dict (5 segments each), or empty."""
    out = []
    for key in ("posterior_osteophyte_mm", "calcified_herniation_mm"):
        vals = () if anatomy is None else tuple(float(v) for v in anatomy.get(key, ()))
        if vals and len(vals) != 5:
            raise ValueError(f"anatomy[{key!r}] needs 5 values (C2-C3..C6-C7)")
        out.append(vals)
    return out[0], out[1]


def _anatomy_arrays(anatomy: dict) -> tuple[np.ndarray, ...]:
    """depth, height, disc, pavlov, osteophytes, spinous length of an ``anatomy`` dict (C2..C7; discs C2-C3..C6-C7),
    as written by ``pipelines.mri.phantom.xray_anatomy``; raises ValueError on a missing key or wrong length."""
    spec = (("body_depth_mm", 6), ("body_height_mm", 6), ("disc_height_mm", 5), ("pavlov", 6), ("osteophytes", 6),
            ("spinous_length_mm", 6), ("segment_angle_deg", 5))
    out = []
    for key, n in spec:
        if key not in anatomy or len(anatomy[key]) < n:
            raise ValueError(f"anatomy[{key!r}] needs {n} values (C2..C7 or C2-C3..C6-C7)")
        out.append(np.asarray(anatomy[key][:n], dtype=bool if key == "osteophytes" else float))
    return tuple(out[:6])


def _c7_angle_for_sva(p: PatientParams, v: ViewParams, target_mm: float) -> float:
    """C7 endplate angle that puts C2's centre ``target_mm`` anterior of C7's postero-superior corner."""
    ch = _build_chain(p, v.disc_angle_deg, v.translation_mm, 0.0)
    vec = ch.c2_centre - ch.corners[5, 2]
    r = float(np.hypot(*vec))
    theta = math.degrees(math.atan2(vec[1], vec[0]))
    ratio = float(np.clip(target_mm / r, -1.0, 1.0))
    delta = math.degrees(math.acos(ratio)) - theta
    return float(np.clip(delta, -40.0, 8.0))


# -------------------------------------------------------------------------------------------- anatomy
@dataclass
class _Chain:
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
    ai = pi + depth * _e(phi)
    ps = pi + height * _e(phi + 90.0 + tilt)
    # superior endplate at phi + wedge, anterior corner where it meets a slightly concave anterior wall
    as_ = ps + depth * 1.01 * _e(phi + wedge)
    return np.stack([as_, ai, ps, pi])


def _build_chain(p: PatientParams, alpha: tuple[float, ...], tau: tuple[float, ...], c7_angle: float) -> _Chain:
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
        pi_u = corners[lower, 2] + h_p * _e(sup + 90.0) + tau[upper] * _e(sup)
        corners[upper] = _vertebra(pi_u, phi[upper], p.body_depth_mm[upper], p.body_height_mm[upper],
                                   p.wedge_deg[upper], p.wall_tilt_deg[upper])
    # spinolaminar points: posterior-wall midpoint moved posteriorly (normal to the wall) by SDVC
    sl = np.zeros((6, 2))
    for i in range(6):
        sdvb = _sdvb_local(p, i)
        pm = 0.5 * (corners[i, 2] + corners[i, 3])
        sl[i] = pm - p.pavlov[i] * sdvb * _e(phi[i] + p.wall_tilt_deg[i])
    # C2 centre: intersection of the diagonals AS-PI and AI-PS (solved in the anatomical frame)
    as_, ai, ps, pi = corners[0]
    m = np.column_stack([pi - as_, -(ps - ai)])
    st = np.linalg.solve(m, ai - as_)
    c2c = as_ + st[0] * (pi - as_)
    # T1 below C7 (disc 5.5 mm, small lordotic disc angle)
    sup7_pi = corners[5, 3]
    t1_phi = phi[5] - 2.0
    t1_ps = sup7_pi - 5.0 * _e(t1_phi + 90.0)
    t1_as = t1_ps + p.body_depth_mm[5] * 1.05 * _e(t1_phi)
    t1_pi = t1_ps - 14.5 * _e(t1_phi + 90.0)
    t1_ai = t1_pi + p.body_depth_mm[5] * 1.05 * _e(t1_phi + 1.0)
    return _Chain(corners, phi, sl, c2c, post_disc, np.stack([t1_as, t1_ai, t1_ps, t1_pi]))


def _sdvb_local(p: PatientParams, i: int) -> float:
    """SDVB of vertebra ``i`` from its construction (distance of the anterior and posterior wall midpoints)."""
    d, h, w, t = p.body_depth_mm[i], p.body_height_mm[i], p.wedge_deg[i], p.wall_tilt_deg[i]
    # local frame: PI at 0, inferior endplate along +a
    ai = np.array([d, 0.0])
    ps = h * np.array([math.cos(math.radians(90 + t)), math.sin(math.radians(90 + t))])
    as_ = ps + 1.01 * d * np.array([math.cos(math.radians(w)), math.sin(math.radians(w))])
    am = 0.5 * (ai + as_)
    pm = 0.5 * ps
    return float(math.hypot(*(am - pm)))


# ------------------------------------------------------------------------------------------ truth values
def _truth_for_view(p: PatientParams, v: ViewParams, ch: _Chain, to_img_mm, uid: str) -> list[Measurement]:
    """True per-view measurements from the construction parameters (closed forms, not geometry.py)."""
    view = v.view
    alpha = np.asarray(v.disc_angle_deg)
    tau = np.asarray(v.translation_mm)
    wedge = np.asarray(p.wedge_deg)
    tilt = np.asarray(p.wall_tilt_deg)
    out: list[Measurement] = []

    def m(key: str, value: float, unit: str, site: str, kps: tuple[str, ...] = ()) -> None:
        out.append(Measurement(key=key, name=MEASUREMENT_NAMES[key], value=float(value), unit=unit, site=site,
                               view=view, image_uids=(uid,) if uid else (), keypoints=kps,
                               reason="phantom ground truth"))

    cobb = float(alpha.sum() + wedge[1:].sum())
    m("cobb_c2_c7", cobb, "deg", "C2-C7", ("C2 antero-inferior", "C2 postero-inferior", "C7 antero-inferior",
                                            "C7 postero-inferior"))
    # SVA: horizontal (image x) offset, anterior positive, of C2's centre from C7's postero-superior corner
    c2c = to_img_mm(ch.c2_centre)
    c7ps = to_img_mm(ch.corners[5, 2])
    ant_sign = np.sign(to_img_mm(np.array([1.0, 0.0]))[0] - to_img_mm(np.array([0.0, 0.0]))[0])
    m("sva_c2_c7", float(ant_sign * (c2c[0] - c7ps[0])), "mm", "C2-C7")
    for i, seg in enumerate(SEGMENTS):
        up, lo = seg.split("-")
        m("segmental_angle", alpha[i], "deg", seg)
        t = tau[i] * math.cos(math.radians(alpha[i] + tilt[i])) + ch.posterior_disc_mm[i] * math.sin(
            math.radians(alpha[i] + tilt[i]))
        m("listhesis_distance", t, "mm", seg, (f"{up} postero-superior", f"{up} postero-inferior",
                                               f"{lo} postero-superior"))
        m("listhesis_angle", alpha[i] + wedge[i + 1] + tilt[i] - tilt[i + 1], "deg", seg)
    for name in CANAL_LEVELS:
        i = VERTEBRAE.index(name)
        sdvb = _sdvb_local(p, i)
        m("sdvb", sdvb, "mm", name)
        m("sdvc", p.pavlov[i] * sdvb, "mm", name)
        m("pavlov_ratio", p.pavlov[i], "1", name)
    # Ishihara index: PI corners of C3..C6 against the chord C2 PI - C7 PI (anterior positive), in percent
    a, b = ch.corners[0, 3], ch.corners[5, 3]
    chord = b - a
    length = float(np.hypot(*chord))
    ant_normal = np.array([-chord[1], chord[0]]) / length  # chord points caudally; +90 deg (a->c) -> anterior
    dist = [(ch.corners[k, 3] - a) @ ant_normal for k in range(1, 5)]
    for k, d in zip(range(3, 7), dist, strict=True):
        m("curvature_offset", float(d), "mm", f"C{k}")
    m("curvature_index", 100.0 * float(np.sum(dist)) / length, "%", "C2-C7")
    return out


# ---------------------------------------------------------------------------------------------- rendering
class _Canvas:
    """An attenuation map at working resolution with polygon filling in bounding-box crops."""

    def __init__(self, shape: tuple[int, int]):
        self.a = np.zeros(shape, dtype=np.float32)

    def poly(self, pts: np.ndarray, density: float) -> None:
        if density == 0 or len(pts) < 3 or not np.all(np.isfinite(pts)):
            return
        h, w = self.a.shape
        x0 = max(int(math.floor(pts[:, 0].min())), 0)
        y0 = max(int(math.floor(pts[:, 1].min())), 0)
        x1 = min(int(math.ceil(pts[:, 0].max())) + 1, w)
        y1 = min(int(math.ceil(pts[:, 1].max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return
        img = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(img).polygon([(float(x - x0), float(y - y0)) for x, y in pts], fill=255)
        self.a[y0:y1, x0:x1] += np.asarray(img, dtype=np.float32) * (density / 255.0)

    def rimmed(self, pts: np.ndarray, rim_px: float, cortical: float, trabecular: float) -> None:
        """Fill with ``trabecular`` density and a cortical rim (``rim_px`` wide, inside the outline)."""
        if len(pts) < 3 or not np.all(np.isfinite(pts)):
            return
        h, w = self.a.shape
        x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
        y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
        x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
        y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
        if x1 <= x0 or y1 <= y0:
            return
        xy = [(float(x - x0), float(y - y0)) for x, y in pts]
        fill = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(fill).polygon(xy, fill=255)
        edge = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(edge).line(xy + [xy[0]], fill=255, width=max(1, int(round(2 * rim_px))), joint="curve")
        f = np.asarray(fill, dtype=np.float32) * (1.0 / 255.0)
        e = np.asarray(edge, dtype=np.float32) * (1.0 / 255.0)
        self.a[y0:y1, x0:x1] += f * (trabecular + e * (cortical - trabecular))


def _body_outline(corners: np.ndarray, osteophyte: bool, rng: np.random.Generator, is_c2: bool) -> np.ndarray:
    """A vertebral-body outline (anatomical mm) through its 4 corners with concave walls and endplates."""
    as_, ai, ps, pi = corners
    pts: list[np.ndarray] = []

    def mid(p0: np.ndarray, p1: np.ndarray, inward: float) -> np.ndarray:
        c = corners.mean(axis=0)
        m = 0.5 * (p0 + p1)
        d = c - m
        return m + inward * d / max(float(np.hypot(*d)), 1e-9)

    pts += [pi, mid(pi, ai, 0.4 * rng.uniform(0.5, 1.5)), ai]
    if osteophyte:  # antero-inferior spur pointing caudally and anteriorly
        u = (ai - pi) / np.hypot(*(ai - pi))
        n = np.array([u[1], -u[0]])  # caudal for an upright vertebra (a right, c up)
        pts.insert(2, ai - 0.6 * u + 1.2 * n)
        pts.insert(3, ai + 2.2 * u + 1.0 * n)
    pts += [mid(ai, as_, 0.7 * rng.uniform(0.6, 1.4))]
    if osteophyte:
        u = (as_ - ps) / np.hypot(*(as_ - ps))
        n = np.array([-u[1], u[0]])
        pts += [as_ + 2.0 * u - 0.8 * n, as_ - 0.5 * u + 1.0 * n]
    pts += [as_]
    if is_c2:  # dens rises from the top margin, slightly posterior of centre
        u = (as_ - ps) / np.hypot(*(as_ - ps))
        n = np.array([-u[1], u[0]])
        base0 = ps + 0.62 * (as_ - ps)
        base1 = ps + 0.12 * (as_ - ps)
        tip = ps + 0.4 * (as_ - ps) + 14.0 * n - 1.5 * u
        pts += [base0, base0 + 9.0 * n + 0.3 * u, tip + 1.5 * u - 1.2 * n, tip, tip - 2.2 * u - 1.5 * n,
                base1 + 8.5 * n - 0.4 * u, base1]
    else:
        pts += [mid(as_, ps, 0.5 * rng.uniform(0.5, 1.5))]
    pts += [ps, mid(ps, pi, 0.3)]
    return _chamfer(np.array(pts), corners, 0.6 if not is_c2 else 0.5)


def _chamfer(pts: np.ndarray, corners: np.ndarray, r: float) -> np.ndarray:
    """Round the outline at the 4 body corners (cut ``r`` mm along both edges): real corners are rounded."""
    out: list[np.ndarray] = []
    n = len(pts)
    for i, q in enumerate(pts):
        if np.min(np.hypot(*(corners - q).T)) < 1e-9:
            for nb in (pts[i - 1], pts[(i + 1) % n]):
                d = nb - q
                length = float(np.hypot(*d))
                out.append(q + d * min(r / max(length, 1e-9), 0.4))
        else:
            out.append(q)
    return np.array(out)


def generate_view(p: PatientParams, view: View, rng: np.random.Generator, *, uid: str = "") -> PhantomView:
    """Render one view of patient ``p`` (its ``views[view]`` and ``images[view]`` parameters)."""
    v = p.views[view]
    ip = p.images[view]
    rows, cols = ip.shape
    ch = _build_chain(p, v.disc_angle_deg, v.translation_mm, v.c7_angle_deg)
    sp = ip.imager_pixel_spacing_mm / ip.magnification  # mm per output pixel at the patient plane

    rot = math.radians(v.rotation_deg)
    cr, sr = math.cos(rot), math.sin(rot)
    rmat = np.array([[cr, sr], [-sr, cr]])  # positive = counter-clockwise on screen (y down)
    flip = np.array([[float(p.facing), 0.0], [0.0, -1.0]])
    lin = rmat @ flip  # anatomical mm -> image-aligned mm
    origin = ch.corners[5, 3]

    def to_img_mm(q: np.ndarray) -> np.ndarray:
        return (np.asarray(q) - origin) @ lin.T

    def to_px(q: np.ndarray) -> np.ndarray:
        return to_img_mm(q) / sp + np.asarray(v.anchor_px)

    # working resolution: images up to ~1100 px are drawn directly, larger ones at ~1100 px and upsampled
    long_side = max(rows, cols)
    k = min(1.0, 1100.0 / long_side)
    wshape = (max(int(round(rows * k)), 8), max(int(round(cols * k)), 8))
    ky, kx = wshape[0] / rows, wshape[1] / cols

    def to_w(q: np.ndarray) -> np.ndarray:
        px = to_px(q)
        return np.column_stack([(px[..., 0] + 0.5) * kx - 0.5, (px[..., 1] + 0.5) * ky - 0.5])

    mm_w = sp / kx  # mm per working pixel
    canvas = _Canvas(wshape)
    # image "up" and "anterior-horizontal" expressed in the anatomical frame (shoulders hang by gravity)
    img_up = np.linalg.solve(lin, np.array([0.0, -1.0]))
    img_up /= np.hypot(*img_up)
    _draw_soft_tissue(canvas, p, ch, to_w, mm_w, ip, rng, img_up)
    bones = _Canvas(wshape)
    _draw_bones(bones, p, ch, to_w, mm_w, rng)
    # trabecular texture: smooth multiplicative noise on bone only
    tex = rng.standard_normal(wshape, dtype=np.float32)
    tex *= np.float32(0.18)
    tex += np.float32(1.0)
    tex *= bones.a
    canvas.a += tex
    att = canvas.a
    blur_px = max(ip.blur_mm / mm_w, 0.5)
    att = ndimage.gaussian_filter(att, blur_px, truncate=2.5)

    pixels = _expose(att, wshape, (rows, cols), ip, view, p, rng)
    cl, ct, crt, cb = ip.collimation_px

    # keypoints and visibility
    kp_anat = np.concatenate([ch.corners.reshape(24, 2), ch.spinolaminar])
    kps = to_px(kp_anat)
    xi = np.clip(np.rint(kps[:, 0]).astype(int), 0, cols - 1)
    yi = np.clip(np.rint(kps[:, 1]).astype(int), 0, rows - 1)
    inside = (kps[:, 0] >= 0) & (kps[:, 0] <= cols - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= rows - 1)
    # hidden by the shoulders: point lies below the shoulder-shadow top (measured along the spine axis)
    height = (kp_anat - origin) @ img_up  # mm above the C7 postero-inferior corner, image vertical
    hidden = (height < ip.shoulder_top_mm - 2.0) & (ip.shoulder_density > 1.2)
    exposed = (xi >= cl) & (xi < cols - crt) & (yi >= ct) & (yi < rows - cb)
    visible = inside & exposed & ~hidden

    polys = {name: to_px(_body_outline_cached(ch, i, p)) for i, name in enumerate(VERTEBRAE)}
    post = np.concatenate([ch.corners[:, 2:4].reshape(12, 2)])
    canal = np.concatenate([post, ch.spinolaminar[::-1]])
    truth = _truth_for_view(p, v, ch, to_img_mm, uid)
    return PhantomView(view=view, pixels=pixels, photometric=ip.photometric, bits_stored=ip.bits_stored,
                       imager_pixel_spacing_mm=(ip.imager_pixel_spacing_mm, ip.imager_pixel_spacing_mm),
                       magnification=ip.magnification, keypoints=kps.astype(np.float64), visible=visible,
                       vertebra_polygons=polys, canal_polygon=to_px(canal), truth=truth, sop_instance_uid=uid)


def _resize_linear(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (pixel centres aligned, like ``align_corners=False``) by two vectorised gathers."""

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(np.intp)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    r0, r1, rw = axis(shape[0], img.shape[0])
    c0, c1, cw = axis(shape[1], img.shape[1])
    a = img.astype(np.float32, copy=False)
    tmp = a[:, c0]
    tmp += (a[:, c1] - tmp) * cw
    out = tmp[r0]
    out += (tmp[r1] - out) * rw[:, None]
    return out


def _body_outline_cached(ch: _Chain, i: int, p: PatientParams) -> np.ndarray:
    """Deterministic outline (no random wall concavity) for the SEG writer: corners plus the dens for C2."""
    rng = np.random.default_rng(0)
    return _body_outline(ch.corners[i], False, rng, i == 0)


def _draw_soft_tissue(canvas: _Canvas, p: PatientParams, ch: _Chain, to_w, mm_w: float, ip: ImageParams,
                      rng: np.random.Generator, img_up: np.ndarray) -> None:
    """Neck, head and shoulder soft tissue plus the airway, rendered coarse and upsampled (smooth)."""
    h, w = canvas.a.shape
    cf = max(1, int(round(1.5 / mm_w)))  # coarse grid of ~1.5 mm
    coarse = _Canvas((h // cf + 2, w // cf + 2))

    def to_c(q: np.ndarray) -> np.ndarray:
        return (to_w(q) + 0.5) / cf - 0.5

    axis_up = _e(ch.phi[0] + 90.0) * 0.5 + _e(ch.phi[5] + 90.0) * 0.5
    axis_up /= np.hypot(*axis_up)
    ant_dir = np.array([axis_up[1], -axis_up[0]])  # rotate -90 deg: anterior
    ant_pts = ch.corners[:, :2].mean(axis=1)
    post_pts = ch.spinolaminar
    ant_off = np.array([38, 40, 44, 48, 54, 62.0]) * rng.uniform(0.85, 1.2)
    post_off = np.array([60, 55, 55, 58, 62, 70.0]) * rng.uniform(0.8, 1.25)
    ant_line = ant_pts + ant_dir * ant_off[:, None]
    post_line = post_pts - ant_dir * post_off[:, None]
    far = 400.0
    neck = np.concatenate([
        [ant_line[0] + axis_up * far * 0.3 + ant_dir * 120], ant_line,
        [ant_line[-1] - axis_up * far + ant_dir * 60], [post_line[-1] - axis_up * far - ant_dir * 80],
        post_line[::-1], [post_line[0] + axis_up * far - ant_dir * 60]])
    coarse.poly(to_c(neck), 1.0)
    # head (above C1): wide soft tissue block
    c1 = ch.corners[0, 0] + axis_up * 22
    head = np.array([c1 + ant_dir * 110, c1 + ant_dir * 110 + axis_up * 300, c1 - ant_dir * 130 + axis_up * 300,
                     c1 - ant_dir * 130 - axis_up * 5])
    coarse.poly(to_c(head), 0.8)
    coarse.a = ndimage.gaussian_filter(coarse.a, 12.0 / (mm_w * cf))
    # airway: dark band ahead of the prevertebral soft tissue
    prev = np.array([4.0, 4.5, 5.5, 12.0, 15.0, 16.0]) * rng.uniform(0.8, 1.3)
    width = rng.uniform(10, 17)
    front = ch.corners[:, :2].mean(axis=1)
    a0 = front + ant_dir * prev[:, None]
    a1 = a0 + ant_dir * width
    airway = np.concatenate([[a0[0] + axis_up * 35 + ant_dir * 2], a0, [a0[-1] - axis_up * 60],
                             [a1[-1] - axis_up * 60], a1[::-1], [a1[0] + axis_up * 35 + ant_dir * 6]])
    air = _Canvas(coarse.a.shape)
    air.poly(to_c(airway), -rng.uniform(0.25, 0.45))
    coarse.a += ndimage.gaussian_filter(air.a, 1.2 / (mm_w * cf))
    # shoulders: dense, smooth, over the lower neck
    top = ch.corners[5, 3] + img_up * ip.shoulder_top_mm
    horiz = np.array([img_up[1], -img_up[0]])
    horiz *= np.sign(horiz @ ant_dir)
    xs = np.linspace(-160, 160, 17) + rng.uniform(-30, 30)
    arc = top + xs[:, None] * horiz - (xs**2 / (2 * rng.uniform(150, 260)))[:, None] * img_up
    sh = np.concatenate([arc, [arc[-1] - img_up * 400, arc[0] - img_up * 400]])
    shc = _Canvas(coarse.a.shape)
    shc.poly(to_c(sh), ip.shoulder_density)
    coarse.a += ndimage.gaussian_filter(shc.a, 6.0 / (mm_w * cf))
    # coarse pixel j covers working pixels [j*cf, (j+1)*cf): resize the matching part of the coarse grid
    canvas.a += _resize_linear(coarse.a[: -(-h // cf), : -(-w // cf)], (h, w))


def _draw_bones(canvas: _Canvas, p: PatientParams, ch: _Chain, to_w, mm_w: float,
                rng: np.random.Generator) -> None:
    """Vertebral bodies with cortical rims and endplates, posterior elements, C1, skull base, mandible, T1."""
    px = 1.0 / mm_w  # working pixels per mm
    cort, trab = 1.25, 0.55
    ds = rng.uniform(0.8, 1.15)
    rim = 1.0 * px
    for i in range(6):
        outline = _body_outline(ch.corners[i], p.osteophytes[i], rng, i == 0)
        canvas.rimmed(to_w(outline), rim, cort * ds, trab * ds)
        if p.osteophytes[i]:  # endplate sclerosis
            as_, ai, ps, pi = ch.corners[i]
            canvas.poly(to_w(np.array([pi, ai, ai + 0.18 * (as_ - ai), pi + 0.18 * (ps - pi)])), 0.25)
            canvas.poly(to_w(np.array([ps, as_, as_ + 0.18 * (ai - as_), ps + 0.18 * (pi - ps)])), 0.25)
    if p.posterior_osteophyte_mm or p.calcified_herniation_mm:
        _draw_canal_encroachment(canvas, p, ch, to_w, px, ds)
    as_, ai, ps, pi = ch.t1
    canvas.rimmed(to_w(np.array([ps, as_, ai, pi])), rim, cort * ds, trab * ds)
    # posterior elements (anatomical frame: `up` along the posterior wall, `post` posterior)
    for i in range(6):
        as_, ai, ps, pi = ch.corners[i]
        up = (ps - pi) / np.hypot(*(ps - pi))
        post = np.array([-up[1], up[0]])  # rotate +90 deg from cranial (a->c frame): posterior
        sl = ch.spinolaminar[i]
        h = float(np.hypot(*(ps - pi)))
        pm = 0.5 * (ps + pi)
        canal = float(np.hypot(*(sl - pm)))
        # articular pillar (lateral mass) over the posterior canal, facet surfaces sloping ~40 deg
        c0 = pm + post * canal * 0.3
        c1 = pm + post * canal * 0.95
        drop = 0.35 * (c1 - c0) @ post
        pil = np.array([c0 + up * (0.5 * h + 1.0), c1 + up * (0.5 * h + 1.0 - drop),
                        c1 - up * (0.5 * h + 1.5 + drop), c0 - up * (0.5 * h + 1.5)])
        canvas.rimmed(to_w(pil), 0.8 * px, 0.7 * ds, 0.35 * ds)
        # lamina joining the pillar to the spinolaminar junction
        lam = np.array([pm + post * canal * 0.7 + up * 0.25 * h, sl + up * 0.3 * h, sl - up * 0.35 * h,
                        pm + post * canal * 0.65 - up * 0.45 * h])
        canvas.poly(to_w(lam), 0.3 * ds)
        # spinous process from the spinolaminar junction, posteriorly and caudally; its anterior cortex is
        # the spinolaminar line
        length = p.spinous_length_mm[i]
        tilt = 20.0 + 4.0 * i
        d = post * math.cos(math.radians(tilt)) - up * math.sin(math.radians(tilt))
        nrm = np.array([-d[1], d[0]])
        if nrm @ up < 0:
            nrm = -nrm
        tip = sl + d * length
        wt = 4.0 if i in (0, 5) else 2.6
        spn = np.array([sl + up * 0.3 * h, tip + nrm * wt, tip + d * 1.5, tip - nrm * wt * 0.9,
                        sl - up * 0.38 * h])
        canvas.rimmed(to_w(spn), 0.8 * px, 0.9 * ds, 0.4 * ds)
    # C1: anterior arch ahead of the dens, posterior arch behind the canal
    as2, _, ps2, _ = ch.corners[0]
    up2 = _e(ch.phi[0] + 90.0 + p.wall_tilt_deg[0])
    ant2 = _e(ch.phi[0] + p.wedge_deg[0])
    c1_level = ps2 + 0.4 * (as2 - ps2) + up2 * 10.5
    aa = c1_level + ant2 * 7.5
    ring = np.array([aa + up2 * 5, aa + ant2 * 5 + up2 * 3, aa + ant2 * 5.5 - up2 * 3, aa - up2 * 5,
                     aa - ant2 * 0.5])
    canvas.rimmed(to_w(ring), 1.0 * px, 1.0 * ds, 0.5 * ds)
    pa = ch.spinolaminar[0] + up2 * 11 - ant2 * 2
    parch = np.array([pa + ant2 * 6 + up2 * 3, pa - ant2 * 14 + up2 * 3, pa - ant2 * 22 + up2 * 1,
                      pa - ant2 * 22 - up2 * 5, pa - ant2 * 12 - up2 * 4, pa + ant2 * 6 - up2 * 3])
    canvas.rimmed(to_w(parch), 1.0 * px, 0.9 * ds, 0.45 * ds)
    # skull: an elliptical calvarium above C1 (thick cortical outline), the clivus pointing at the dens tip
    pitch = rng.uniform(-8, 12)  # head pitch relative to C2
    h_up = _e(ch.phi[0] + 90.0 + pitch)
    h_ant = _e(ch.phi[0] + pitch)
    rx, ry = rng.uniform(85, 100), rng.uniform(70, 85)
    centre = pa + h_up * (ry + rng.uniform(8, 14)) + h_ant * rng.uniform(15, 30)
    t = np.radians(np.linspace(0, 360, 40, endpoint=False))
    skull = centre + np.cos(t)[:, None] * h_ant * rx + np.sin(t)[:, None] * h_up * ry
    canvas.rimmed(to_w(skull), 5.0 * px, 1.9, 0.9)
    mastoid = pa + h_up * 14 + h_ant * rng.uniform(8, 16)
    canvas.rimmed(to_w(mastoid + np.cos(t)[:, None] * h_ant * 9 + np.sin(t)[:, None] * h_up * 12), 1.5 * px, 0.9, 0.5)
    tip = ps2 + 0.4 * (as2 - ps2) + up2 * 18
    clivus = np.array([tip + h_up * 2, tip + h_up * 40 + h_ant * 28, tip + h_up * 50 + h_ant * 16,
                       tip + h_up * 5 - h_ant * 4])
    canvas.rimmed(to_w(clivus), 1.5 * px, 1.1, 0.7)
    # mandible (head frame): angle, lower border to the chin, alveolar part, ramus with coronoid and condyle
    a0 = as2 + ant2 * rng.uniform(18, 30) - up2 * rng.uniform(0, 12)
    m_up = _e(ch.phi[0] + 90.0 + pitch + 15.0)
    m_ant = _e(ch.phi[0] + pitch + 15.0)
    mand = np.array([a0, a0 + m_ant * 40 - m_up * 2, a0 + m_ant * 76 + m_up * 4, a0 + m_ant * 80 + m_up * 28,
                     a0 + m_ant * 36 + m_up * 24, a0 + m_ant * 32 + m_up * 54, a0 + m_ant * 20 + m_up * 40,
                     a0 + m_ant * 4 + m_up * 60, a0 - m_ant * 4 + m_up * 55, a0 - m_ant * 3 + m_up * 20])
    canvas.rimmed(to_w(mand), 2.0 * px, 1.1, 0.35)
    # hyoid
    hy = ch.corners[2, 1] + ant2 * rng.uniform(30, 40)
    hyoid = np.array([hy, hy + ant2 * 12 + up2 * 3, hy + ant2 * 12 + up2 * 0.5, hy - up2 * 3])
    canvas.poly(to_w(hyoid), 0.6)


def _draw_canal_encroachment(canvas: _Canvas, p: PatientParams, ch: _Chain, to_w, px: float, ds: float) -> None:
    """Opt-in signs of the degeneration that narrows the canal (what a lateral radiograph can show of it).

    Per segment: posterior endplate spurs at the upper vertebra's postero-inferior and the lower vertebra's
    postero-superior corner, reaching ``posterior_osteophyte_mm`` behind the posterior wall line; and a faint
    calcified disc herniation (disc-osteophyte complex) reaching ``calcified_herniation_mm`` behind the disc.
    Soft herniations and ligamentum flavum thickening are not drawn: radiographs do not show them.
    """
    for j in range(5):
        up_i, lo_i = j, j + 1
        pi_u, ai_u = ch.corners[up_i, 3], ch.corners[up_i, 1]
        ps_l, as_l = ch.corners[lo_i, 2], ch.corners[lo_i, 0]
        up = ch.corners[up_i, 2] - pi_u
        up /= np.hypot(*up)
        post = np.array([-up[1], up[0]])  # +90 deg from cranial in the (a, c) frame: posterior
        ost = p.posterior_osteophyte_mm[j] if p.posterior_osteophyte_mm else 0.0
        if ost > 0.3:
            e_u = (ai_u - pi_u) / np.hypot(*(ai_u - pi_u))
            spur_u = np.array([pi_u + up * 2.5, pi_u + post * ost - up * min(1.6, 0.4 + 0.3 * ost),
                               pi_u + e_u * 2.0])
            e_l = (as_l - ps_l) / np.hypot(*(as_l - ps_l))
            spur_l = np.array([ps_l - up * 2.5, ps_l + post * ost + up * min(1.6, 0.4 + 0.3 * ost),
                               ps_l + e_l * 2.0])
            for spur in (spur_u, spur_l):
                canvas.rimmed(to_w(spur), 0.6 * px, 1.15 * ds, 0.7 * ds)
        hern = p.calcified_herniation_mm[j] if p.calcified_herniation_mm else 0.0
        if hern > 0.3:
            top, bottom = pi_u - post * 0.5, ps_l - post * 0.5
            mid = 0.5 * (top + bottom)
            half = 0.5 * float(np.hypot(*(top - bottom))) + 1.2
            cap = np.array([mid + up * half, mid + up * 0.5 * half + post * 0.85 * hern, mid + post * hern,
                            mid - up * 0.5 * half + post * 0.85 * hern, mid - up * half])
            canvas.rimmed(to_w(cap), 0.5 * px, 0.75 * ds, 0.35 * ds)


_FONT_CACHE: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def _expose(att: np.ndarray, wshape: tuple[int, int], shape: tuple[int, int], ip: ImageParams, view: View,
            p: PatientParams, rng: np.random.Generator) -> np.ndarray:
    """Blurred attenuation (work shape) -> stored pixel values (uint16, ``shape``): the detector and display
    stage shared by every X-ray phantom renderer (tone curve, resize, noise, collimation, burned-in text,
    quantisation; MONOCHROME1 inverted)."""
    rows, cols = shape
    # tone curve (for-presentation look): bone bright, air dark
    lo, hi = ip.window
    img = np.exp(att * np.float32(-1 / 2.2))
    img = (np.float32(1 - lo) - img) * np.float32(1 / (hi - lo))
    np.clip(img, 0.0, 1.0, out=img)
    img **= np.float32(ip.gamma)
    if wshape != (rows, cols):
        img = _resize_linear(img, (rows, cols))
    # quantum-like noise, stronger where the image is bright (dense, fewer photons)
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    noise *= np.float32(ip.noise) * (np.float32(0.7) + np.float32(1.2) * img)
    img += noise

    # collimation: unexposed borders are bright on a for-presentation image
    cl, ct, crt, cb = ip.collimation_px
    if any((cl, ct, crt, cb)):
        lvl = rng.uniform(0.85, 0.97)
        img[:, :cl] = lvl
        img[:, cols - crt:] = lvl
        img[:ct, :] = lvl
        img[rows - cb:, :] = lvl
    if ip.text:
        _burn_text(img, view, p, rng, (cl, ct, crt, cb))

    maxval = (1 << ip.bits_stored) - 1
    np.clip(img, 0.0, 1.0, out=img)
    if ip.photometric == "MONOCHROME1":
        img *= np.float32(-maxval)
        img += np.float32(maxval + 0.5)
    else:
        img *= np.float32(maxval)
        img += np.float32(0.5)
    return img.astype(np.uint16)


def _burn_text(img: np.ndarray, view: View, p: PatientParams, rng: np.random.Generator,
               collim: tuple[int, int, int, int]) -> None:
    """Burn a side marker and a view label into the image corners (as many modalities do)."""
    rows, cols = img.shape
    size = max(8, int(rows * 0.025))
    font = _FONT_CACHE.get(size)
    if font is None:
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # pragma: no cover - very old Pillow
            font = ImageFont.load_default()
        _FONT_CACHE[size] = font
    label = {View.NEUTRAL: "LAT", View.FLEXION: "FLEX", View.EXTENSION: "EXT"}[view]
    marker = "R" if p.facing < 0 else "L"
    texts = [(marker, "tl"), (label, "tr"), (f"{int(rng.integers(60, 90))} kV", "bl")]
    for text, corner in texts:
        tw, th = int(size * 0.7 * len(text)) + 4, size + 6
        if tw >= cols // 2 or th >= rows // 2:
            continue
        im = Image.new("L", (tw, th), 0)
        ImageDraw.Draw(im).text((2, 1), text, fill=255, font=font)
        mask = np.asarray(im, dtype=np.float32) / 255.0
        pad = max(2, int(0.02 * min(rows, cols)))
        y = collim[1] + pad if corner[0] == "t" else rows - collim[3] - pad - th
        x = collim[0] + pad if corner[1] == "l" else cols - collim[2] - pad - tw
        if x < 0 or y < 0:
            continue
        sl = img[y:y + th, x:x + tw]
        sl[...] = np.maximum(sl, mask * 0.98)


# -------------------------------------------------------------------------------------------- studies
def _uid(rng: np.random.Generator) -> str:
    """A deterministic UID under the UUID-derived root 2.25 (seeded)."""
    return "2.25." + str(int.from_bytes(rng.bytes(15), "big"))


def generate_study(seed: int, *, views: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION),
                   shape: tuple[int, int] | None = None, difficulty: str = "realistic",
                   anatomy: dict | None = None) -> PhantomStudy:
    """Generate one synthetic patient's lateral cervical study (seeded, deterministic).

    ``shape=None`` picks a realistic detector size (about 900-3000 px); a small shape such as (512, 512)
    renders fast for training. ``difficulty`` is ``easy`` (no rotation, shoulders, collimation or text),
    ``realistic`` or ``hard``.

    ``anatomy`` (opt-in) renders a given patient instead of a sampled one: a dict as returned by
    ``pipelines.mri.phantom.xray_anatomy(virtual_patient)`` (body depth/height, disc heights, segment angles,
    Pavlov ratios, osteophytes, spinous lengths), so that the X-ray and MRI phantoms show the same patient.
    Its optional keys ``posterior_osteophyte_mm`` and ``calcified_herniation_mm`` (5 values, C2-C3..C6-C7) add
    the radiographic signs of canal encroachment (posterior spurs, calcified disc herniation; see
    ``_draw_canal_encroachment``).
    Everything else (dynamics, acquisition) is still drawn from ``seed``; without it the output is unchanged.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if not views:
        raise ValueError("at least one view is needed")
    views = tuple(View(v) for v in views)
    rng = np.random.default_rng(seed)
    p = _sample_patient(rng, seed, views, shape, difficulty, anatomy)
    uid_rng = np.random.default_rng([seed, 7])
    study_uid = _uid(uid_rng)
    out: dict[View, PhantomView] = {}
    for view in views:
        out[view] = generate_view(p, view, np.random.default_rng([seed, list(View).index(view) + 1]),
                                  uid=_uid(uid_rng))
    truth = [m for pv in out.values() for m in pv.truth]
    if View.FLEXION in out and View.EXTENSION in out:
        truth += _dynamic_truth(out[View.FLEXION], out[View.EXTENSION])
    from pipelines.xray.findings import findings_from_measurements

    return PhantomStudy(seed=seed, params=p, views=out, truth=truth,
                        findings=findings_from_measurements(truth), study_uid=study_uid)


def _dynamic_truth(flex: PhantomView, ext: PhantomView) -> list[Measurement]:
    """|flexion - extension| of the per-segment translation and posterior-wall angle (paper 002)."""
    out: list[Measurement] = []
    for key, unit in (("listhesis_distance", "mm"), ("listhesis_angle", "deg")):
        f = {m.site: m.value for m in flex.truth if m.key == key}
        e = {m.site: m.value for m in ext.truth if m.key == key}
        for seg in SEGMENTS:
            out.append(Measurement(key=key, name=MEASUREMENT_NAMES[key], value=abs(f[seg] - e[seg]), unit=unit,
                                   site=seg, view=None, image_uids=(flex.sop_instance_uid, ext.sop_instance_uid),
                                   reason="phantom ground truth: |flexion - extension|"))
    return out


# ------------------------------------------------------------------------------------------------ DICOM
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
VIEW_LABELS: dict[View, str] = {View.NEUTRAL: "NEUTRAL", View.FLEXION: "FLEXION", View.EXTENSION: "EXTENSION"}
"""Text written for each view (SeriesDescription, ImageComments, AcquisitionDeviceProcessingDescription)."""


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


def view_dataset(study: PhantomStudy, pv: PhantomView, *, patient_id: str | None = None,
                 series_number: int = 1, transfer_syntax: str | None = None,
                 study_datetime: _dt.datetime | None = None):
    """The DX For Presentation dataset of one phantom view.

    The view label goes into (a) ``ViewCodeSequence`` = SCT 399173006/399198007 left/right lateral with a
    ``ViewModifierCodeSequence`` of SCT 9964006 "Flexion" or 24154002 "Extension" (none for neutral), and
    (b) the texts ``SeriesDescription`` ("C-SPINE LAT FLEXION"), ``ImageComments`` and
    ``AcquisitionDeviceProcessingDescription``. Each view is its own series (as most DX/CR modalities send
    separate exposures), all in one study.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

    ts = UID(transfer_syntax or ExplicitVRLittleEndian)
    rng = np.random.default_rng([study.seed, 99, list(View).index(pv.view)])
    p = study.params
    date = _dt.date(2024, 1, 1) + _dt.timedelta(days=int(study.seed % 700))
    time_s = f"{9 + study.seed % 8:02d}{(study.seed * 7) % 60:02d}{(series_number * 13) % 60:02d}"
    study_time = f"{9 + study.seed % 8:02d}0000"
    if study_datetime is not None:  # opt-in: a given study date/time (series a few seconds apart)
        date = study_datetime.date()
        study_time = study_datetime.strftime("%H%M%S")
        time_s = (study_datetime + _dt.timedelta(seconds=13 * series_number)).strftime("%H%M%S")
    pid = patient_id or f"PHANTOM-{study.seed:06d}"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = pv.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = pv.sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date.strftime("%Y%m%d")
    ds.StudyTime = study_time
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time_s
    ds.AccessionNumber = f"ACC{study.seed:07d}"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "cspine-node phantom"
    ds.InstitutionName = "Synthetic"
    ds.ReferringPhysicianName = ""
    ds.StationName = "PHANTOM"
    ds.StudyDescription = "XR CERVICAL SPINE FLEX/EXT"
    label = VIEW_LABELS[pv.view]
    ds.SeriesDescription = f"C-SPINE LAT {label}"
    ds.ManufacturerModelName = "cspine-node xray phantom"
    ds.PatientName = f"Phantom^{study.seed:06d}"
    ds.PatientID = pid
    ds.PatientBirthDate = f"{1950 + study.seed % 40}0101"
    ds.PatientSex = "M" if study.seed % 5 < 3 else "F"
    ds.BodyPartExamined = "CSPINE"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "cspine-node-phantom-1"
    ds.AcquisitionDeviceProcessingDescription = f"C-SPINE LATERAL {label}"
    ds.ImagerPixelSpacing = [f"{v:.6g}" for v in pv.imager_pixel_spacing_mm]
    ds.PixelSpacing = [f"{v / pv.magnification:.6g}" for v in pv.imager_pixel_spacing_mm]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "Imager pixel spacing / estimated radiographic magnification"
    ds.EstimatedRadiographicMagnificationFactor = f"{pv.magnification:.6g}"
    ds.DistanceSourceToDetector = "1800"
    ds.DistanceSourceToPatient = f"{1800 / pv.magnification:.1f}"
    ds.KVP = str(int(rng.integers(65, 85)))
    ds.ExposureTime = str(int(rng.integers(10, 40)))
    ds.XRayTubeCurrent = str(int(rng.integers(200, 400)))
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorID = "PHANTOM-DET"
    ds.PositionerType = "NONE"
    ds.ViewPosition = "LL"
    view_code = _code("399173006", "SCT", "left lateral")
    if pv.view == View.FLEXION:
        view_code.ViewModifierCodeSequence = [_code("9964006", "SCT", "Flexion")]
    elif pv.view == View.EXTENSION:
        view_code.ViewModifierCodeSequence = [_code("24154002", "SCT", "Extension")]
    else:
        view_code.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [view_code]
    ds.AnatomicRegionSequence = [_code("122494005", "SCT", "Cervical spine")]
    ds.PatientOrientation = ["A" if p.facing > 0 else "P", "F"]
    ds.ImageLaterality = "U"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = _uid(np.random.default_rng([study.seed, 11, series_number]))
    ds.StudyID = f"{study.seed % 100000}"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImageComments = f"Synthetic phantom, view: {label}"
    ds.BurnedInAnnotation = "YES" if p.images[pv.view].text else "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = pv.photometric
    ds.Rows, ds.Columns = pv.shape
    ds.BitsAllocated = 16
    ds.BitsStored = pv.bits_stored
    ds.HighBit = pv.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if pv.photometric == "MONOCHROME2" else 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY" if pv.photometric == "MONOCHROME2" else "INVERSE"
    lo, hi = np.percentile(pv.pixels[::4, ::4], [1, 99])
    ds.WindowCenter = f"{(lo + hi) / 2:.0f}"
    ds.WindowWidth = f"{max(hi - lo, 16):.0f}"
    # VOILUTFunction is left out: LINEAR is its default, and OHIF 3.13 refuses to display DX images that carry it
    ds.QualityControlImage = "NO"
    ds.AcquisitionContextSequence = []
    ds.PatientIdentityRemoved = "NO"
    ds.PixelData = np.ascontiguousarray(pv.pixels, dtype="<u2").tobytes()
    if ts.is_compressed:
        ds.compress(ts, arr=pv.pixels)
    elif ts != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ts
    return ds


def write_study(study: PhantomStudy, out_dir: Path, *, patient_id: str | None = None,
                transfer_syntax: str = "1.2.840.10008.1.2.1", study_datetime: _dt.datetime | None = None) -> list[Path]:
    """Write each view as a DX For Presentation DICOM file ``<view>.dcm`` into ``out_dir``.

    ``transfer_syntax`` defaults to Explicit VR Little Endian; compressed syntaxes supported by pydicom's
    encoders (RLE Lossless, JPEG-LS / JPEG 2000 lossless where installed) also work.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (view, pv) in enumerate(study.views.items(), start=1):
        ds = view_dataset(study, pv, patient_id=patient_id, series_number=n, transfer_syntax=transfer_syntax,
                          study_datetime=study_datetime)
        path = out_dir / f"{view.value}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_coco(studies: list[PhantomStudy], out_dir: Path, *, image_format: str = "dcm") -> Path:
    """Write the images and one COCO-keypoints JSON (``annotations.json``) into ``out_dir``.

    ``image_format`` ``"dcm"``: the DX DICOM files (``images/<seed>/<view>.dcm``); ``"png"``: 16-bit PNG of
    the stored values converted to MONOCHROME2 (bright bone). The JSON is read by
    :func:`pipelines.xray.annotations.read_coco`.
    """
    from pipelines.xray.annotations import AnnotatedImage, write_coco_json

    if image_format not in ("dcm", "png"):
        raise ValueError(f"image_format must be 'dcm' or 'png', got {image_format!r}")
    out_dir = Path(out_dir)
    items: list[AnnotatedImage] = []
    for st in studies:
        folder = out_dir / "images" / f"{st.seed:06d}"
        if image_format == "dcm":
            paths = dict(zip(st.views, write_study(st, folder), strict=True))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            paths = {}
            for view, pv in st.views.items():
                arr = pv.pixels
                if pv.photometric == "MONOCHROME1":
                    arr = ((1 << pv.bits_stored) - 1 - arr.astype(np.int32)).astype(np.uint16)
                arr = (arr.astype(np.uint32) << (16 - pv.bits_stored)).astype(np.uint16)
                path = folder / f"{view.value}.png"
                Image.fromarray(arr).save(path)
                paths[view] = path
        for view, pv in st.views.items():
            items.append(AnnotatedImage(
                image_path=paths[view], keypoints=pv.keypoints.copy(), visible=pv.visible.copy(),
                pixel_spacing_mm=pv.pixel_spacing_mm, view=view, measurements=list(pv.truth),
                width=pv.shape[1], height=pv.shape[0], study_uid=st.study_uid, image_uid=pv.sop_instance_uid,
                spacing_source="ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor (phantom truth)"))
    return write_coco_json(items, out_dir / "annotations.json",
                           extra_info={"generator": "pipelines.xray.phantom", "seeds": [s.seed for s in studies],
                                       "dynamic_truth": {st.study_uid: [_m_json(m) for m in st.truth if m.view is None]
                                                         for st in studies}})


def _m_json(m: Measurement) -> dict:
    return {"key": m.key, "site": m.site, "value": m.value, "unit": m.unit,
            "view": m.view.value if m.view else None}


def cli(argv: list[str] | None = None) -> int:
    """``phantom xray --out DIR --seed N --count K [--shape R C] [--coco] [--difficulty D]``."""
    ap = argparse.ArgumentParser(prog="cspine-node phantom xray",
                                 description="Write synthetic lateral cervical radiograph studies (DX DICOM).")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first study (study i uses seed + i)")
    ap.add_argument("--count", type=int, default=1, help="number of studies")
    ap.add_argument("--shape", type=int, nargs=2, metavar=("ROWS", "COLS"), help="image size (default realistic)")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="realistic")
    ap.add_argument("--coco", action="store_true", help="also write COCO-keypoints JSON with the ground truth")
    ap.add_argument("--png", action="store_true", help="with --coco: PNG images instead of DICOM for the COCO set")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    studies = []
    for i in range(args.count):
        st = generate_study(args.seed + i, shape=tuple(args.shape) if args.shape else None,
                            difficulty=args.difficulty)
        paths = write_study(st, args.out / f"study_{args.seed + i:06d}")
        print(f"seed {args.seed + i}: {len(paths)} files in {paths[0].parent}")
        studies.append(st)
    if args.coco:
        path = write_coco(studies, args.out / "coco", image_format="png" if args.png else "dcm")
        print(f"COCO keypoints: {path}")
    return 0

