"""Renderer B's patient: the sizes, posture and degeneration of one neck (mm, degrees), sampled from a seed.

Written independently of renderer A (``pipelines.phantoms.mri`` / ``pipelines.phantoms.patient``): its own
population model. Degeneration is a latent severity per disc level (age driven, worst at C5-C6), from which the
disc state, the posterior osteophyte ridge, ligamentum flavum buckling, uncovertebral and facet hypertrophy
(the two halves of a foraminal narrowing) follow with their own noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipelines.vocabulary import LEVELS

BODIES: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3", "T4")
"""The vertebral bodies renderer B builds (C1 has no body; the dens and C1 arches are drawn with C2)."""
DISCS: tuple[str, ...] = tuple(f"{a}-{b}" for a, b in zip(BODIES[:-1], BODIES[1:], strict=True))
"""The nine discs between them; the first five are the graded ``LEVELS``."""
DISC_KINDS: tuple[str, ...] = ("normal", "bulge", "protrusion", "extrusion")
HERNIATED = frozenset({"protrusion", "extrusion"})
"""Disc kinds that are a herniation (``TRUTH_RULES["disc_degeneration"]``)."""


@dataclass(frozen=True)
class DiscLevel:
    """Degeneration at one graded disc level (mm unless said otherwise)."""

    level: str
    severity: float
    """Latent degeneration 0..~1.3 that drives everything below."""
    kind: str
    """One of ``DISC_KINDS``."""
    depth_mm: float
    """How far disc material reaches behind the posterior vertebral line at its peak."""
    centre_x_mm: float
    """Lateral centre of the herniation (+ patient left)."""
    halfwidth_mm: float
    """Lateral half width of the herniation."""
    migration_mm: float
    """Extrusions: the fragment's shift along the canal (+ caudal)."""
    fragment_mm: float
    """Extrusions: the fragment's length along the canal."""
    ridge_mm: float
    """Posterior endplate osteophyte ridge (bone) into the canal."""
    buckling_mm: float
    """Ligamentum flavum buckling into the canal from behind."""
    uncovertebral: tuple[float, float]
    """(left, right) fraction of the foraminal AP width taken from the front by uncovertebral spurs."""
    facet: tuple[float, float]
    """(left, right) fraction taken from behind by facet (superior articular process) hypertrophy."""
    nucleus_signal: float
    """T2 brightness of the nucleus relative to a young disc (1 healthy .. 0.25 desiccated)."""

    def narrowing(self, side: str) -> float:
        """Foraminal AP narrowing fraction on ``"left"`` or ``"right"`` (uncovertebral + facet, at most 0.9)."""
        i = 0 if side == "left" else 1
        return float(min(self.uncovertebral[i] + self.facet[i], 0.9))


@dataclass(frozen=True)
class SpinePatient:
    """One neck for renderer B. Lists over ``BODIES`` (10) or ``DISCS`` (9); ``levels`` over ``LEVELS`` (5)."""

    seed: int
    patient_id: str
    age: int
    sex: str
    body_height_mm: tuple[float, ...]
    body_depth_mm: tuple[float, ...]
    body_halfwidth_mm: tuple[float, ...]
    disc_height_mm: tuple[float, ...]
    """Mid-disc height of each of the nine discs (after degenerative loss)."""
    axis_deg: tuple[float, ...]
    """Angle of each body's cranio-caudal axis from straight down, + when its lower end lies posterior."""
    canal_ap_mm: float
    """Developmental AP diameter from the posterior vertebral line to the laminae (mid-sagittal)."""
    sac_halfwidth_mm: float
    cord_ap_mm: float
    cord_halfwidth_mm: float
    dens_height_mm: float
    clivus_deg: float
    """Angle of the clivus from the canal axis above the dens."""
    prevertebral_mm: float
    airway_ap_mm: float
    foramen_x_mm: float
    """Lateral distance of the foraminal centres from the midline."""
    foramen_ap_mm: float
    """Healthy foraminal AP width."""
    spinous_mm: tuple[float, ...]
    neck_front_mm: float
    neck_back_mm: float
    marrow_signal: float
    """Marrow brightness factor (fattier marrow with age)."""
    levels: tuple[DiscLevel, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _disc_level(rng: np.random.Generator, level: str, sev: float) -> DiscLevel:
    z = sev + rng.normal(0, 0.12)
    kind = ("normal", "bulge", "protrusion", "extrusion")[int(np.searchsorted([0.33, 0.5, 0.82], z))]
    depth = {"normal": rng.uniform(0.0, 0.6), "bulge": rng.uniform(1.0, 2.0), "protrusion": rng.uniform(2.3, 4.6),
             "extrusion": rng.uniform(3.6, 7.0)}[kind]
    half = {"normal": 12.0, "bulge": rng.uniform(10.0, 13.0), "protrusion": rng.uniform(4.5, 8.5),
            "extrusion": rng.uniform(3.0, 5.5)}[kind]
    cx = 0.0 if kind in ("normal", "bulge") else float(np.clip(rng.normal(0, 2.5), -5.0, 5.0))
    mig = float(rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 7.0)) if kind == "extrusion" else 0.0
    frag = float(rng.uniform(5.0, 9.0)) if kind == "extrusion" else 0.0
    ridge = float(max(0.0, rng.normal(2.4 * (sev - 0.25), 0.7))) if sev > 0.25 else 0.0
    buckle = float(max(0.0, rng.normal(2.6 * sev - 0.3, 0.7)))
    unc = tuple(float(np.clip(rng.normal(0.36 * sev, 0.12), 0, 0.6)) for _ in range(2))
    fac = tuple(float(np.clip(rng.normal(0.32 * sev, 0.12), 0, 0.55)) for _ in range(2))
    nuc = float(np.clip(1.05 - 0.75 * sev + rng.normal(0, 0.08), 0.25, 1.0))
    return DiscLevel(level, float(sev), kind, float(depth), cx, float(half), mig, frag, ridge, buckle,
                     unc, fac, nuc)  # type: ignore[arg-type]


