"""Synthetic cervical sagittal MR series with per-level ground truth (seeded, CPU, about 0.5 s a series).

The phantom has two layers:

* ``VirtualPatient`` - the anatomy and the disease of one virtual patient, in millimetres and degrees,
  independent of any modality: vertebral body heights and depths, disc heights, the tilt of every
  vertebra (so the C2-C7 lordosis), the developmental canal diameter, and per level (C2-C3 .. C6-C7)
  the disc state (normal, bulge, protrusion, extrusion), posterior osteophytes, ligamentum flavum
  thickening and left/right foraminal narrowing. The same ``VirtualPatient`` is meant to drive the
  X-ray phantom so that both modalities of one patient agree (see ``VirtualPatient.to_dict``).
* ``MriPhantom`` - one rendered sagittal series of that patient (T2 or T1 weighted): a volume
  ``(slices, rows, columns)`` of uint16, its plane geometry, and the ground truth that follows from the
  rendered anatomy (canal grade from the residual canal diameter, cord compression, foraminal grade,
  disc centres on the mid-sagittal slice, disc and canal masks).

Conventions. In-plane phantom coordinates are ``u`` (mm, image x, towards posterior) and ``v`` (mm,
image y, towards inferior); image pixel ``(x, y) = (u, v) / pixel_spacing`` (pixel centres, as in
``pipelines.results``). Anterior is on the image left. ``w`` (mm) is the lateral position, positive
towards the patient's left (DICOM LPS +x). Slices are sagittal with ImageOrientationPatient
``[0, 1, 0, 0, 0, -1]`` and are ordered from the patient's right to left. ``s`` (mm) is the arc length
along the spinal curve (downwards), ``a`` (mm) the signed distance from it (posterior positive).

Truth rules (thresholds in one place, ``TRUTH_RULES``): disc herniation = protrusion or extrusion;
canal stenosis = residual mid-sagittal canal AP diameter below cord diameter + 1 mm (no CSF left in
front of and behind the cord: cord contact or deformity, Kang grade >= 2); cord compression = the same;
foraminal stenosis = narrowing >= 50 % of the foraminal AP width.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from pipelines.results import Finding

LEVELS: tuple[str, ...] = ("C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7")
"""The graded disc levels (paper 002 grades C2-3 .. C6-7)."""
VERTEBRAE_RENDERED: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3")
DISC_STATES: tuple[str, ...] = ("normal", "bulge", "protrusion", "extrusion")
DISC_POSITIVE = frozenset({"protrusion", "extrusion"})
FORAMEN_LATERAL_MM = 14.0
"""Lateral distance (mm) of the foraminal centre from the mid-sagittal plane."""

TRUTH_RULES: dict[str, str] = {
    "disc_degeneration": "protrusion or extrusion (vs normal or bulge), as in paper 002",
    "canal_stenosis": "residual canal AP < cord AP + 1 mm at the disc level (Kang grade >= 2)",
    "foraminal_stenosis": "foraminal AP narrowing >= 50 %",
}
CANAL_GRADE_NAMES = ("none", "mild (CSF partly effaced)", "moderate (cord contact/deformity)",
                     "severe (cord compression, T2 signal change)")

FINDING_NAMES: dict[str, str] = {
    "disc_degeneration": "Intervertebral disc herniation (protrusion or extrusion)",
    "canal_stenosis": "Spinal canal stenosis",
    "foraminal_stenosis_left": "Left intervertebral foramen stenosis",
    "foraminal_stenosis_right": "Right intervertebral foramen stenosis",
    "cord_compression": "Spinal cord compression",
}
TASKS: tuple[str, ...] = ("disc_degeneration", "canal_stenosis", "foraminal_stenosis_left", "foraminal_stenosis_right")


# --------------------------------------------------------------------------------------------- patient


@dataclass(frozen=True)
class LevelState:
    """Degeneration of one disc level, as sampled (modality independent; mm)."""

    level: str
    disc: str
    """One of ``DISC_STATES``."""
    herniation_mm: float
    """Posterior extent of disc material beyond the posterior vertebral line at its peak (mm)."""
    herniation_w_mm: float
    """Lateral centre of the herniation (mm, + patient left)."""
    herniation_halfwidth_mm: float
    migration_mm: float
    """Extrusions only: cranial (<0) or caudal (>0) migration of the fragment along the spine (mm)."""
    osteophyte_mm: float
    """Posterior endplate osteophyte (mm)."""
    flavum_mm: float
    """Ligamentum flavum thickening / buckling into the canal (mm)."""
    foramen_narrowing_left: float
    """Fraction 0..0.9 of the foraminal AP width lost on the patient's left."""
    foramen_narrowing_right: float
    disc_height_mm: float


