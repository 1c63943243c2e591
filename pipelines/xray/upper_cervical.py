"""Upper cervical (C0-C2) extension of the X-ray phantom: six abnormalities with their radiographic signs.

:func:`generate_upper_cervical_study` builds the *same patient* as :func:`pipelines.xray.phantom.generate_study`
(same seed -> same sampled C2-C7 anatomy, views, acquisition and the same 30 keypoints), then samples the
C0-C2 anatomy and six abnormalities from a **separate** random stream and renders the three views again with
the upper cervical structures drawn by this module. ``generate_study`` itself is not touched: its output for a
given seed stays byte-identical.

Why re-render rather than paint over the rendered pixels: atlantoaxial instability, os odontoideum and an
odontoid fracture *move* the C1 arch or a part of the dens; painting on the finished radiograph cannot remove
the default arch. Every study (normal or not) goes through the same renderer, so the model cannot learn a
"was edited" shortcut. The renderer reuses the phantom's drawing primitives (soft tissue, C2-C7 bodies,
posterior elements, skull, mandible, tone curve, noise, collimation, burned-in text) and replaces the
phantom's own C1 arches, clivus and C2 outline (dens) by the model below.

Random streams: anatomy and labels ``np.random.default_rng([seed, 1001])``, view ``k`` (neutral, flexion,
extension = 1, 2, 3) ``np.random.default_rng([seed, 1001, k])``. (``[seed, 1]`` .. ``[seed, 3]`` are already the
phantom's per-view streams, ``[seed, 7]``, ``[seed, 11, n]`` and ``[seed, 99, n]`` its UID/DICOM streams.)

**Frame.** Anatomy is in millimetres in the C2 frame: origin at the C2 postero-superior corner, ``x`` along the
C2 superior margin towards anterior, ``y`` perpendicular to it towards cranial. The dens axis is at
``x = 0.4 x C2 superior-margin depth``.

**The six abnormalities** (patient-level labels, ground truth by construction; all visible on a lateral
radiograph, several only when the three positions are compared):

=================================  =====  =====================================================================
key                                site   sign drawn on the radiographs
=================================  =====  =====================================================================
``atlantoaxial_instability``       C1-C2  the atlas (anterior arch, posterior arch, and an ossicle / dens fragment
                                          if present) translates >= 3 mm anteriorly relative to the C2 body from
                                          extension to flexion; with an intact dens the atlanto-dental interval
                                          (ADI) in flexion is > 3 mm (normal adult ADI <= 3 mm).
``os_odontoideum``                 C2     short rounded dens stump, separate round corticated ossicle 2-5 mm above
                                          it that moves with the C1 arch, hypertrophic (large, round) C1
                                          anterior arch.
``odontoid_fracture``              C2     type II (dens waist) fracture: a thin 0.8-1.5 mm lucent line across the
                                          dens base, the fragment of normal shape displaced 0.5-2 mm and angulated
                                          3-10 deg, moving with C1 between positions.
``basilar_invagination``           C0-C2  dens tip above McRae's line (basion-opisthion) on the neutral view
                                          (construction: >= 1.6 mm above; normal: >= 3.8 mm below).
``atlanto_occipital_assimilation`` C0-C1  the C1 posterior arch is fused to the occiput by a bony mass (no C0-C1
                                          lucent gap) and the occiput does not move relative to C1 between
                                          flexion and extension (it does by 2-9 deg otherwise).
``atlantodental_osteoarthritis``   C1-C2  narrowed atlanto-dental joint (ADI 0.3-0.9 mm in every position),
                                          beak osteophytes at the dens tip and the C1 arch, subchondral
                                          sclerosis of the anterior dens surface.
=================================  =====  =====================================================================

Dependencies between labels (so that a model can learn them): os odontoideum and odontoid fracture are
mutually exclusive (one dens lesion per patient), atlantoaxial instability and atlanto-dental osteoarthritis
are mutually exclusive (a widened vs a narrowed joint). Conditional dependence: P(instability | os) = 0.7,
P(instability | fracture) = 0.5, otherwise 0.08; P(basilar invagination | assimilation) = 0.6, otherwise 0.06.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pipelines.results import View
from pipelines.xray import phantom as _ph

__all__ = [
    "UPPER_CERVICAL_LABELS",
    "LABEL_NAMES",
    "LABEL_SITES",
    "EXCLUSIVE_PAIRS",
    "UC_LANDMARKS",
    "UpperCervicalAnatomy",
    "UpperCervicalView",
    "UpperCervicalStudy",
    "sample_anatomy",
    "unit_image",
    "generate_upper_cervical_study",
]

UPPER_CERVICAL_LABELS: tuple[str, ...] = (
    "atlantoaxial_instability",
    "os_odontoideum",
    "odontoid_fracture",
    "basilar_invagination",
    "atlanto_occipital_assimilation",
    "atlantodental_osteoarthritis",
)
"""Label order of the upper cervical (C0-C2) multi-label classifier."""

LABEL_NAMES: dict[str, str] = {
    "atlantoaxial_instability": "Atlantoaxial instability",
    "os_odontoideum": "Os odontoideum",
    "odontoid_fracture": "Odontoid (dens) fracture, type II",
    "basilar_invagination": "Basilar invagination",
    "atlanto_occipital_assimilation": "Atlanto-occipital assimilation",
    "atlantodental_osteoarthritis": "Atlanto-dental osteoarthritis",
}
LABEL_SITES: dict[str, str] = {
    "atlantoaxial_instability": "C1-C2",
    "os_odontoideum": "C2",
    "odontoid_fracture": "C2",
    "basilar_invagination": "C0-C2",
    "atlanto_occipital_assimilation": "C0-C1",
    "atlantodental_osteoarthritis": "C1-C2",
}
EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (
    ("os_odontoideum", "odontoid_fracture"),
    ("atlantoaxial_instability", "atlantodental_osteoarthritis"),
)
"""Label pairs that never occur together in the phantom (by construction)."""

UC_LANDMARKS: tuple[str, ...] = ("dens_tip", "dens_anterior", "c1_arch_posterior", "basion", "opisthion",
                                 "c1_posterior_arch", "c2_top")
"""Upper cervical landmarks returned per view (pixels): ``dens_anterior`` is the anterior dens (or ossicle /
fragment) surface at the height of the C1 anterior arch, ``c1_arch_posterior`` the posterior surface of the
anterior arch there (ADI = their distance), ``c2_top`` the midpoint of the C2 superior margin corners."""

_VIEW_INDEX = {View.NEUTRAL: 1, View.FLEXION: 2, View.EXTENSION: 3}


@dataclass(frozen=True)
class UpperCervicalAnatomy:
    """C0-C2 construction parameters of one patient (mm, deg; C2 frame, see the module docstring)."""

    labels: dict[str, bool]
    dens_half_width: float
    dens_height: float
    stump_height: float
    """Os odontoideum: height of the dens stump; fracture: height of the fracture line; else = dens height."""
    gap: float
    """Os: gap stump-ossicle; fracture: width of the lucent line; else 0."""
    ossicle_r: tuple[float, float]
    fragment_shift: float
    """Os / fracture: constant sagittal displacement of the ossicle / fragment (anterior +), mm."""
    fragment_angle: float
    adi0: float
    """Atlanto-dental interval in neutral with no translation, mm."""
    c1_translation: dict[View, float]
    """Anterior translation of the atlas relative to the C2 body per view, mm."""
    c1_rotation: dict[View, float]
    """Rotation of C1 relative to C2 per view (deg, positive = extension: anterior end cranial)."""
    c0_rotation: dict[View, float]
    """Rotation of the occiput relative to C1 per view (deg, 0 with assimilation)."""
    arch_size: tuple[float, float]
    """C1 anterior arch: antero-posterior depth, cranio-caudal height, mm."""
    arch_height: float
    """Height of the anterior arch centre above the C2 top (C2 frame y), mm."""
    basion: tuple[float, float]
    """Basion relative to the dens tip (x anterior, y cranial) in the neutral C1 frame, mm."""
    mcrae_length: float
    mcrae_angle: float
    """Opisthion = basion + length x (-cos, sin)(angle): posterior, angle > 0 rising posteriorly."""
    spur_mm: float


@dataclass
class UpperCervicalView:
    """One rendered radiograph of the upper cervical phantom with its ground truth."""

    view: View
    pixels: np.ndarray
    """uint16 stored values (inverted when MONOCHROME1), like :class:`pipelines.xray.phantom.PhantomView`."""
    photometric: str
    bits_stored: int
    pixel_spacing_mm: tuple[float, float]
    """(row, col) at the patient plane."""
    keypoints: np.ndarray
    """(30, 2) the C2-C7 keypoints (identical to ``generate_study``'s for the same seed and shape)."""
    landmarks: dict[str, tuple[float, float]]
    """:data:`UC_LANDMARKS` -> (x, y) px."""
    truth_mm: dict[str, float]
    """``adi``, ``bdi``, ``dens_above_mcrae`` (positive = above), ``c1_translation``, ``c0_c1_angle`` (deg)."""

    def unit_image(self) -> np.ndarray:
        """float32 [0, 1] bone bright (see :func:`unit_image`)."""
        return unit_image(self.pixels, self.photometric)


def unit_image(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Phantom stored values -> float32 [0, 1] bone bright, as ``image_from_dataset`` returns them for the DX
    file the phantom writes (linear VOI window of the 1-99 % percentiles, then the percentile stretch)."""
    from pipelines.xray.preprocessing import to_unit_range

    px = pixels.astype(np.float32)
    lo, hi = np.percentile(pixels[::4, ::4], [1, 99])
    px = np.clip(px, lo, max(hi, lo + 16))
    return to_unit_range(px, monochrome1=photometric == "MONOCHROME1")


@dataclass
class UpperCervicalStudy:
    seed: int
    params: _ph.PatientParams
    anatomy: UpperCervicalAnatomy
    views: dict[View, UpperCervicalView] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, bool]:
        return dict(self.anatomy.labels)

    def label_vector(self) -> np.ndarray:
        """(6,) float32 0/1 in :data:`UPPER_CERVICAL_LABELS` order."""
        return np.array([self.anatomy.labels[k] for k in UPPER_CERVICAL_LABELS], dtype=np.float32)


# ------------------------------------------------------------------------------------------------ sampling
def sample_anatomy(rng: np.random.Generator, scale: float = 1.0) -> UpperCervicalAnatomy:
    """Sample the labels (with their dependencies) and the C0-C2 geometry of one patient."""
    lesion = rng.choice(["none", "os", "fracture"], p=[0.76, 0.12, 0.12])
    os_, fx = lesion == "os", lesion == "fracture"
    assim = bool(rng.random() < 0.15)
    bi = bool(rng.random() < (0.6 if assim else 0.06))
    aai = bool(rng.random() < (0.7 if os_ else 0.5 if fx else 0.08))
    oa = bool((not aai) and (not os_) and (not fx) and rng.random() < 0.2)
    labels = dict(zip(UPPER_CERVICAL_LABELS, (aai, bool(os_), bool(fx), bi, assim, oa), strict=True))

    s = scale
    w = rng.uniform(4.3, 5.3) * s
    h = rng.uniform(13.5, 16.5) * s
    stump, gap, shift, ang = h, 0.0, 0.0, 0.0
    ossicle = (0.0, 0.0)
    if os_:
        stump = h * rng.uniform(0.3, 0.45)
        gap = rng.uniform(2.0, 5.0)
        ossicle = (rng.uniform(3.8, 5.0) * s, rng.uniform(3.5, 4.6) * s)
        shift = rng.choice([-1, 1]) * rng.uniform(0.0, 1.5)
    elif fx:
        stump = rng.uniform(2.0, 4.0) * s
        gap = rng.uniform(0.8, 1.5)
        shift = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)
        ang = rng.choice([-1, 1]) * rng.uniform(3.0, 10.0)
    if oa:
        adi0 = rng.uniform(0.3, 0.9)
        t = {View.NEUTRAL: 0.0, View.FLEXION: rng.uniform(0, 0.1), View.EXTENSION: -rng.uniform(0, 0.1)}
    elif aai:
        adi0 = rng.uniform(1.0, 2.4)
        t = {View.NEUTRAL: rng.uniform(0.5, 2.0), View.FLEXION: rng.uniform(3.0, 6.0),
             View.EXTENSION: -rng.uniform(0.0, 1.0)}
    else:
        adi0 = rng.uniform(1.0, 2.4)
        t = {View.NEUTRAL: 0.0, View.FLEXION: rng.uniform(0.0, 0.5), View.EXTENSION: -rng.uniform(0.0, 0.4)}
    r1 = {View.NEUTRAL: 0.0, View.FLEXION: -rng.uniform(2, 6), View.EXTENSION: rng.uniform(2, 6)}
    r0 = ({v: 0.0 for v in View} if assim else
          {View.NEUTRAL: 0.0, View.FLEXION: -rng.uniform(2, 7), View.EXTENSION: rng.uniform(3, 9)})
    arch = (rng.uniform(7.0, 8.2), rng.uniform(11.5, 13.0)) if os_ else (rng.uniform(4.8, 6.0), rng.uniform(9.0, 11.0))
    arch_h = h * rng.uniform(0.55, 0.65)
    if bi:
        basion = (rng.uniform(3.0, 6.0), rng.uniform(-6.0, -2.0))
    else:
        basion = (rng.uniform(0.0, 3.0), rng.uniform(4.0, 8.0))
    return UpperCervicalAnatomy(
        labels=labels, dens_half_width=float(w), dens_height=float(h), stump_height=float(stump), gap=float(gap),
        ossicle_r=(float(ossicle[0]), float(ossicle[1])), fragment_shift=float(shift), fragment_angle=float(ang),
        adi0=float(adi0), c1_translation={k: float(v) for k, v in t.items()},
        c1_rotation={k: float(v) for k, v in r1.items()}, c0_rotation={k: float(v) for k, v in r0.items()},
        arch_size=(float(arch[0]), float(arch[1])), arch_height=float(arch_h),
        basion=(float(basion[0]), float(basion[1])), mcrae_length=float(rng.uniform(32, 38)),
        mcrae_angle=float(rng.uniform(-4, 4)), spur_mm=float(rng.uniform(1.8, 3.2)))


# ----------------------------------------------------------------------------------------------- geometry
def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    v = np.asarray(v, dtype=float)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def _ellipse(c: np.ndarray, rx: float, ry: float, deg: float = 0.0, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(c) + _rot(np.stack([rx * np.cos(t), ry * np.sin(t)], axis=-1), deg)


@dataclass
class _Upper:
    """All C0-C2 polygons and landmarks of one view in the C2 frame (mm)."""

    c2_dens: np.ndarray
    """Dens (or stump) outline points, posterior base -> anterior base order reversed as drawn in C2's outline."""
    polys: list[tuple[np.ndarray, float, float, float]]
    """(outline, rim mm, cortical, trabecular) rimmed structures."""
    fills: list[tuple[np.ndarray, float]]
    """(outline, density) plain fills (sclerosis, fusion mass)."""
    landmarks: dict[str, np.ndarray]
    truth: dict[str, float]


def _upper_geometry(a: UpperCervicalAnatomy, view: View, depth: float, pa: np.ndarray) -> _Upper:
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
    return _Upper(c2_dens=c2_dens, polys=polys, fills=fills, landmarks=landmarks, truth=truth)


# ---------------------------------------------------------------------------------------------- rendering
class _FilteringCanvas(_ph._Canvas):
    """Records the phantom's bone drawing calls so that its own C1 arches, clivus and C2 outline can be left out."""

    def __init__(self, shape: tuple[int, int]):
        super().__init__(shape)
        self.calls: list[tuple[str, tuple]] = []

    def poly(self, pts: np.ndarray, density: float) -> None:
        self.calls.append(("poly", (pts, density)))

    def rimmed(self, pts: np.ndarray, rim_px: float, cortical: float, trabecular: float) -> None:
        self.calls.append(("rimmed", (pts, rim_px, cortical, trabecular)))

    def replay(self, target: _ph._Canvas, skip_rimmed: set[int]) -> None:
        k = 0
        for kind, args in self.calls:
            if kind == "rimmed":
                if k not in skip_rimmed:
                    target.rimmed(*args)
                k += 1
            else:
                target.poly(*args)


_N_RIMMED = 25
"""Rimmed calls of the phantom's ``_draw_bones``: 6 bodies, T1, 6 x (pillar, spinous), C1 ring, C1 posterior
arch, skull, mastoid, clivus, mandible. Indices left out: 0 (C2 body with the dens), 19 (C1 ring), 20 (C1
posterior arch), 23 (clivus)."""
_SKIP = {0, _N_RIMMED - 6, _N_RIMMED - 5, _N_RIMMED - 2}


def _render(p: _ph.PatientParams, a: UpperCervicalAnatomy, view: View, rng: np.random.Generator) -> UpperCervicalView:
    v = p.views[view]
    ip = p.images[view]
    rows, cols = ip.shape
    ch = _ph._build_chain(p, v.disc_angle_deg, v.translation_mm, v.c7_angle_deg)
    sp = ip.imager_pixel_spacing_mm / ip.magnification
    rot = math.radians(v.rotation_deg)
    cr, sr = math.cos(rot), math.sin(rot)
    lin = np.array([[cr, sr], [-sr, cr]]) @ np.array([[float(p.facing), 0.0], [0.0, -1.0]])
    origin = ch.corners[5, 3]

    def to_px(q: np.ndarray) -> np.ndarray:
        return (np.asarray(q) - origin) @ lin.T / sp + np.asarray(v.anchor_px)

    k = min(1.0, 1100.0 / max(rows, cols))
    wshape = (max(int(round(rows * k)), 8), max(int(round(cols * k)), 8))
    ky, kx = wshape[0] / rows, wshape[1] / cols

    def to_w(q: np.ndarray) -> np.ndarray:
        px = to_px(q)
        return np.column_stack([(px[..., 0] + 0.5) * kx - 0.5, (px[..., 1] + 0.5) * ky - 0.5])

    mm_w = sp / kx
    canvas = _ph._Canvas(wshape)
    img_up = np.linalg.solve(lin, np.array([0.0, -1.0]))
    img_up /= np.hypot(*img_up)
    _ph._draw_soft_tissue(canvas, p, ch, to_w, mm_w, ip, rng, img_up)
    rec = _FilteringCanvas((1, 1))
    _ph._draw_bones(rec, p, ch, to_w, mm_w, rng)
    n_rimmed = sum(1 for kind, _ in rec.calls if kind == "rimmed")
    if n_rimmed != _N_RIMMED:
        raise RuntimeError(f"phantom _draw_bones made {n_rimmed} rimmed calls, expected {_N_RIMMED}: "
                           "update pipelines.xray.upper_cervical._SKIP")
    bones = _ph._Canvas(wshape)
    rec.replay(bones, _SKIP)

    # C2 frame
    as2, ai2, ps2, pi2 = ch.corners[0]
    depth = float(np.hypot(*(as2 - ps2)))
    u = (as2 - ps2) / depth
    n = np.array([-u[1], u[0]])

    def f(q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        return ps2 + q[..., :1] * u + q[..., 1:2] * n

    def inv(q: np.ndarray) -> np.ndarray:
        d = np.asarray(q) - ps2
        return np.array([d @ u, d @ n])

    up2 = _ph._e(ch.phi[0] + 90.0 + p.wall_tilt_deg[0])
    ant2 = _ph._e(ch.phi[0] + p.wedge_deg[0])
    pa = inv(ch.spinolaminar[0] + up2 * 11 - ant2 * 2)
    g = _upper_geometry(a, view, depth, pa)
    ds = rng.uniform(0.8, 1.15)
    px_mm = 1.0 / mm_w
    # C2 outline with this module's dens: PI, anterior wall, AS, dens, PS, posterior wall
    dens = f(g.c2_dens)
    mid_ant = 0.5 * (ai2 + as2) - 0.4 * u * rng.uniform(0.5, 1.2)
    outline = np.concatenate([[pi2, 0.5 * (pi2 + ai2) + 0.3 * n, ai2, mid_ant, as2], dens, [ps2, 0.5 * (ps2 + pi2) + 0.2 * u]])
    outline = _ph._chamfer(outline, ch.corners[0], 0.5)
    bones.rimmed(to_w(outline), px_mm, 1.25 * ds, 0.55 * ds)
    for pts, rim, cort, trab in g.polys:
        bones.rimmed(to_w(f(pts)), rim * px_mm, cort * ds, trab * ds)
    for pts, dens_ in g.fills:
        bones.poly(to_w(f(pts)), dens_ * ds)

    tex = rng.standard_normal(wshape, dtype=np.float32)
    tex *= np.float32(0.18)
    tex += np.float32(1.0)
    tex *= bones.a
    canvas.a += tex
    att = ndimage.gaussian_filter(canvas.a, max(ip.blur_mm / mm_w, 0.5), truncate=2.5)
    pixels = _ph._expose(att, wshape, (rows, cols), ip, view, p, rng)
    kps = to_px(np.concatenate([ch.corners.reshape(24, 2), ch.spinolaminar]))
    lms = {name: tuple(float(c) for c in to_px(f(q))) for name, q in g.landmarks.items()}
    return UpperCervicalView(view=view, pixels=pixels, photometric=ip.photometric,
                             bits_stored=ip.bits_stored, pixel_spacing_mm=(sp, sp), keypoints=kps,
                             landmarks=lms, truth_mm=g.truth)  # type: ignore[arg-type]


def generate_upper_cervical_study(seed: int, *, shape: tuple[int, int] | None = None, difficulty: str = "realistic",
                                  views: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION),
                                  ) -> UpperCervicalStudy:
    """The patient of ``generate_study(seed, shape=shape, difficulty=difficulty, views=views)`` with C0-C2
    anatomy and the six upper cervical labels (see the module docstring), rendered again per view."""
    if difficulty not in _ph.DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {_ph.DIFFICULTIES}, got {difficulty!r}")
    views = tuple(View(v) for v in views)
    if not views:
        raise ValueError("at least one view is needed")
    # the same draws as generate_study: the same patient
    p = _ph._sample_patient(np.random.default_rng(seed), seed, views, shape, difficulty)
    rng = np.random.default_rng([seed, 1001])
    scale = float(np.mean(p.body_depth_mm) / 15.9)
    a = sample_anatomy(rng, scale)
    out = {view: _render(p, a, view, np.random.default_rng([seed, 1001, _VIEW_INDEX[view]])) for view in views}
    return UpperCervicalStudy(seed=seed, params=p, anatomy=a, views=out)
