"""One rendered sagittal MR series of a virtual patient (T2 or T1 weighted), seeded, CPU, about 0.5 s a series.

``MriPhantom``: a volume ``(slices, rows, columns)`` of uint16, its plane geometry, and the ground truth that
follows from the rendered anatomy (canal grade from the residual canal diameter, cord compression, foraminal
grade, disc centres on the mid-sagittal slice, disc and canal masks). Image pixel ``(x, y) = (u, v) /
pixel_spacing`` (pixel centres, as in ``pipelines.results``); anterior is on the image left. Slices are sagittal
with ImageOrientationPatient ``[0, 1, 0, 0, 0, -1]`` and are ordered from the patient's right to left (see
:mod:`pipelines.phantoms.mri.anatomy` for the coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from pipelines.phantoms.mri.anatomy import (
    AIR,
    ANNULUS,
    BRAIN,
    CANAL_GRADE_NAMES,
    CORD,
    CSF,
    HERNIATION,
    MARROW,
    MYELO,
    NUCLEUS,
    NUCLEUS_DEG,
    SpineGeometry,
    canal_grade,
    spine_curve,
)
from pipelines.phantoms.mri.truth import LevelTruth
from pipelines.phantoms.mri.upper import UpperAnatomy
from pipelines.phantoms.patient import DISC_POSITIVE, VirtualPatient, virtual_patient
from pipelines.results import Finding
from pipelines.vocabulary import FINDING_NAMES, LEVELS, TASKS, TRUTH_RULES


@dataclass
class MriPhantom:
    """One rendered sagittal series of a virtual patient."""

    patient: VirtualPatient
    weighting: str
    volume: np.ndarray
    """uint16, shape (slices, rows, columns); slice 0 is the patient's rightmost."""
    pixel_spacing_mm: tuple[float, float]
    """(row spacing, column spacing) in mm."""
    slice_thickness_mm: float
    spacing_between_slices_mm: float
    slice_positions_mm: tuple[float, ...]
    """Lateral position ``w`` of each slice centre (mm, + patient left, 0 = patient midline)."""
    mid_slice: int
    levels: tuple[LevelTruth, ...]
    disc_mask: np.ndarray
    """int8 (rows, columns) on the mid-sagittal slice: 0 background, j+1 for disc ``LEVELS[j]``
    (graded discs only)."""
    canal_mask: np.ndarray
    """bool (rows, columns) on the mid-sagittal slice: the thecal sac (CSF + cord)."""
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.volume.shape)  # type: ignore[return-value]

    def findings(self) -> list[Finding]:
        """The per-level truth as ``Finding`` objects (same keys, names and sites as the pipeline)."""
        out = []
        for t in self.levels:
            for key in (*TASKS, "cord_compression"):
                pos = t.label(key)
                if key == "disc_degeneration":
                    ev = (f"disc {t.disc}",)
                elif key in ("canal_stenosis", "cord_compression"):
                    ev = (f"canal grade {t.canal_grade} ({CANAL_GRADE_NAMES[t.canal_grade]}), "
                          f"residual AP {t.canal_residual_mm:.1f} mm",)
                else:
                    side = key.rsplit("_", 1)[1]
                    ev = (f"foraminal narrowing {100 * getattr(t, f'foramen_narrowing_{side}'):.0f} %",)
                out.append(Finding(key=key, name=FINDING_NAMES[key], value="present" if pos else "absent",
                                   site=t.level, evidence=ev, threshold=TRUTH_RULES.get(key.rsplit("_", 1)[0]
                                   if key.startswith("foraminal") else key, "")))
        return out


SIGNAL: dict[str, list[float]] = {
    "T2": [0.0, 0.85, 0.22, 0.45, 0.06, 0.80, 0.28, 0.30, 0.36, 1.00, 0.42, 0.72, 0.08, 0.78, 0.32, 0.55,
           0.50, 0.02, 0.33, 0.04],
    "T1": [0.0, 0.95, 0.33, 0.70, 0.06, 0.42, 0.30, 0.30, 0.36, 0.13, 0.50, 0.40, 0.08, 0.88, 0.40, 0.20,
           0.55, 0.02, 0.42, 0.05],
}
"""Relative signal of each tissue label per weighting (T2, T1)."""


