"""Renderer C's image formation: labels per sub-plane -> tissue signal -> coil -> k-space -> noise -> 12 bits.

For each slice the soft tissues are painted once, the spine once per sub-plane (offsets -1/3, 0, +1/3 of the
thickness along the slab normal, weights 1/4, 1/2, 1/4: the slice profile). Every weighting of the study reuses
the same label maps with its own signal table, so a T1 series costs little more than the T2 one. Tissue texture
is a smooth random field (marrow trabeculae, muscle) shared by the sub-planes and weightings of a slice.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_c.acquisition import Acquisition, band_limit, ghost_noise, render_grid
from pipelines.phantoms.mri_c.anatomy import SpinePainter
from pipelines.phantoms.mri_c.canvas import Canvas
from pipelines.phantoms.mri_c.frame import SpineFrame
from pipelines.phantoms.mri_c.soft import SoftTissue
from pipelines.phantoms.mri_c.tissue import Labels

_PROFILE = ((-1 / 3, 0.25), (0.0, 0.5), (1 / 3, 0.25))


def render_volumes(frame: SpineFrame, soft: SoftTissue, painter: SpinePainter, labels: Labels,
                   acq: Acquisition, weightings: tuple[str, ...], rng: np.random.Generator,
                   gains: dict[str, float]) -> dict[str, np.ndarray]:
    """uint16 volumes (slices, rows, cols) for each weighting."""
    big_r, big_c = render_grid(acq)
    d_col = acq.rowdir * (acq.cols * acq.pixel_mm / big_c)
    d_row = acq.coldir * (acq.rows * acq.pixel_mm / big_r)
    tables = {wt: labels.signal_table(*acq.tr_te[wt], acq.field_t, fse=wt == "T2") for wt in weightings}
    out = {wt: np.empty((acq.n_slices, acq.rows, acq.cols), dtype=np.float32) for wt in weightings}
    positions = acq.positions()
    nx = float(acq.normal_left[0])
    for k in range(acq.n_slices):
        cv = Canvas(frame, positions[k], d_col, d_row, (big_r, big_c))
        soft.paint(cv)
        base = cv.lab.copy()
        tex = (cv.wr @ rng.standard_normal((len(cv.ri), len(cv.ci))).astype(np.float32) @ cv.wc.T)
        acc = {wt: np.zeros((big_r, big_c), dtype=np.float32) for wt in weightings}
        for frac, weight in _PROFILE:
            cv.lab[:] = base
            cv.set_offset(frac * acq.thickness * nx)
            painter.paint(cv)
            for wt in weightings:
                sig, amp = tables[wt]
                acc[wt] += np.float32(weight) * sig[cv.lab] * (1 + amp[cv.lab] * tex)
        tpost = np.interp(cv.s, soft.ks, soft.kpost).astype(np.float32)
        sens = (1 - acq.coil_strength) + acq.coil_strength * np.exp(
            -np.clip(tpost - cv.t, 0, None) / np.float32(acq.coil_falloff))
        sens *= 1 + 0.08 * np.cos(cv.s / np.float32(45.0))
        for wt in weightings:
            out[wt][k] = band_limit(acc[wt] * sens, acq)
    vols = {}
    for wt in weightings:
        sig = tables[wt][0]
        sigma = float(sig[labels["fat"]]) * (1 - 0.5 * acq.coil_strength) / acq.snr
        v = np.stack([ghost_noise(out[wt][k], acq, sigma, rng) for k in range(acq.n_slices)])
        ref = float(np.percentile(v[:, ::4, ::4], 99.5))
        vols[wt] = np.clip(np.rint(v * (gains[wt] / max(ref, 1e-6))), 0, 4095).astype(np.uint16)
    return vols
