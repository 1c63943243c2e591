"""Upper cervical (C0-C2) extension of the X-ray phantom: six abnormalities with their radiographic signs.

:func:`generate_upper_cervical_study` builds the *same patient* as :func:`pipelines.phantoms.xray.generate_study`
(same seed -> same sampled C2-C7 anatomy, views, acquisition and the same 30 keypoints), then samples the
C0-C2 anatomy and six abnormalities from a **separate** random stream and renders the three views again with
the upper cervical structures drawn by this module. ``generate_study`` itself is not touched: its output for a
given seed stays byte-identical.

Why re-render rather than paint over the rendered pixels: atlantoaxial instability, os odontoideum and an
odontoid fracture *move* the C1 arch or a part of the dens; painting on the finished radiograph cannot remove
the default arch. Every study (normal or not) goes through the same renderer, so the model cannot learn a
"was edited" shortcut. The renderer reuses the X-ray phantom's public rendering API (``render.Projection``, the
``draw`` functions, ``render.develop``: soft tissue, C2-C7 bodies, posterior elements, skull, mandible, tone
curve, noise, collimation, burned-in text), leaves out its C1 arches, clivus and C2 body
(``draw_bones(omit=...)``) and draws them from the model in :mod:`pipelines.phantoms.xray.upper_cervical_geometry`.

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

from dataclasses import dataclass, field

import numpy as np

from pipelines.phantoms.xray.anatomy import PatientParams, unit_vector
from pipelines.phantoms.xray.draw import BONE_PARTS, Canvas, chamfer, draw_bones, draw_soft_tissue
from pipelines.phantoms.xray.render import Projection, develop, unit_image
from pipelines.phantoms.xray.sampling import DIFFICULTIES, sample_patient
from pipelines.phantoms.xray.upper_cervical_geometry import upper_geometry
from pipelines.vocabulary import UPPER_CERVICAL_LABELS, View

__all__ = [
    "EXCLUSIVE_PAIRS",
    "UC_LANDMARKS",
    "UpperCervicalAnatomy",
    "UpperCervicalView",
    "UpperCervicalStudy",
    "sample_anatomy",
    "generate_upper_cervical_study",
]

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
    """uint16 stored values (inverted when MONOCHROME1), like :class:`pipelines.phantoms.xray.render.PhantomView`."""
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


@dataclass
class UpperCervicalStudy:
    seed: int
    params: PatientParams
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


# ---------------------------------------------------------------------------------------------- rendering
def _render(p: PatientParams, a: UpperCervicalAnatomy, view: View, rng: np.random.Generator) -> UpperCervicalView:
    ip = p.images[view]
    pr = Projection.of(p, view)
    ch = pr.chain
    canvas = Canvas(pr.work_shape)
    draw_soft_tissue(canvas, p, ch, pr.to_w, pr.mm_w, ip, rng, pr.img_up)
    bones = Canvas(pr.work_shape)
    draw_bones(bones, p, ch, pr.to_w, pr.mm_w, rng, omit=BONE_PARTS)  # C2 body, C1 arches, clivus: drawn below

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

    up2 = unit_vector(ch.phi[0] + 90.0 + p.wall_tilt_deg[0])
    ant2 = unit_vector(ch.phi[0] + p.wedge_deg[0])
    pa = inv(ch.spinolaminar[0] + up2 * 11 - ant2 * 2)  # the X-ray phantom's C1 posterior-arch centre
    g = upper_geometry(a, view, depth, pa)
    ds = rng.uniform(0.8, 1.15)
    px_mm = 1.0 / pr.mm_w
    # C2 outline with this module's dens: PI, anterior wall, AS, dens, PS, posterior wall
    dens = f(g.c2_dens)
    mid_ant = 0.5 * (ai2 + as2) - 0.4 * u * rng.uniform(0.5, 1.2)
    outline = np.concatenate([[pi2, 0.5 * (pi2 + ai2) + 0.3 * n, ai2, mid_ant, as2], dens, [ps2, 0.5 * (ps2 + pi2) + 0.2 * u]])
    outline = chamfer(outline, ch.corners[0], 0.5)
    bones.rimmed(pr.to_w(outline), px_mm, 1.25 * ds, 0.55 * ds)
    for pts, rim, cort, trab in g.polys:
        bones.rimmed(pr.to_w(f(pts)), rim * px_mm, cort * ds, trab * ds)
    for pts, dens_ in g.fills:
        bones.poly(pr.to_w(f(pts)), dens_ * ds)

    pixels = develop(canvas, bones, pr, p, view, rng)
    kps = pr.to_px(np.concatenate([ch.corners.reshape(24, 2), ch.spinolaminar]))
    lms = {name: tuple(float(c) for c in pr.to_px(f(q))) for name, q in g.landmarks.items()}
    return UpperCervicalView(view=view, pixels=pixels, photometric=ip.photometric,
                             bits_stored=ip.bits_stored, pixel_spacing_mm=(pr.spacing_mm, pr.spacing_mm), keypoints=kps,
                             landmarks=lms, truth_mm=g.truth)  # type: ignore[arg-type]


def generate_upper_cervical_study(seed: int, *, shape: tuple[int, int] | None = None, difficulty: str = "realistic",
                                  views: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION),
                                  ) -> UpperCervicalStudy:
    """The patient of ``generate_study(seed, shape=shape, difficulty=difficulty, views=views)`` with C0-C2
    anatomy and the six upper cervical labels (see the module docstring), rendered again per view."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    views = tuple(View(v) for v in views)
    if not views:
        raise ValueError("at least one view is needed")
    # the same draws as generate_study: the same patient
    p = sample_patient(np.random.default_rng(seed), seed, views, shape, difficulty)
    rng = np.random.default_rng([seed, 1001])
    scale = float(np.mean(p.body_depth_mm) / 15.9)
    a = sample_anatomy(rng, scale)
    out = {view: _render(p, a, view, np.random.default_rng([seed, 1001, _VIEW_INDEX[view]])) for view in views}
    return UpperCervicalStudy(seed=seed, params=p, anatomy=a, views=out)
