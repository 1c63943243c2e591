"""The X-ray phantom's true measurements, computed from the construction parameters.

Closed forms (angle sums, the disc placement formula), *not* :mod:`pipelines.xray.geometry`, so tests comparing
the two are not circular. Distances are at the patient plane.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipelines.phantoms.xray.anatomy import Chain, PatientParams, ViewParams, body_sdvb
from pipelines.results import Measurement
from pipelines.vocabulary import SEGMENTS, VERTEBRAE
from pipelines.xray.geometry import CANAL_LEVELS, MEASUREMENT_NAMES


def view_truth(p: PatientParams, v: ViewParams, ch: Chain, to_img_mm: Callable[[np.ndarray], np.ndarray],
               uid: str) -> list[Measurement]:
    """True per-view measurements of chain ``ch``; ``to_img_mm`` maps anatomical mm to image-aligned mm."""
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
        sdvb = body_sdvb(p, i)
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


def dynamic_truth(flex: list[Measurement], ext: list[Measurement], flex_uid: str, ext_uid: str) -> list[Measurement]:
    """|flexion - extension| of the per-segment translation and posterior-wall angle (paper 002), from the
    per-view truths of the flexion and extension images ``flex_uid`` and ``ext_uid``."""
    out: list[Measurement] = []
    for key, unit in (("listhesis_distance", "mm"), ("listhesis_angle", "deg")):
        f = {m.site: m.value for m in flex if m.key == key}
        e = {m.site: m.value for m in ext if m.key == key}
        for seg in SEGMENTS:
            out.append(Measurement(key=key, name=MEASUREMENT_NAMES[key], value=abs(f[seg] - e[seg]), unit=unit,
                                   site=seg, view=None, image_uids=(flex_uid, ext_uid),
                                   reason="phantom ground truth: |flexion - extension|"))
    return out
