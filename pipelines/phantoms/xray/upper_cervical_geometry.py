"""The C0-C2 structures of the upper cervical phantom in one view: polygons, landmarks and their true distances.

Frame: millimetres in the C2 frame (origin at the C2 postero-superior corner, ``x`` along the C2 superior margin
towards anterior, ``y`` perpendicular to it towards cranial), as in :mod:`pipelines.phantoms.xray.upper_cervical`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipelines.vocabulary import View

if TYPE_CHECKING:
    from pipelines.phantoms.xray.upper_cervical import UpperCervicalAnatomy


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    v = np.asarray(v, dtype=float)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def _ellipse(c: np.ndarray, rx: float, ry: float, deg: float = 0.0, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(c) + _rot(np.stack([rx * np.cos(t), ry * np.sin(t)], axis=-1), deg)


@dataclass
class UpperGeometry:
    """All C0-C2 polygons and landmarks of one view in the C2 frame (mm)."""

    c2_dens: np.ndarray
    """Dens (or stump) outline points, posterior base -> anterior base order reversed as drawn in C2's outline."""
    polys: list[tuple[np.ndarray, float, float, float]]
    """(outline, rim mm, cortical, trabecular) rimmed structures."""
    fills: list[tuple[np.ndarray, float]]
    """(outline, density) plain fills (sclerosis, fusion mass)."""
    landmarks: dict[str, np.ndarray]
    truth: dict[str, float]