def generate_series(seed: int, *, weighting: str = "T2", shape: tuple[int, int] = (256, 256),
                    n_slices: int = 11, fov_mm: float = 240.0, slice_thickness_mm: float = 3.0,
                    spacing_between_slices_mm: float = 3.3, patient: VirtualPatient | None = None,
                    noise: float | None = None,
                    endplate_marrow: dict[str, tuple[float, float]] | None = None,
                    upper: bool = False) -> MriPhantom:
    """Render one sagittal series (deterministic for ``seed``, ``weighting`` and the geometry).

    ``shape`` is (rows, columns); pixels are square with ``fov_mm / columns`` mm. ``n_slices`` odd is
    best (a true mid-sagittal slice). The virtual patient comes from ``virtual_patient(seed)`` unless given.

    ``endplate_marrow`` (opt-in, used by ``pipelines.phantoms.outcome``): ``{level: (gain, texture)}`` scales
    the marrow of the two endplate zones (5 mm) next to disc ``level`` by ``gain`` and modulates it with a
    mottled texture (2 mm grain, relative amplitude ``texture``; 0 = a plain grey-level change), a
    Modic-like endplate change. Without it the output is unchanged.

    ``upper`` (opt-in, default off: the series of before, bit for bit): the anatomy above C2
    (:mod:`pipelines.phantoms.mri.upper`: dens, C1 arches, clivus, foramen magnum, occipital bone, brainstem,
    cerebellum, CSF spaces, nasopharynx) with the field of view moved up by a random amount
    (``UpperAnatomy.extra_mm``, drawn from its own stream of ``seed``); ``extra["upper"]`` holds its parameters.
    The truth keeps its meaning; the canal mask stops at the foramen magnum.
    """
    if weighting not in SIGNAL:
        raise ValueError(f"weighting must be one of {sorted(SIGNAL)}, not {weighting!r}")
    if n_slices < 7:
        raise ValueError("need at least 7 slices to reach the foramina")
    p = patient or virtual_patient(seed)
    rng = np.random.default_rng([seed, 7, 0 if weighting == "T2" else 1])
    grng = np.random.default_rng([seed, 11])  # positioning: same for T1 and T2 of one study
    rows, cols = shape
    ps = fov_mm / cols
    u0 = fov_mm * 0.47 + grng.normal(0, 6)
    v0 = rows * ps * 0.2 + grng.normal(0, 6)
    up = UpperAnatomy.draw(seed) if upper else None
    if up is None:
        curve = spine_curve(p, u0, v0)
    else:
        v0 += up.extra_mm
        curve = spine_curve(p, u0, v0, top=min(-90.0, -(v0 + 80.0)))
    # pixel -> (s, a) in spine coordinates
    uu, vv = np.meshgrid(np.arange(cols) * ps, np.arange(rows) * ps)
    tree = cKDTree(np.stack([curve["u"], curve["v"]], 1))
    _, idx = tree.query(np.stack([uu.ravel(), vv.ravel()], 1))
    idx = idx.reshape(rows, cols)
    s = curve["s"][idx]
    th = curve["tilt"][idx]
    a = (uu - curve["u"][idx]) * np.cos(th) - (vv - curve["v"][idx]) * np.sin(th)

    w_off = float(grng.uniform(-1.4, 1.4))
    mid = n_slices // 2
    positions = tuple(float((k - mid) * spacing_between_slices_mm - w_off) for k in range(n_slices))
    subs = np.array([-1 / 3, 0.0, 1 / 3]) * slice_thickness_mm
    lut = np.array(SIGNAL[weighting]) * rng.normal(1, 0.06, len(SIGNAL[weighting]))
    lut[AIR] = 0.0
    if up is not None:
        lut[BRAIN] *= up.brain_gain
    vol = np.zeros((n_slices, rows, cols), np.float32)
    geo = SpineGeometry(p, curve, s, a, upper=up)
    zones = _endplate_zones(seed, p, curve, s, a, ps, endplate_marrow) if endplate_marrow else None
    for k, w in enumerate(positions):
        acc = np.zeros((rows, cols), np.float32)
        for dw in subs:
            lab = geo.labels(w + dw)
            if zones is None:
                acc += lut[lab]
            else:
                marrow = lab == MARROW
                acc += np.where(marrow, lut[lab] * zones, lut[lab]).astype(np.float32)
            if k == mid and dw == 0.0:
                mid_labels, mid_level = lab, geo.disc_level_map()
        vol[k] = acc / len(subs)
    # texture, blur, bias field, noise
    tex = ndimage.gaussian_filter(rng.normal(0, 1, vol.shape).astype(np.float32), (0, 2.0, 2.0))
    vol *= 1 + 0.08 * tex / (tex.std() + 1e-6)
    vol = ndimage.gaussian_filter(vol, (0, 0.6, 0.6))
    yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    c = rng.normal(0, 0.25, 5)
    bias = np.exp(c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx**2 + c[4] * yy**2).astype(np.float32)
    vol *= bias[None]
    sigma = float(noise if noise is not None else rng.uniform(0.015, 0.045))
    re = vol + rng.normal(0, sigma, vol.shape).astype(np.float32)
    im = rng.normal(0, sigma, vol.shape).astype(np.float32)
    vol = np.sqrt(re**2 + im**2)  # Rician magnitude noise
    gain = rng.uniform(1500, 3000)
    volume = np.clip(vol * gain, 0, 4095).astype(np.uint16)

    canal_mask = np.isin(mid_labels, (CSF, CORD, MYELO))
    if up is not None:
        canal_mask &= ~geo.intracranial()
    disc_mask = np.where(np.isin(mid_labels, (NUCLEUS, ANNULUS, NUCLEUS_DEG, HERNIATION)), mid_level, 0).astype(np.int8)
    levels = []
    for j, lv in enumerate(LEVELS):
        st = p.levels[j]
        sd = curve["disc_centres"][j]
        i = int(np.argmin(np.abs(curve["s"] - sd)))
        resid = geo.residual_canal(sd, positions[mid])
        cg = canal_grade(resid, p.cord_ap_mm)
        fl, fr = st.foramen_narrowing_left, st.foramen_narrowing_right
        levels.append(LevelTruth(
            level=lv, disc=st.disc, disc_herniation=st.disc in DISC_POSITIVE, canal_residual_mm=round(resid, 3),
            canal_grade=cg, canal_stenosis=cg >= 2, cord_compression=cg >= 2, foramen_narrowing_left=fl,
            foramen_narrowing_right=fr, foraminal_stenosis_left=fl >= 0.5, foraminal_stenosis_right=fr >= 0.5,
            disc_centre_px=(float(curve["u"][i] / ps), float(curve["v"][i] / ps)),
        ))
    return MriPhantom(p, weighting, volume, (ps, ps), slice_thickness_mm, spacing_between_slices_mm, positions, mid,
                      tuple(levels), disc_mask, canal_mask,
                      {"noise_sigma": sigma, "seed": seed, **({"upper": up.to_dict()} if up is not None else {}),
                       "anchors_px": _anchors_px(curve, ps)})