@dataclass(frozen=True)
class VirtualPatient:
    """Anatomy and degeneration of one virtual patient (mm, degrees); drives MRI and X-ray phantoms.

    Vertebra lists follow ``VERTEBRAE_RENDERED`` (C2..T3); disc lists the 8 discs C2-C3..T2-T3.
    ``tilt_deg`` is the angle of each vertebra's cranio-caudal axis from the image vertical, positive
    when going down moves posterior; the C2-C7 Cobb angle (lordosis positive) is ``tilt[C7] - tilt[C2]``.
    """

    seed: int
    patient_id: str
    age: int
    sex: str
    degeneration: float
    """Global degeneration 0..1 (rises with age)."""
    body_height_mm: tuple[float, ...]
    body_depth_mm: tuple[float, ...]
    body_halfwidth_mm: float
    disc_height_mm: tuple[float, ...]
    tilt_deg: tuple[float, ...]
    canal_ap_mm: float
    """Developmental mid-sagittal canal AP diameter (mm) behind the vertebral bodies (SDVC)."""
    canal_halfwidth_mm: float
    cord_ap_mm: float
    cord_halfwidth_mm: float
    spinous_length_mm: tuple[float, ...]
    levels: tuple[LevelState, ...]

    @property
    def cobb_c2_c7_deg(self) -> float:
        """C2-C7 Cobb angle from the vertebral tilts (deg, lordosis positive)."""
        return self.tilt_deg[5] - self.tilt_deg[0]

    def level(self, name: str) -> LevelState:
        return self.levels[LEVELS.index(name)]

    def to_dict(self) -> dict:
        """JSON-ready parameters (what an X-ray phantom needs: heights, depths, tilts, canal AP, id)."""
        d = asdict(self)
        d["vertebrae"] = list(VERTEBRAE_RENDERED)
        d["cobb_c2_c7_deg"] = self.cobb_c2_c7_deg
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VirtualPatient:
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in keys}
        kw["levels"] = tuple(LevelState(**lv) for lv in d["levels"])
        return cls(**kw)


CALCIFIED_HERNIATION_FRACTION = 0.5
"""Share of disc herniations (protrusion, extrusion) that are calcified ("hard disc", disc-osteophyte complex) and
therefore visible on a radiograph; the others are soft and invisible there (drawn by ``xray_anatomy``)."""


def calcified_herniation_mm(p: VirtualPatient) -> tuple[float, ...]:
    """Per level C2-C3..C6-C7: the posterior extent (mm) of a calcified herniation, 0 for none or a soft one.

    Whether a herniation is calcified is drawn per level from the patient's seed (deterministic), with
    probability ``CALCIFIED_HERNIATION_FRACTION``; bulges are never drawn (they stay within ~2 mm)."""
    rng = np.random.default_rng([p.seed, 4004])
    draws = rng.random(len(p.levels))
    return tuple(float(lv.herniation_mm) if lv.disc in DISC_POSITIVE and u < CALCIFIED_HERNIATION_FRACTION else 0.0
                 for lv, u in zip(p.levels, draws, strict=True))


def xray_anatomy(p: VirtualPatient, *, signs: bool = True) -> dict[str, object]:
    """The virtual patient's anatomy in the field names of ``pipelines.xray.phantom.PatientParams`` (C2..C7).

    The X-ray phantom renders the *same* patient with it (``generate_study(seed, anatomy=...)``). Segment angles
    are lordosis-positive tilt differences; the Pavlov ratio is the canal AP over the body depth; disc heights
    carry the disc-space narrowing of degenerate levels; ``patient_id`` is shared so the node can pair the
    studies. With ``signs`` (default) the radiographic signs of canal encroachment are added per segment:
    ``posterior_osteophyte_mm`` (the posterior endplate osteophyte of the MRI phantom) and
    ``calcified_herniation_mm`` (``calcified_herniation_mm(p)``). Ligamentum flavum thickening and soft
    herniations, which also narrow the canal on MRI, have no radiographic sign and are not passed on.
    """
    tilt = p.tilt_deg
    extra: dict[str, object] = {}
    if signs:
        extra = {"posterior_osteophyte_mm": tuple(float(lv.osteophyte_mm) for lv in p.levels),
                 "calcified_herniation_mm": calcified_herniation_mm(p)}
    return {
        "seed": p.seed,
        "patient_id": p.patient_id,
        "body_depth_mm": p.body_depth_mm[:6],
        "body_height_mm": p.body_height_mm[:6],
        "disc_height_mm": tuple(lv.disc_height_mm for lv in p.levels),
        "segment_angle_deg": tuple(tilt[i + 1] - tilt[i] for i in range(5)),
        "cobb_c2_c7_deg": p.cobb_c2_c7_deg,
        "pavlov": tuple(p.canal_ap_mm / d for d in p.body_depth_mm[:6]),
        "osteophytes": (False,) + tuple(lv.osteophyte_mm > 1.0 for lv in p.levels),
        "spinous_length_mm": p.spinous_length_mm[:6],
        **extra,
    }


def cord_compression_truth(p: VirtualPatient, seed: int | None = None) -> tuple[bool, ...]:
    """Per level C2-C3..C6-C7: ``LevelTruth.cord_compression`` of ``generate_series(seed, patient=p)`` without
    rendering (about 1 ms): the residual canal on the series' mid-sagittal slice against the cord AP.

    ``seed`` (default ``p.seed``) fixes the lateral position of the mid slice, as in ``generate_series``."""
    return tuple(g >= 2 for g in canal_grades(p, seed))