def sample_patient(seed: int, *, patient_id: str | None = None) -> SpinePatient:
    """Sample one neck (deterministic for ``seed``)."""
    rng = np.random.default_rng([seed, 5151])
    age = int(rng.integers(25, 86))
    sex = "F" if rng.random() < 0.45 else "M"
    k = 0.94 if sex == "F" else 1.0
    # global degeneration: logistic in age, plus a patient effect
    g = 1 / (1 + np.exp(-(age - 55) / 9.0)) + rng.normal(0, 0.18)
    heights = np.array([16.0, 14.0, 13.6, 13.5, 13.9, 15.0, 17.0, 18.5, 19.5, 20.5]) * k * rng.normal(1, 0.06, 10)
    depths = np.array([15.0, 15.8, 16.0, 16.5, 17.2, 17.8, 19.5, 21.5, 23.0, 24.5]) * k * rng.normal(1, 0.05, 10)
    halfw = np.array([8.0, 8.8, 9.4, 10.0, 10.6, 11.2, 12.0, 12.5, 13.0, 13.5]) * k * rng.normal(1, 0.04, 10)
    weight = np.array([0.4, 0.72, 0.95, 1.15, 1.0])
    sev = np.clip(g * weight + rng.normal(0, 0.2, 5), 0, 1.35)
    levels = tuple(_disc_level(rng, lv, float(s)) for lv, s in zip(LEVELS, sev, strict=True))
    disc_h = [float(max(rng.normal(6.0, 0.5) * k * (1 - 0.4 * min(s, 1.1)), 2.6)) for s in sev]
    disc_h += [float(rng.normal(5.6, 0.4)), float(rng.normal(5.0, 0.4)), float(rng.normal(4.8, 0.4)),
               float(rng.normal(4.8, 0.4))]
    # posture: the axis angle changes down the neck (lordosis), with a per-patient offset and wobble
    lordosis = rng.normal(24.0, 12.0)
    start = rng.normal(-12.0, 7.0)
    axis = start + lordosis * np.linspace(0, 1, 6) + rng.normal(0, 2.0, 6)
    axis = np.concatenate([axis, axis[-1] + np.array([4.0, 8.0, 11.0, 14.0])])
    canal = float(np.clip(rng.normal(13.6, 1.5), 10.5, 18.0))
    cord = float(np.clip(rng.normal(7.0, 0.6), 5.6, 8.6))
    spin = np.array([30.0, 15.0, 14.0, 16.0, 22.0, 32.0, 31.0, 30.0, 29.0, 28.0]) * rng.normal(1, 0.12, 10)
    return SpinePatient(
        seed=seed, patient_id=patient_id or f"CSB{seed:06d}", age=age, sex=sex,
        body_height_mm=tuple(float(v) for v in heights), body_depth_mm=tuple(float(v) for v in depths),
        body_halfwidth_mm=tuple(float(v) for v in halfw), disc_height_mm=tuple(disc_h),
        axis_deg=tuple(float(v) for v in axis), canal_ap_mm=canal,
        sac_halfwidth_mm=float(rng.uniform(10.5, 13.0)), cord_ap_mm=cord,
        cord_halfwidth_mm=float(rng.uniform(5.0, 6.6)), dens_height_mm=float(rng.uniform(13.0, 17.0)),
        clivus_deg=float(rng.uniform(120.0, 140.0)), prevertebral_mm=float(rng.uniform(3.0, 6.0)),
        airway_ap_mm=float(rng.uniform(9.0, 17.0)), foramen_x_mm=float(rng.uniform(11.5, 15.0)),
        foramen_ap_mm=float(rng.uniform(5.5, 7.5)), spinous_mm=tuple(float(v) for v in spin),
        neck_front_mm=float(rng.uniform(38.0, 55.0)), neck_back_mm=float(rng.uniform(70.0, 95.0)),
        marrow_signal=float(np.clip(0.8 + 0.006 * (age - 25) + rng.normal(0, 0.08), 0.6, 1.4)),
        levels=levels,
    )
