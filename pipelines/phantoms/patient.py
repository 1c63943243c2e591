"""The virtual patient: the anatomy and disease of one patient, independent of any modality (mm, degrees).

Vertebral body heights and depths, disc heights, the tilt of every vertebra (so the C2-C7 lordosis), the
developmental canal diameter, and per level (C2-C3 .. C6-C7) the disc state (normal, bulge, protrusion,
extrusion), posterior osteophytes, ligamentum flavum thickening and left/right foraminal narrowing. The MRI
phantom renders it directly (``pipelines.phantoms.mri.generate_series(seed, patient=...)``); the X-ray phantom
renders its anatomy (:func:`xray_anatomy`, ``generate_study(seed, anatomy=...)``), so that both modalities of one
patient agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipelines.vocabulary import LEVELS

VERTEBRAE_RENDERED: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3")
"""The vertebrae of the virtual patient (the MRI phantom renders them all, the X-ray phantom C2..C7)."""
DISC_STATES: tuple[str, ...] = ("normal", "bulge", "protrusion", "extrusion")
DISC_POSITIVE = frozenset({"protrusion", "extrusion"})
"""The disc states that count as a herniation (``TRUTH_RULES["disc_degeneration"]``)."""


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
    """The virtual patient's anatomy in the field names of ``pipelines.phantoms.xray.PatientParams`` (C2..C7).

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