def canal_grades(p: VirtualPatient, seed: int | None = None) -> tuple[int, ...]:
    """Per level: the canal grade (0..3) of ``generate_series(seed, patient=p)`` (mid slice), without rendering."""
    seed = p.seed if seed is None else seed
    grng = np.random.default_rng([seed, 11])  # the same draws as generate_series: u0, v0, then the slice offset
    grng.normal(0, 6)
    grng.normal(0, 6)
    w_mid = -float(grng.uniform(-1.4, 1.4))
    return tuple(canal_grade(r, p.cord_ap_mm) for r in residual_canal_mm(p, w_mid))


def virtual_patient(seed: int, *, patient_id: str | None = None) -> VirtualPatient:
    """Sample one virtual patient (deterministic for a seed)."""
    rng = np.random.default_rng([seed, 2002])
    age = int(rng.integers(28, 82))
    sex = "M" if rng.random() < 0.6 else "F"
    deg = float(np.clip((age - 28) / 54 * 0.95 + rng.normal(0.05, 0.22), 0, 1))
    scale = 1.0 if sex == "M" else 0.93
    nv = len(VERTEBRAE_RENDERED)
    heights = np.array([15.5, 13.5, 13.3, 13.3, 13.6, 14.5, 16.5, 17.5, 18.0]) * scale * rng.normal(1, 0.05, nv)
    depths = np.array([15.5, 15.5, 15.8, 16.2, 16.8, 17.5, 19.0, 21.0, 22.0]) * scale * rng.normal(1, 0.04, nv)
    base = rng.normal(8.0, 5.0)
    lordosis = rng.normal(20.0, 11.0)
    tilts = [base + lordosis * (i / 5 - 0.5) for i in range(6)]
    tilts += [tilts[-1] + 3.0 * k for k in (1, 2, 3)]
    canal = float(np.clip(rng.normal(14.0, 1.4), 10.8, 17.5)) * scale ** 0.5
    cord_ap = float(np.clip(rng.normal(7.3, 0.5), 6.0, 8.6))
    weights = (0.45, 0.8, 1.0, 1.2, 0.95)
    levels = []
    disc_heights = []
    for j, lv in enumerate(LEVELS):
        sev = float(np.clip(deg * weights[j] + rng.normal(0, 0.22), 0, 1.2))
        r = rng.random()
        if sev < 0.2:
            disc = "normal" if r < 0.8 else "bulge"
        elif sev < 0.42:
            disc = ("normal", "bulge", "protrusion")[int(np.searchsorted([0.3, 0.75], r))]
        elif sev < 0.68:
            disc = ("bulge", "protrusion", "extrusion")[int(np.searchsorted([0.35, 0.85], r))]
        else:
            disc = ("bulge", "protrusion", "extrusion")[int(np.searchsorted([0.2, 0.7], r))]
        hern = {"normal": 0.0, "bulge": rng.uniform(0.8, 1.8), "protrusion": rng.uniform(2.2, 4.0),
                "extrusion": rng.uniform(3.8, 6.5)}[disc]
        hw = {"normal": 0.0, "bulge": 11.0, "protrusion": rng.uniform(5.0, 7.5),
              "extrusion": rng.uniform(4.0, 6.0)}[disc]
        w0 = 0.0 if disc in ("normal", "bulge") else float(np.clip(rng.normal(0, 1.8), -3.5, 3.5))
        mig = float(rng.choice([-1, 1]) * rng.uniform(2.5, 5.0)) if disc == "extrusion" else 0.0
        dh = float(rng.normal(5.8, 0.4) * (1 - 0.45 * min(sev, 1.0)))
        disc_heights.append(max(dh, 2.5))
        osteo = float(max(0.0, rng.normal(2.0 * sev, 0.6))) if sev > 0.3 else 0.0
        flavum = float(max(0.0, rng.normal(3.0 * sev, 0.8)))
        fl = [float(np.clip(sev * rng.uniform(0.3, 1.25) + rng.normal(0, 0.13), 0, 0.9)) for _ in range(2)]
        levels.append(LevelState(lv, disc, float(hern), w0, float(hw), mig, osteo, flavum, fl[0], fl[1], disc_heights[-1]))
    disc_heights += [float(rng.normal(5.5, 0.4)) for _ in range(3)]  # C7-T1, T1-T2, T2-T3
    spinous = tuple(float(x) for x in np.array([26, 16, 15, 16, 20, 28, 28, 27, 26]) * rng.normal(1, 0.1, nv))
    return VirtualPatient(
        seed=seed, patient_id=patient_id or f"CSP{seed:06d}", age=age, sex=sex, degeneration=deg,
        body_height_mm=tuple(float(x) for x in heights), body_depth_mm=tuple(float(x) for x in depths),
        body_halfwidth_mm=float(rng.normal(10.5, 0.6) * scale), disc_height_mm=tuple(disc_heights),
        tilt_deg=tuple(float(t) for t in tilts), canal_ap_mm=canal,
        canal_halfwidth_mm=float(rng.normal(12.0, 0.6)), cord_ap_mm=cord_ap,
        cord_halfwidth_mm=float(rng.normal(6.0, 0.4)), spinous_length_mm=spinous, levels=tuple(levels),
    )


