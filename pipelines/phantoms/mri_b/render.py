"""Render one renderer-B series: tissue labels sampled through the slab (partial volume), signal per weighting,
in-plane blur, texture, receive-coil bias and Rician magnitude noise, stored as 12-bit values.

``render_series(seed)`` -> ``SeriesB`` (volume, written geometry, per-level truth, centre-plane tissue labels).
Deterministic for (seed, weighting, acquisition). T1 and STIR series of the same study share patient and
acquisition (``render_series(seed, weighting="T1", acquisition=t2.acquisition)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pipelines.phantoms.mri_b.acquisition import (
    WEIGHTINGS,
    Acquisition,
    SliceGeometry,
    sample_acquisition,
    slice_geometry,
)
from pipelines.phantoms.mri_b.patient import HERNIATED, SpinePatient, sample_patient
from pipelines.phantoms.mri_b.skeleton import LineLookup, build_skeleton
from pipelines.phantoms.mri_b.tissues import TISSUES, Anatomy
from pipelines.phantoms.mri_b.truth import LevelTruthB, canal_grade_b
from pipelines.vocabulary import LEVELS

SIGNAL_B: dict[str, tuple[float, ...]] = {
    #       air  fat   musc  marr  bone  nuc   dry   ann   out   csf   cord  myel  lig   epi   root  for   fac   brain soft  vess
    "T2": (0.0, 0.74, 0.20, 0.36, 0.04, 0.88, 0.36, 0.17, 0.40, 1.00, 0.44, 0.78, 0.07, 0.66, 0.30, 0.62, 0.64, 0.48, 0.38, 0.03),
    "T1": (0.0, 0.96, 0.34, 0.66, 0.04, 0.40, 0.33, 0.27, 0.33, 0.12, 0.52, 0.44, 0.07, 0.88, 0.42, 0.86, 0.16, 0.56, 0.46, 0.03),
    "STIR": (0.0, 0.06, 0.15, 0.13, 0.03, 0.84, 0.30, 0.14, 0.42, 1.00, 0.36, 0.82, 0.05, 0.09, 0.36, 0.12, 0.72, 0.42, 0.42, 0.03),
}
"""Relative signal of each tissue of ``tissues.TISSUES`` per weighting."""
SUB_PLANES = (-1 / 3, 0.0, 1 / 3)
"""Sample planes across the slice thickness (fractions of it): partial volume."""


@dataclass
class SeriesB:
    """One rendered renderer-B series; attribute names follow what ``pipelines.phantoms.dicom.write_series`` reads."""

    patient: SpinePatient
    weighting: str
    acquisition: Acquisition
    geometry: SliceGeometry
    volume: np.ndarray
    """uint16 (slices, rows, columns) in written order."""
    levels: tuple[LevelTruthB, ...]
    labels: np.ndarray
    """uint8 (slices, rows, columns): the tissue at each pixel centre on the slice's central plane."""
    extra: dict = field(default_factory=dict)

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        return (self.acquisition.pixel_mm, self.acquisition.pixel_mm)

    @property
    def slice_thickness_mm(self) -> float:
        return self.acquisition.thickness_mm

    @property
    def spacing_between_slices_mm(self) -> float:
        return self.acquisition.spacing_mm

    @property
    def slice_positions_mm(self) -> tuple[float, ...]:
        """Position of each slice centre along the slab normal (mm, + patient left)."""
        return tuple(float(v) for v in self.geometry.centres @ self.geometry.normal)


