"""Sampling the X-ray phantom's patient: anatomy, curve type, dynamics (flexion-extension) and acquisition.

One ``np.random.default_rng(seed)`` stream drives :func:`sample_patient`; the X-ray study and the upper cervical
phantom call it with the same seed to get the same patient.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.phantoms.xray.anatomy import ImageParams, PatientParams, ViewParams, build_chain
from pipelines.vocabulary import View

DIFFICULTIES = ("easy", "realistic", "hard")
CURVE_TYPES = ("lordotic", "straight", "kyphotic", "s_shaped")


def sample_patient(rng: np.random.Generator, seed: int, views: tuple[View, ...], shape: tuple[int, int] | None,
                   difficulty: str, anatomy: dict | None = None) -> PatientParams:
    """The patient of ``seed`` with the parameters of ``views`` (see ``generate_study`` for the arguments)."""
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
    as written by ``pipelines.phantoms.patient.xray_anatomy``; raises ValueError on a missing key or wrong length."""
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
    ch = build_chain(p, v.disc_angle_deg, v.translation_mm, 0.0)
    vec = ch.c2_centre - ch.corners[5, 2]
    r = float(np.hypot(*vec))
    theta = math.degrees(math.atan2(vec[1], vec[0]))
    ratio = float(np.clip(target_mm / r, -1.0, 1.0))
    delta = math.degrees(math.acos(ratio)) - theta
    return float(np.clip(delta, -40.0, 8.0))