# ----------------------------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class LevelTruth:
    """Ground truth of one graded level as it appears in the rendered series."""

    level: str
    disc: str
    disc_herniation: bool
    canal_residual_mm: float
    """Mid-sagittal residual canal AP diameter at the disc level (mm)."""
    canal_grade: int
    """0 none, 1 mild, 2 moderate (cord contact/deformity), 3 severe (compression + T2 signal)."""
    canal_stenosis: bool
    cord_compression: bool
    foramen_narrowing_left: float
    foramen_narrowing_right: float
    foraminal_stenosis_left: bool
    foraminal_stenosis_right: bool
    disc_centre_px: tuple[float, float]
    """Disc centre (x, y) in pixels of the mid-sagittal slice."""

    def label(self, task: str) -> bool:
        """The binary label of one of ``TASKS``."""
        return bool(getattr(self, {"disc_degeneration": "disc_herniation"}.get(task, task)))


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


# ------------------------------------------------------------------------------------------- rendering

# tissue labels
(AIR, FAT, MUSCLE, MARROW, CORTEX, NUCLEUS, ANNULUS, NUCLEUS_DEG, HERNIATION, CSF, CORD, MYELO, LIGAMENT,
 FORAMEN_FAT, ROOT, FACET, BRAIN, AIRWAY, SOFT, VESSEL) = range(20)
_LUT = {
    "T2": [0.0, 0.85, 0.22, 0.45, 0.06, 0.80, 0.28, 0.30, 0.36, 1.00, 0.42, 0.72, 0.08, 0.78, 0.32, 0.55,
           0.50, 0.02, 0.33, 0.04],
    "T1": [0.0, 0.95, 0.33, 0.70, 0.06, 0.42, 0.30, 0.30, 0.36, 0.13, 0.50, 0.40, 0.08, 0.88, 0.40, 0.20,
           0.55, 0.02, 0.42, 0.05],
}


def _spine_curve(p: VirtualPatient, u0: float, v0: float, ds: float = 0.2) -> dict:
    """Vertebra/disc positions along the arc and the dense curve (u, v, tilt) sampled every ``ds`` mm."""
    h, dh = np.array(p.body_height_mm), np.array(p.disc_height_mm)
    centres = [0.0]
    for i in range(1, len(h)):
        centres.append(centres[-1] + h[i - 1] / 2 + dh[i - 1] + h[i] / 2)
    centres = np.array(centres)
    top, bottom = -90.0, centres[-1] + h[-1] / 2 + 90.0
    s = np.arange(top, bottom, ds)
    tilt = np.radians(np.interp(s, centres, p.tilt_deg))
    du, dv = np.sin(tilt) * ds, np.cos(tilt) * ds
    i0 = int(np.argmin(np.abs(s)))
    u = np.cumsum(du) - np.cumsum(du)[i0] + u0
    v = np.cumsum(dv) - np.cumsum(dv)[i0] + v0
    disc_centres = np.array([centres[i] + h[i] / 2 + dh[i] / 2 for i in range(len(h) - 1)])
    return {"s": s, "u": u, "v": v, "tilt": tilt, "centres": centres, "disc_centres": disc_centres}


def _profile(x: np.ndarray, centre: float, half: float) -> np.ndarray:
    """Smooth bump 1 at ``centre`` falling to 0 at ``centre +- half``."""
    t = np.clip(1 - ((x - centre) / half) ** 2, 0, None)
    return t


def generate_series(seed: int, *, weighting: str = "T2", shape: tuple[int, int] = (256, 256),
                    n_slices: int = 11, fov_mm: float = 240.0, slice_thickness_mm: float = 3.0,
                    spacing_between_slices_mm: float = 3.3, patient: VirtualPatient | None = None,
                    noise: float | None = None,
                    endplate_marrow: dict[str, tuple[float, float]] | None = None) -> MriPhantom:
    """Render one sagittal series (deterministic for ``seed``, ``weighting`` and the geometry).

    ``shape`` is (rows, columns); pixels are square with ``fov_mm / columns`` mm. ``n_slices`` odd is
    best (a true mid-sagittal slice). The virtual patient comes from ``virtual_patient(seed)`` unless given.

    ``endplate_marrow`` (opt-in, used by ``pipelines.outcome.phantom``): ``{level: (gain, texture)}`` scales
    the marrow of the two endplate zones (5 mm) next to disc ``level`` by ``gain`` and modulates it with a
    mottled texture (2 mm grain, relative amplitude ``texture``; 0 = a plain grey-level change), a
    Modic-like endplate change. Without it the output is unchanged.
    """
    if weighting not in _LUT:
        raise ValueError(f"weighting must be one of {sorted(_LUT)}, not {weighting!r}")
    if n_slices < 7:
        raise ValueError("need at least 7 slices to reach the foramina")
    p = patient or virtual_patient(seed)
    rng = np.random.default_rng([seed, 7, 0 if weighting == "T2" else 1])
    grng = np.random.default_rng([seed, 11])  # positioning: same for T1 and T2 of one study
    rows, cols = shape
    ps = fov_mm / cols
    u0 = fov_mm * 0.47 + grng.normal(0, 6)
    v0 = rows * ps * 0.2 + grng.normal(0, 6)
    curve = _spine_curve(p, u0, v0)
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
    lut = np.array(_LUT[weighting]) * rng.normal(1, 0.06, len(_LUT[weighting]))
    lut[AIR] = 0.0
    vol = np.zeros((n_slices, rows, cols), np.float32)
    geo = _Geometry(p, curve, s, a)
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
                      tuple(levels), disc_mask, canal_mask, {"noise_sigma": sigma, "seed": seed})


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