def render_series(seed: int, *, weighting: str = "T2", acquisition: Acquisition | None = None,
                  patient: SpinePatient | None = None) -> SeriesB:
    """Render the series (module docstring); ``acquisition`` defaults to ``sample_acquisition(seed)``."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    acq = acquisition or sample_acquisition(seed)
    if not 5 <= acq.n_slices <= 40:
        raise ValueError("n_slices must be 5..40")
    p = patient or sample_patient(seed)
    sk = build_skeleton(p)
    anat = Anatomy(p, sk)
    geo = slice_geometry(acq)
    rng = np.random.default_rng([seed, 77, WEIGHTINGS.index(weighting)])
    residual = [anat.residual_canal(j) for j in range(len(LEVELS))]
    grades = [canal_grade_b(r, p.cord_ap_mm) for r in residual]
    myelo = tuple(j for j, g in enumerate(grades) if g == 3)
    # the (y, z) box of every sample in the anatomy frame -> one lookup grid
    rows, cols = acq.rows, acq.columns
    corners = []
    for k in (0, acq.n_slices - 1):
        for t in (SUB_PLANES[0], SUB_PLANES[-1]):
            for r, c in ((0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1)):
                q = geo.positions[k] + t * acq.thickness_mm * geo.normal + (c * geo.row_dir + r * geo.col_dir) * acq.pixel_mm
                corners.append(q @ geo.pose)
    corners = np.array(corners)
    look = LineLookup(sk, (corners[:, 1].min(), corners[:, 1].max()), (corners[:, 2].min(), corners[:, 2].max()))
    lut = np.array(SIGNAL_B[weighting], np.float32) * rng.normal(1, 0.06, len(TISSUES)).astype(np.float32)
    if weighting != "STIR":
        lut[3] *= p.marrow_signal
    lut[0] = 0.0
    vol = np.zeros((acq.n_slices, rows, cols), np.float32)
    centre_labels = np.zeros((acq.n_slices, rows, cols), np.uint8)
    for k in range(acq.n_slices):
        acc = np.zeros(rows * cols, np.float32)
        for t in SUB_PLANES:
            pts = geo.points(k, t * acq.thickness_mm) @ geo.pose.astype(np.float32)
            s, a = look(pts[:, 1], pts[:, 2])
            lab = anat.labels(pts[:, 0], pts[:, 1], pts[:, 2], s, a, myelo)
            acc += lut[lab]
            if t == 0.0:
                centre_labels[k] = lab.reshape(rows, cols)
        vol[k] = (acc / len(SUB_PLANES)).reshape(rows, cols)
    vol = _acquire(vol, geo, acq, rng, max(float(lut.max()), 1e-3))
    levels = _truth(p, sk, geo, residual, grades)
    return SeriesB(p, weighting, acq, geo, vol, levels, centre_labels, {"seed": seed})


def _acquire(vol: np.ndarray, geo: SliceGeometry, acq: Acquisition, rng: np.random.Generator, ref: float) -> np.ndarray:
    """Blur, texture, coil bias, Rician noise, 12-bit storage."""
    n, rows, cols = vol.shape
    vol = ndimage.gaussian_filter(vol, (0, 0.45, 0.45))
    grain = 1.6 / acq.pixel_mm
    tex = ndimage.gaussian_filter(rng.normal(0, 1, vol.shape).astype(np.float32), (0, grain, grain))
    vol *= 1 + 0.07 * tex / (tex.std() + 1e-6)
    # receive coil behind the neck: sensitivity falls towards anterior and away from the coil centre
    ctr = geo.centres.mean(0)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    for k in range(n):
        pts = geo.positions[k][None, None, :] + (c[..., None] * geo.row_dir + r[..., None] * geo.col_dir) * acq.pixel_mm
        dy, dz = (pts[..., 1] - ctr[1]) / 90.0, (pts[..., 2] - ctr[2]) / 120.0
        vol[k] *= np.exp(acq.bias * (dy - 0.6 * dz * dz)).astype(np.float32)
    sigma = acq.noise * ref
    re = vol + rng.normal(0, sigma, vol.shape).astype(np.float32)
    im = rng.normal(0, sigma, vol.shape).astype(np.float32)
    mag = np.sqrt(re * re + im * im)
    gain = rng.uniform(2200, 3300) / ref
    return np.clip(mag * gain, 0, 4095).astype(np.uint16)


def _truth(p: SpinePatient, sk, geo: SliceGeometry, residual: list[float], grades: list[int]) -> tuple[LevelTruthB, ...]:
    out = []
    for j, lv in enumerate(p.levels):
        centre = geo.pose @ np.array([0.0, *sk.disc_centres[j]])
        k, cx, cy, off = geo.to_pixel(centre)
        nl, nr = lv.narrowing("left"), lv.narrowing("right")
        out.append(LevelTruthB(
            level=LEVELS[j], disc=lv.kind, disc_herniation=lv.kind in HERNIATED,
            canal_residual_mm=round(residual[j], 3), canal_grade=grades[j], canal_stenosis=residual[j] < p.cord_ap_mm + 1.0,
            cord_compression=residual[j] < p.cord_ap_mm + 1.0, foramen_narrowing_left=round(nl, 4),
            foramen_narrowing_right=round(nr, 4), foraminal_stenosis_left=nl >= 0.5, foraminal_stenosis_right=nr >= 0.5,
            disc_centre_mm=tuple(float(v) for v in centre), disc_slice=k, disc_centre_px=(cx, cy),
            disc_offplane_mm=off,
        ))
    return tuple(out)
