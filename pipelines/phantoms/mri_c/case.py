"""One renderer-C case: patient, anatomy, acquisition, exact per-level truth, and the rendered series.

``draw_case_c(seed)`` makes every random draw except the image noise and returns the truth without painting a
pixel (cheap, for prevalence checks); ``make_case_c(seed)`` also renders the T2 series (and, in about a quarter
of the seeds, a T1 series with the same geometry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.phantoms.dicom import SagittalSeries
from pipelines.phantoms.mri_b.truth import LevelTruthB
from pipelines.phantoms.mri_c.acquisition import Acquisition, draw_acquisition
from pipelines.phantoms.mri_c.anatomy import SpinePainter
from pipelines.phantoms.mri_c.frame import SpineFrame
from pipelines.phantoms.mri_c.patient import N_GRADED, PatientC, SpineC, draw_spine
from pipelines.phantoms.mri_c.render import render_volumes
from pipelines.phantoms.mri_c.soft import SoftTissue
from pipelines.phantoms.mri_c.tissue import Labels
from pipelines.vocabulary import LEVELS

RNG_STREAM = 0xC


SeriesC = SagittalSeries
"""Renderer C's series: the DICOM writer's ``SagittalSeries`` (the one thing C shares with A and B)."""


@dataclass
class CaseDraw:
    patient: PatientC
    spine: SpineC
    frame: SpineFrame
    labels: Labels
    soft: SoftTissue
    painter: SpinePainter
    acq: Acquisition
    weightings: tuple[str, ...]
    gains: dict[str, float]
    levels: tuple[LevelTruthB, ...]
    info: dict
    rng: np.random.Generator


def canal_grade(residual_mm: float, cord_mm: float) -> int:
    """0 residual >= cord + 3 mm, 1 >= cord + 1 mm, 2 >= 0.75 cord, 3 below."""
    if residual_mm >= cord_mm + 3.0:
        return 0
    if residual_mm >= cord_mm + 1.0:
        return 1
    return 2 if residual_mm >= 0.75 * cord_mm else 3


def _placement(frame: SpineFrame, sp: SpineC, soft: SoftTissue, rng: np.random.Generator):
    z_c2 = frame.point((sp.s_top[0] + sp.s_bot[0]) / 2)[2]
    z_c2b = frame.point(sp.s_bot[0])[2]
    L = soft.clivus_len
    z_tip = frame.point(soft.sb - 0.906 * L, soft.tb - 0.423 * L)[2]
    z_t1 = frame.point(sp.s_bot[6])[2]
    partial = rng.random() < 0.08
    z_t4 = frame.point(sp.s_bot[11 if partial else 9])[2]
    u_top, u_ap = rng.random(), rng.uniform(-25, 25)

    def place(fov_v: float) -> tuple[float, float]:
        lo, hi = (z_c2b + 2, z_c2 - 1) if partial else (z_c2 - 3, z_tip + 15)
        hi = min(hi, z_t1 + fov_v)
        lo = min(max(lo, z_t4 + fov_v + 5), hi)
        z_top = lo + u_top * max(hi - lo, 0.0) if hi > lo else hi
        zc = z_top - fov_v / 2
        s_c = float(np.interp(zc, frame.z[::-1], frame.s[::-1]))
        return float(frame.point(s_c, 6.0)[1] + u_ap), float(zc)

    return place


def draw_case_c(seed: int) -> CaseDraw:
    rng = np.random.default_rng([seed, RNG_STREAM])
    age = int(rng.integers(25, 86))
    sex = "M" if rng.random() < 0.5 else "F"
    patient = PatientC(seed=seed, patient_id=f"C{seed:07d}", age=age, sex=sex)
    sp, sp_info = draw_spine(rng, age, sex)
    labels = Labels()
    soft = SoftTissue(sp, labels, rng)
    painter = SpinePainter(sp, labels, rng)
    painter.fm = (soft.sb, soft.tb, soft.so, soft.to)
    origin = np.array([rng.uniform(-15, 15), rng.uniform(-30, 10), rng.uniform(-60, 40)])
    frame = SpineFrame(sp, origin)
    soft.set_frame(float(np.interp(soft.sb, frame.s, frame.phi)))
    weightings = ("T2", "T1") if rng.random() < 0.25 else ("T2",)
    place = _placement(frame, sp, soft, rng)
    acq = draw_acquisition(rng, frame.x0, place, max(sp.foramen_x) + 5.0, weightings)
    gains = {"T2": float(rng.uniform(1300, 3000)), "T1": float(rng.uniform(1200, 2800))}
    levels = _truth(sp, frame, acq)
    info = {"renderer": "C", "seed": seed, "age": age, "sex": sex, **sp_info,
            "cord_ap_mm": [round(float(v), 3) for v in sp.cord_ap[:N_GRADED]],
            "canal_ap_mm": [round(float(v), 3) for v in sp.canal_knots[:N_GRADED]],
            "weightings": list(weightings), **acq.info()}
    return CaseDraw(patient, sp, frame, labels, soft, painter, acq, weightings, gains, levels, info, rng)


def _truth(sp: SpineC, frame: SpineFrame, acq: Acquisition) -> tuple[LevelTruthB, ...]:
    pos = acq.positions()
    n = acq.normal_left
    out = []
    for k in range(N_GRADED):
        d = frame.point(float(sp.disc_s[k]), -float(sp.depth[k] + sp.depth[k + 1]) / 4, 0.0)
        off = (d[None, :] - acq.centres) @ n
        j = int(np.argmin(np.abs(off)))
        v = d - off[j] * n - pos[j]
        col, row = float(v @ acq.rowdir / acq.pixel_mm), float(v @ acq.coldir / acq.pixel_mm)
        res = sp.residual(k)
        cord = float(sp.cord_ap[k])
        nl, nr = float(sp.narrowing[k, 0]), float(sp.narrowing[k, 1])
        out.append(LevelTruthB(
            level=LEVELS[k], disc=LEVELS[k], disc_herniation=sp.hern_kind[k] in ("protrusion", "extrusion"),
            canal_residual_mm=round(res, 4), canal_grade=canal_grade(res, cord), canal_stenosis=res < cord + 1.0,
            cord_compression=res < cord, foramen_narrowing_left=round(nl, 4), foramen_narrowing_right=round(nr, 4),
            foraminal_stenosis_left=nl >= 0.5, foraminal_stenosis_right=nr >= 0.5,
            disc_centre_mm=(float(d[0]), float(d[1]), float(d[2])), disc_slice=j, disc_centre_px=(col, row),
            disc_offplane_mm=float(off[j])))
    return tuple(out)


def make_case_c(seed: int) -> tuple[list[SeriesC], tuple[LevelTruthB, ...], dict]:
    """Render renderer C's study for ``seed``: (series, per-level truth C2-C3..C6-C7, info)."""
    c = draw_case_c(seed)
    vols = render_volumes(c.frame, c.soft, c.painter, c.labels, c.acq, c.weightings, c.rng, c.gains)
    a = c.acq
    orient = tuple(float(v) for v in (*a.rowdir, *a.coldir))
    slice_pos = tuple(float(v) for v in a.centres @ a.normal_left)
    series = [SeriesC(patient=c.patient, weighting=wt, volume=vols[wt], pixel_spacing_mm=(a.pixel_mm, a.pixel_mm),
                      slice_thickness_mm=a.thickness, spacing_between_slices_mm=a.spacing,
                      slice_positions_mm=slice_pos, orientation=orient, positions=a.positions())
              for wt in c.weightings]
    return series, c.levels, c.info