def residual_canal_mm(p: VirtualPatient, w_mm: float = 0.0) -> tuple[float, ...]:
    """Residual canal AP (mm) at each disc level C2-C3..C6-C7 in the sagittal plane at lateral position ``w_mm``
    (0: the midline, where the phantom paints the cord signal), as rendered."""
    curve = _spine_curve(p, 0.0, 0.0)
    geo = _Geometry(p, curve, np.zeros((1, 1)), np.zeros((1, 1)))
    return tuple(geo.residual_canal(float(sd), w_mm) for sd in curve["disc_centres"][: len(LEVELS)])


def canal_grade(residual_mm: float, cord_ap_mm: float) -> int:
    """Canal grade 0..3 of a residual canal (mm): 0 none, 1 mild, 2 cord contact/deformity, 3 cord compressed
    with T2 cord signal change (``CANAL_GRADE_NAMES``)."""
    if residual_mm >= cord_ap_mm + 2.5:
        return 0
    if residual_mm >= cord_ap_mm + 1.0:
        return 1
    if residual_mm >= 0.72 * cord_ap_mm:
        return 2
    return 3


class _Geometry:
    """Paints tissue labels of one sagittal plane at lateral position ``w`` in spine coordinates."""

    def __init__(self, p: VirtualPatient, curve: dict, s: np.ndarray, a: np.ndarray) -> None:
        self.p, self.s, self.a = p, s.astype(np.float32), a.astype(np.float32)
        self.centres = curve["centres"]
        self.disc_centres = curve["disc_centres"]
        h, dh = np.array(p.body_height_mm), np.array(p.disc_height_mm)
        self.h, self.dh = h, dh
        d = np.array(p.body_depth_mm)
        self.d = d
        # 1D profiles along s (grid) for continuous structures
        self.sg = np.arange(-120.0, self.centres[-1] + 120.0, 0.25)
        self.depth_s = np.interp(self.sg, self.centres, d)
        # encroachment profiles at the graded levels
        self.front = np.zeros_like(self.sg)  # anterior encroachment (mm) at w = 0 (osteophyte part)
        self.back = np.zeros_like(self.sg)  # flavum
        for j, st in enumerate(p.levels):
            sd = self.disc_centres[j]
            self.front = np.maximum(self.front, st.osteophyte_mm * _profile(self.sg, sd, dh[j] / 2 + 2.0))
            self.back = np.maximum(self.back, st.flavum_mm * _profile(self.sg, sd + 1.0, dh[j] / 2 + 4.0))
        self.canal_front = self.depth_s / 2 + 1.0  # PLL + epidural fat
        near = (self.a > -30) & (self.a < 75)
        self.vbox = [self._box(near & (np.abs(self.s - c) < h[i] / 2 + 16)) for i, c in enumerate(self.centres)]
        self.pbox = [self._box((self.a > 0) & (self.a < 75) & (np.abs(self.s - c) < h[i] / 2 + 22))
                     for i, c in enumerate(self.centres)]
        self.grade3 = [j for j in range(len(LEVELS))
                       if canal_grade(self.residual_canal(self.disc_centres[j], 0.0), p.cord_ap_mm) == 3]
        self.dbox = [self._box(near & (np.abs(self.s - c) < dh[j] / 2 + 12)) for j, c in enumerate(self.disc_centres)]

    @staticmethod
    def _box(m: np.ndarray) -> tuple[slice, slice]:
        r, c = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(r) == 0:
            return (slice(0, 0), slice(0, 0))
        return (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))

    # herniation depth at (s, w) beyond the posterior vertebral line (mm)
    def herniation(self, s: np.ndarray, w: float) -> np.ndarray:
        out = np.zeros_like(s)
        for j, st in enumerate(self.p.levels):
            if st.herniation_mm <= 0:
                continue
            sd, dh = self.disc_centres[j], self.dh[j]
            lat = max(0.0, 1 - ((w - st.herniation_w_mm) / st.herniation_halfwidth_mm) ** 2)
            if lat <= 0:
                continue
            if st.disc == "bulge":
                prof = _profile(s, sd, dh / 2 + 0.8) ** 0.5
            elif st.disc == "protrusion":
                prof = _profile(s, sd, dh / 2 + 1.2) ** 0.7
            else:
                prof = np.maximum(_profile(s, sd, dh / 2 + 1.0) ** 0.7,
                                  _profile(s, sd + st.migration_mm, dh / 2 + 2.0) ** 0.6 * 0.95)
            out = np.maximum(out, st.herniation_mm * prof * lat**0.5)
        return out

    def residual_canal(self, sd: float, w: float) -> float:
        """Residual canal AP (mm) at arc position ``sd`` on the plane ``w``."""
        i = int(np.argmin(np.abs(self.sg - sd)))
        hern = float(self.herniation(np.array([sd]), w)[0])
        front = max(hern, self.front[i])
        return float(self.p.canal_ap_mm - 1.0 - front - self.back[i])

    def disc_level_map(self) -> np.ndarray:
        lvl = np.zeros(self.s.shape, np.int8)
        for j in range(len(LEVELS)):
            sd = self.disc_centres[j]
            lvl[np.abs(self.s - sd) <= self.dh[j] / 2 + 8.0] = j + 1
        return lvl

    def labels(self, w: float) -> np.ndarray:
        p, s, a = self.p, self.s, self.a
        aw = abs(w)
        depth = np.interp(s, self.sg, self.depth_s)
        half_d = depth / 2
        lab = np.full(s.shape, AIR, np.uint8)
        canal_ap = p.canal_ap_mm
        c_front = half_d + 1.0
        c_back = c_front + canal_ap
        # neck outline
        neck_half = 58.0
        if aw < neck_half:
            shrink = np.sqrt(1 - (aw / neck_half) ** 2)
            ant_skin = -half_d - 42.0 * shrink
            post_skin = c_back + 68.0 * shrink
            inside = (a > ant_skin) & (a < post_skin)
            lab[inside] = MUSCLE
            lab[inside & ((a < ant_skin + 5) | (a > post_skin - 6))] = FAT
            # anterior compartment soft tissue + airway
            lab[inside & (a < -half_d) & (a > ant_skin + 5)] = SOFT
            if aw < 9:
                lab[inside & (a < -half_d - 7) & (a > -half_d - 23) & (s > self.centres[0] - 25)] = AIRWAY
            # posterior fat planes between muscle layers
            lab[inside & (np.abs(a - (c_back + 28)) < 1.5)] = FAT
            lab[inside & (np.abs(a - (c_back + 45)) < 1.2)] = FAT
            # skull base / brain above C2
            skull = self.centres[0] - self.h[0] / 2 - 22.0
            lab[inside & (s < skull) & (a > -half_d - 8)] = BRAIN
            lab[inside & (s < skull) & (s > skull - 6) & (a > c_back + 2) & (a < c_back + 40)] = CORTEX
        # vertebral artery flow void (transverse foramina)
        if 13.0 < aw < 18.0:
            lab[(np.abs(a - 0.5) < 2.2) & (s > self.centres[0]) & (s < self.centres[6])] = VESSEL
        # vertebral bodies
        bw = p.body_halfwidth_mm
        if aw < bw:
            wf = (aw / bw) ** 4
            for i, c in enumerate(self.centres):
                bb = self.vbox[i]
                sb, ab, lb = s[bb], a[bb], lab[bb]
                hh, dd = self.h[i] / 2, self.d[i] / 2
                r = (np.abs(sb - c) / hh) ** 8 + (np.abs(ab) / dd) ** 4 + wf
                if i == 0:  # dens of C2
                    r = np.minimum(r, (np.abs(sb - (c - hh - 6)) / 8.0) ** 2 + (np.abs(ab) / (dd * 0.55)) ** 2 + wf)
                lb[r <= 1] = CORTEX
                lb[r <= 0.72] = MARROW
        # discs
        disc_ok = aw < bw
        for j in range(len(self.disc_centres)):
            sd, dh = self.disc_centres[j], self.dh[j]
            dd = (self.d[j] + self.d[j + 1]) / 4
            if disc_ok:
                bb = self.dbox[j]
                sb, ab, lb = s[bb], a[bb], lab[bb]
                r = (np.abs(sb - sd) / (dh / 2 + 0.4)) ** 6 + (np.abs(ab) / dd) ** 4 + (aw / bw) ** 4
                lb[r <= 1] = ANNULUS
                nuc = ((sb - sd) / (dh * 0.38)) ** 2 + (ab / (dd * 0.62)) ** 2 + (aw / (bw * 0.6)) ** 2
                degenerate = j < len(LEVELS) and p.levels[j].disc != "normal"
                lb[nuc <= 1] = NUCLEUS_DEG if degenerate or (j < len(LEVELS) and p.levels[j].disc_height_mm < 4.3) else NUCLEUS
        # canal (thecal sac), cord, flavum, encroachments
        chw = p.canal_halfwidth_mm
        front_ost = np.interp(s, self.sg, self.front)
        back = np.interp(s, self.sg, self.back)
        hern = self.herniation(s, w)
        if aw < chw:
            lat = np.sqrt(1 - (aw / chw) ** 2)
            mid_a = (c_front + c_back) / 2
            sac = (np.abs(a - mid_a) <= canal_ap / 2 * (0.55 + 0.45 * lat)) & (s > self.centres[0] - 60)
            lab[sac] = CSF
            # cord: squeezed between the anterior and posterior encroachments
            fr_line = c_front + np.maximum(hern, front_ost)
            bk_line = c_back - back
            free = bk_line - fr_line
            cord_ap = np.minimum(p.cord_ap_mm, np.maximum(free - 0.2, 1.5))
            centre = np.clip(mid_a, fr_line + cord_ap / 2, bk_line - cord_ap / 2)
            flat = p.cord_ap_mm / cord_ap
            cw = p.cord_halfwidth_mm * np.minimum(flat, 1.6) ** 0.5
            cord = ((a - centre) / (cord_ap / 2)) ** 2 + (w / cw) ** 2 <= 1
            lab[sac & cord] = CORD
            for j in self.grade3:
                if True:
                    sd = self.disc_centres[j]
                    spot = ((s - sd) / 3.0) ** 2 + ((a - mid_a) / 1.6) ** 2 + (w / 3.0) ** 2 <= 1
                    lab[spot & cord] = MYELO
        # anterior encroachment: herniation (disc material) and osteophytes
        if aw < bw + 1:
            lab[(a > half_d - 0.5) & (a <= c_front - 1.0 + hern) & (hern > 0.05)] = HERNIATION
            ost = (a > half_d - 0.5) & (a <= c_front + front_ost - 1.0) & (front_ost > 0.05)
            lab[ost & (lab != HERNIATION)] = CORTEX
        # posterior elements: laminae, flavum, spinous processes
        if aw < chw + 1:
            flav = (a >= c_back - back) & (a <= c_back + 3.5)
            lab[flav & (back > 0.1)] = LIGAMENT
            for i, c in enumerate(self.centres):
                hh = self.h[i] / 2
                bb = self.pbox[i]
                sb, ab, lb, cb = s[bb], a[bb], lab[bb], c_back[bb]
                lam = (np.abs(sb - c - 1.5) <= hh * 0.85) & (ab > cb) & (ab <= cb + 5.0)
                lb[lam] = CORTEX
                lb[lam & (ab > cb + 1.2) & (ab < cb + 3.8)] = MARROW
                if aw < 3.5:
                    tilt = sb - c - 1.5 - 0.35 * (ab - cb)
                    sp = (np.abs(tilt) <= 4.0 * (1 - 0.3 * np.clip((ab - cb) / p.spinous_length_mm[i], 0, 1))) & (
                        ab > cb) & (ab <= cb + 5 + p.spinous_length_mm[i])
                    lb[sp] = CORTEX
                    lb[sp & (np.abs(tilt) <= 2.5) & (ab < cb + 3 + p.spinous_length_mm[i])] = MARROW
            between = (lab != CORTEX) & (lab != MARROW) & (a > c_back) & (a <= c_back + 3.0)
            lab[between & (s > self.centres[0]) & (s < self.centres[-1])] = LIGAMENT
        # lateral column: pedicles, foramina, articular pillars
        if chw - 1.5 < aw < 21.0:
            for i, c in enumerate(self.centres):
                hh = self.h[i] / 2
                if aw < 16.0:
                    bb = self.vbox[i]
                    sb, ab, lb, hd = s[bb], a[bb], lab[bb], half_d[bb]
                    ped = (np.abs(sb - c) <= hh * 0.55) & (ab > hd - 1.5) & (ab < hd + 8.5)
                    lb[ped] = CORTEX
                    lb[ped & (np.abs(sb - c) <= hh * 0.4) & (ab > hd) & (ab < hd + 7)] = MARROW
            pillar = (a > half_d + 8.5) & (a < half_d + 20.0) & (s > self.centres[0] - 5) & (s < self.centres[-1] + 5)
            lab[pillar] = CORTEX
            lab[pillar & (a > half_d + 10) & (a < half_d + 18.5)] = MARROW
            for j, sd in enumerate(self.disc_centres):
                bb = self.dbox[j]
                sb, ab, lb, hd = s[bb], a[bb], lab[bb], half_d[bb]
                joint = pillar[bb] & (np.abs((sb - sd - 2.0) - 0.8 * (ab - hd - 14.0)) < 0.9)
                lb[joint] = FACET
                if j >= len(LEVELS):
                    nl = 0.1
                else:
                    st = p.levels[j]
                    nl = st.foramen_narrowing_left if w > 0 else st.foramen_narrowing_right
                lat = 1 - ((aw - FORAMEN_LATERAL_MM) / 4.5) ** 2
                if lat <= 0:
                    continue
                ra0, rs0 = 3.8 * lat**0.5, (self.dh[j] / 2 + 3.5) * lat**0.5
                af = hd + 4.2
                zone = ((ab - af) / (ra0 + 0.8)) ** 2 + ((sb - sd) / (rs0 + 0.8)) ** 2 <= 1
                lb[zone] = CORTEX
                ra = ra0 * (1 - nl)
                rs = rs0 * (1 - 0.45 * nl)
                ac = af + 0.6 * ra0 * nl
                fora = ((ab - ac) / max(ra, 0.3)) ** 2 + ((sb - sd) / max(rs, 0.5)) ** 2 <= 1
                lb[fora] = FORAMEN_FAT
                root = ((ab - ac) / max(min(1.6, ra * 0.6), 0.3)) ** 2 + ((sb - sd - 0.3 * rs) / 1.6) ** 2 <= 1
                lb[root & fora] = ROOT
        return lab