def _anchors_px(curve: dict, ps: float) -> dict:
    """Truth for level identification by anatomy, in pixels (x, y) of the mid-sagittal slice (as
    ``LevelTruth.disc_centre_px``): ``c2`` the C2 vertebral-body centre (arc length 0 of the spine curve) and
    ``discs`` every disc centre of the curve (C2-C3 down to the last rendered disc below C7), level-agnostic."""
    def at(sv: float) -> tuple[float, float]:
        i = int(np.argmin(np.abs(curve["s"] - sv)))
        return float(curve["u"][i] / ps), float(curve["v"][i] / ps)

    return {"c2": at(float(curve["centres"][0])), "discs": [at(float(sd)) for sd in curve["disc_centres"]]}


def _endplate_zones(seed: int, p: VirtualPatient, curve: dict, s: np.ndarray, a: np.ndarray, ps: float,
                    spec: dict[str, tuple[float, float]]) -> np.ndarray:
    """Multiplier map of the marrow (1 outside the endplate zones of the levels in ``spec``)."""
    rng = np.random.default_rng([seed, 31])
    tex = ndimage.gaussian_filter(rng.normal(0, 1, s.shape), 1.0 / ps)
    tex = (tex / (tex.std() + 1e-6)).astype(np.float32)
    out = np.ones(s.shape, np.float32)
    for level, (gain, texture) in spec.items():
        j = LEVELS.index(level)
        sd, half = curve["disc_centres"][j], p.disc_height_mm[j] / 2
        zone = (np.abs(s - sd) > half - 0.5) & (np.abs(s - sd) < half + 5.0) & (np.abs(a) < max(p.body_depth_mm) / 2 + 1)
        out[zone] = gain * np.clip(1 + texture * tex[zone], 0.1, None)
    return out