def upper_geometry(a: UpperCervicalAnatomy, view: View, depth: float, pa: np.ndarray) -> UpperGeometry:
    """Construct the C0-C2 structures of one view in the C2 frame; ``pa`` = phantom C1 posterior-arch centre."""
    w, h, xd = a.dens_half_width, a.dens_height, 0.4 * depth
    t = a.c1_translation[view]
    r1, r0 = a.c1_rotation[view], a.c0_rotation[view]
    lab = a.labels
    polys: list[tuple[np.ndarray, float, float, float]] = []
    fills: list[tuple[np.ndarray, float]] = []

    def dens_outline(top: float, rounded: bool) -> np.ndarray:
        """Anterior base -> up -> tip arc -> posterior base (x, y)."""
        k = min(4.0, 0.45 * top) if rounded else 0.0
        side = top - k
        arc = np.linspace(0, np.pi, 9)
        tip = np.stack([xd + w * np.cos(arc), side + max(k, 0.5) * np.sin(arc)], axis=-1)
        return np.concatenate([[[xd + w + 0.6, 0.0], [xd + w, min(2.0, side)], [xd + w, side]], tip[1:-1],
                               [[xd - w, side], [xd - w, min(2.0, side)], [xd - w - 0.6, 0.0]]])

    # the dens (or its stump) belongs to the C2 outline
    os_, fx = lab["os_odontoideum"], lab["odontoid_fracture"]
    c2_dens = dens_outline(a.stump_height, rounded=not fx) if (os_ or fx) else dens_outline(h, True)
    # C1: pivot at the posterior surface of the anterior arch
    arch_y = a.arch_height
    if os_:
        oc = np.array([xd + a.fragment_shift + t, a.stump_height + a.gap + a.ossicle_r[1]])
        front = oc[0] + a.ossicle_r[0] * math.sqrt(max(0.0, 1 - ((arch_y - oc[1]) / a.ossicle_r[1]) ** 2))
        front = max(front, oc[0])
        pivot = np.array([front + a.adi0, arch_y])
    else:
        front = xd + w + (a.fragment_shift + t if fx else 0.0)
        pivot = np.array([front + a.adi0 + (0.0 if fx else t), arch_y])

    def c1(p: np.ndarray) -> np.ndarray:
        """C1-attached point (given for the view's translation, unrotated) -> rotated about the pivot."""
        return pivot + _rot(np.asarray(p) - pivot, r1)

    ad, ah = a.arch_size
    arch_c = pivot + np.array([ad / 2, 0.0])
    arch = c1(_ellipse(arch_c, ad / 2, ah / 2, n=20))
    polys.append((arch, 1.0, 1.0, 0.5))
    # posterior arch of C1 (moves with the atlas)
    pa_v = pa + np.array([t, 0.0])
    parch = np.array([pa_v + (6, 3), pa_v + (-14, 3), pa_v + (-22, 1), pa_v + (-22, -5), pa_v + (-12, -4),
                      pa_v + (6, -3)])
    polys.append((c1(parch), 1.0, 0.9, 0.45))
    if os_:
        polys.append((c1(_ellipse(oc, a.ossicle_r[0], a.ossicle_r[1], n=20)), 1.2, 1.25, 0.55))
    if fx:
        base = a.stump_height + a.gap
        frag = dens_outline(h - base, True) + np.array([a.fragment_shift + t, base])
        frag = frag[1:-1]  # no flare at the fragment's base
        fc = np.array([xd + a.fragment_shift + t, base])
        frag = fc + _rot(frag - fc, a.fragment_angle)
        polys.append((c1(frag), 0.8, 1.25, 0.55))
    if lab["atlantodental_osteoarthritis"]:
        s = a.spur_mm
        top = h - min(4.0, 0.45 * h)
        fills.append((np.array([[xd + w - 1.6, 2.5], [xd + w, 2.5], [xd + w, top], [xd + w - 1.6, top]]), 0.45))
        polys.append((np.array([[xd + w - 1.2, top - 1.0], [xd + w + 0.2, top - 2.0], [xd + w + 0.6 + 0.5 * s, top + s],
                                [xd + w - 1.5, top + 0.6]]), 0.5, 1.2, 0.8))
        ab = pivot + np.array([0.3, -ah / 2 + 0.8])
        polys.append((c1(np.array([ab + (0, 1.5), ab + (-0.6 - 0.4 * s, -s), ab + (1.8, 0.2)])), 0.5, 1.2, 0.8))
        at = pivot + np.array([0.3, ah / 2 - 0.8])
        polys.append((c1(np.array([at + (0, -1.5), at + (-0.5 - 0.3 * s, s), at + (1.8, -0.2)])), 0.5, 1.2, 0.8))

    # occiput: basion / opisthion from the dens tip of the neutral construction, attached to C1
    tip0 = np.array([xd, h]) if not os_ else np.array([xd, a.stump_height + a.gap + 2 * a.ossicle_r[1]])
    bas = tip0 + np.array(a.basion) + np.array([t, 0.0])
    mc = math.radians(a.mcrae_angle)
    opi = bas + a.mcrae_length * np.array([-math.cos(mc), math.sin(mc)])
    cond = np.array([xd - 3.0 + t, arch_y + 9.0])  # occipital condyles: C0-C1 pivot

    def c0(p: np.ndarray) -> np.ndarray:
        return c1(cond + _rot(np.asarray(p) - cond, r0))

    clivus = np.array([bas + (0, 0.5), bas + (20, 30), bas + (12, 38), bas + (-5, 6)])
    polys.append((c0(clivus), 1.5, 1.1, 0.7))
    sq = np.array([opi, opi + (-10, 7), opi + (-22, 20), opi + (-30, 36), opi + (-34, 34), opi + (-26, 17),
                   opi + (-13, 4) + (0, 5), opi + (1, 4)])
    polys.append((c0(sq), 1.5, 1.2, 0.6))
    if lab["atlanto_occipital_assimilation"]:
        top = pa_v[1] + 3.0
        mass = np.array([[pa_v[0] + 5, top - 1], [pa_v[0] - 16, top - 1], [opi[0] - 6, opi[1] + 3],
                         [opi[0] + 4, opi[1] + 2]])
        fills.append((c1(mass), 0.6))

    # landmarks and truth (C2 frame, mm)
    if os_:
        dens_tip = c1(np.array([oc[0], oc[1] + a.ossicle_r[1]]))
        dens_ant = c1(np.array([front, arch_y]))
    elif fx:
        base = a.stump_height + a.gap
        fc = np.array([xd + a.fragment_shift + t, base])
        dens_tip = c1(fc + _rot(np.array([0.0, h - base]), a.fragment_angle))
        dens_ant = c1(np.array([front, arch_y]))
    else:
        dens_tip = tip0.copy()
        dens_ant = np.array([xd + w, arch_y])
    arch_post = pivot.copy()
    b_v, o_v = c0(bas), c0(opi)
    d = o_v - b_v
    nrm = np.array([-d[1], d[0]]) / np.hypot(*d)
    if nrm[1] < 0:
        nrm = -nrm
    landmarks = {"dens_tip": dens_tip, "dens_anterior": dens_ant, "c1_arch_posterior": arch_post, "basion": b_v,
                 "opisthion": o_v, "c1_posterior_arch": c1(pa_v), "c2_top": np.array([depth / 2, 0.0])}
    truth = {"adi": float(np.hypot(*(arch_post - dens_ant))), "bdi": float(np.hypot(*(b_v - dens_tip))),
             "dens_above_mcrae": float((dens_tip - b_v) @ nrm), "c1_translation": float(t),
             "c0_c1_angle": float(r0)}
    return UpperGeometry(c2_dens=c2_dens, polys=polys, fills=fills, landmarks=landmarks, truth=truth)