# -------------------------------------------------------------------------------------------- DICOM I/O

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(phantom: MriPhantom, out_dir: Path, *, study_uid: str | None = None, patient_id: str | None = None,
                 series_number: int | None = None, study_datetime: datetime | None = None) -> list[Path]:
    """Write one MR Image Storage file per slice into ``out_dir``; return the paths (slice order).

    UIDs are derived from the seed (stable across runs) unless ``study_uid`` is given. The patient is
    ``PHANTOM^<patient id>``; Patient ID defaults to ``phantom.patient.patient_id``.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    p = phantom.patient
    pid = patient_id or p.patient_id
    key = f"cspine-mri-{p.seed}"
    study_uid = study_uid or generate_uid(entropy_srcs=[key, "study"])
    wt = phantom.weighting
    series_uid = generate_uid(entropy_srcs=[key, study_uid, "series", wt])
    for_uid = generate_uid(entropy_srcs=[key, study_uid, "frame-of-reference"])
    when = study_datetime or datetime(2026, 1, 5, 9, 30) + timedelta(days=p.seed % 300)
    series_number = series_number or (2 if wt == "T2" else 3)
    rows, cols = phantom.volume.shape[1:]
    ps = phantom.pixel_spacing_mm
    fov_v = rows * ps[0]
    paths = []
    tr, te = (3200.0, 105.0) if wt == "T2" else (550.0, 9.0)
    for k in range(phantom.volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[key, series_uid, str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(str(out_dir / f"{wt}_{k + 1:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.SOPClassUID = _MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
        ds.AccessionNumber = f"A{p.seed:07d}"
        ds.Modality = "MR"
        ds.Manufacturer = "cspine-node phantom"
        ds.InstitutionName = "Synthetic"
        ds.ReferringPhysicianName = ""
        ds.StationName = "PHANTOM"
        ds.StudyDescription = "MRI CERVICAL SPINE"
        ds.SeriesDescription = f"{wt} SAG"
        ds.ManufacturerModelName = "mri-phantom"
        ds.PatientName = f"PHANTOM^{pid}"
        ds.PatientID = pid
        ds.PatientBirthDate = f"{when.year - p.age}0101"
        ds.PatientSex = p.sex
        ds.PatientAge = f"{p.age:03d}Y"
        ds.BodyPartExamined = "CSPINE"
        ds.ScanningSequence = ["SE"]
        ds.SequenceVariant = ["SK"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = f"{phantom.slice_thickness_mm:.2f}"
        ds.RepetitionTime = f"{tr:.1f}"
        ds.EchoTime = f"{te:.1f}"
        ds.EchoTrainLength = 16 if wt == "T2" else 3
        ds.MagneticFieldStrength = "1.5"
        ds.SpacingBetweenSlices = f"{phantom.spacing_between_slices_mm:.2f}"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = f"{p.seed % 100000}"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        x = phantom.slice_positions_mm[k]
        # centre the field of view on the patient origin: top-left pixel centre
        ds.ImagePositionPatient = [f"{x:.4f}", f"{-cols * ps[1] / 2:.4f}", f"{fov_v / 2:.4f}"]
        ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{x:.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{ps[0]:.6f}", f"{ps[1]:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "1000"
        ds.WindowWidth = "2000"
        ds.PixelData = phantom.volume[k].astype("<u2").tobytes()
        path = out_dir / f"{wt}_{k + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def truth_dict(phantom: MriPhantom) -> dict:
    """JSON-ready ground truth: virtual patient, series geometry, per-level truth and rules."""
    return {
        "weighting": phantom.weighting,
        "pixel_spacing_mm": list(phantom.pixel_spacing_mm),
        "slice_thickness_mm": phantom.slice_thickness_mm,
        "spacing_between_slices_mm": phantom.spacing_between_slices_mm,
        "slice_positions_mm": list(phantom.slice_positions_mm),
        "mid_slice": phantom.mid_slice,
        "levels": [asdict(t) for t in phantom.levels],
        "rules": TRUTH_RULES,
        "patient": phantom.patient.to_dict(),
    }


def write_truth(phantom: MriPhantom, path: Path) -> Path:
    """Write ``truth_dict(phantom)`` as JSON."""
    path = Path(path)
    path.write_text(json.dumps(truth_dict(phantom), indent=1))
    return path


def read_truth(path: Path) -> tuple[VirtualPatient, tuple[LevelTruth, ...]]:
    """Read a truth JSON written by ``write_truth``: the virtual patient and the per-level truth."""
    d = json.loads(Path(path).read_text())
    levels = tuple(LevelTruth(**{**t, "disc_centre_px": tuple(t["disc_centre_px"])}) for t in d["levels"])
    return VirtualPatient.from_dict(d["patient"]), levels


def cli(argv: list[str] | None = None) -> int:
    """``cspine-node phantom mri --out DIR --seed N --count K [--weighting T2 T1]``.

    Writes ``DIR/mri_<seed>/`` per patient: one series per weighting (same study, same patient) and
    ``truth.json``.
    """
    ap = argparse.ArgumentParser(prog="cspine-node phantom mri", description=cli.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--weighting", nargs="+", default=["T2"], choices=sorted(_LUT))
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--columns", type=int, default=256)
    ap.add_argument("--slices", type=int, default=11)
    args = ap.parse_args(argv)
    import pydicom

    for seed in range(args.seed, args.seed + args.count):
        d = args.out / f"mri_{seed:06d}"
        study_uid = None
        for wt in args.weighting:
            ph = generate_series(seed, weighting=wt, shape=(args.rows, args.columns), n_slices=args.slices)
            files = write_series(ph, d, study_uid=study_uid)
            study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            if wt == args.weighting[0]:
                write_truth(ph, d / "truth.json")
        pos = sum(t.disc_herniation for t in ph.levels)
        print(f"{d}: {len(args.weighting)} series x {args.slices} slices, {pos} herniated disc(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
