"""Renderer C's acquisition model: 2-D multi-slice sagittal spin-echo geometry, k-space and noise.

Geometry (LPS): a slab of 9-19 slices whose normal is the patient's left-right axis rotated by a small yaw/roll
(and in-plane rotation), centred up to 4 mm off the mid-sagittal plane, with the usual or the flipped in-plane
convention and either slice order. Contrast: TR/TE per study at 1.5 or 3 T. Each slice is the weighted mean of
sub-planes across its thickness (slice profile), painted on a render grid 1-2x finer than the reconstruction
matrix, multiplied by a posterior phased-array coil sensitivity, then band-limited by keeping only the acquired
central k-space (lower phase resolution than frequency resolution, optional apodisation, else Gibbs ringing) and
zero-filled to the reconstruction matrix; a faint shifted copy along the phase direction models motion ghosting;
complex Gaussian noise and a magnitude make the background Rician.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft

MATRICES: tuple[tuple[int, int], ...] = ((256, 256), (320, 320), (384, 384), (384, 256), (448, 448),
                                         (512, 512), (512, 384))
"""Reconstruction matrices (rows = superior-inferior, columns = anterior-posterior)."""


@dataclass
class Acquisition:
    """The drawn acquisition of one study (geometry shared by its series; contrast per weighting)."""

    field_t: float
    rows: int
    cols: int
    pixel_mm: float
    thickness: float
    gap: float
    n_slices: int
    rowdir: np.ndarray
    coldir: np.ndarray
    normal_left: np.ndarray
    centres: np.ndarray
    """(slices, 3) LPS centre of each slice's pixel grid, written order."""
    tr_te: dict[str, tuple[float, float]]
    acq_frac: tuple[float, float]
    apod: float
    snr: float
    coil_strength: float
    coil_falloff: float
    ghost: float
    ghost_shift: float
    flipped: bool
    yaw_deg: float
    roll_deg: float
    inplane_deg: float
    left_to_right: bool

    @property
    def spacing(self) -> float:
        return self.thickness + self.gap

    def positions(self) -> np.ndarray:
        """ImagePositionPatient of each slice: centre of the top-left pixel."""
        half = ((self.cols - 1) / 2 * self.pixel_mm) * self.rowdir + ((self.rows - 1) / 2 * self.pixel_mm) * self.coldir
        return self.centres - half[None, :]

    def info(self) -> dict:
        return {"field_T": self.field_t, "matrix": [self.rows, self.cols], "pixel_mm": round(self.pixel_mm, 4),
                "fov_mm": [round(self.rows * self.pixel_mm, 1), round(self.cols * self.pixel_mm, 1)],
                "slice_thickness_mm": round(self.thickness, 3), "gap_mm": round(self.gap, 3),
                "n_slices": self.n_slices, "tr_te_ms": {k: [round(v[0], 1), round(v[1], 1)]
                                                        for k, v in self.tr_te.items()},
                "acquired_fraction": [round(v, 3) for v in self.acq_frac], "apodisation": round(self.apod, 3),
                "snr": round(self.snr, 2), "coil_strength": round(self.coil_strength, 3),
                "coil_falloff_mm": round(self.coil_falloff, 1), "ghost": round(self.ghost, 4),
                "flipped_inplane": self.flipped, "yaw_deg": round(self.yaw_deg, 3), "roll_deg": round(self.roll_deg, 3),
                "inplane_deg": round(self.inplane_deg, 3), "left_to_right": self.left_to_right}


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def draw_acquisition(rng: np.random.Generator, spine_x: float, place: Callable[[float], tuple[float, float]],
                     half_cover_mm: float, weightings: tuple[str, ...]) -> Acquisition:
    """Draw geometry and contrast; ``place(fov_rows_mm)`` gives the in-plane centre (LPS y, z) of the slab."""
    field_t = 1.5 if rng.random() < 0.55 else 3.0
    rows, cols = MATRICES[int(rng.integers(len(MATRICES)))]
    lo = max(0.35, 180.0 / rows, 150.0 / cols)
    hi = min(0.9, 280.0 / rows)
    px = float(rng.uniform(lo, max(lo, hi)))
    th = float(rng.uniform(2.5, 4.0))
    gap = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.1, 1.0))
    n_min = int(np.ceil(2 * half_cover_mm / (th + gap))) + 1
    n = int(rng.integers(min(max(9, n_min), 19), 20))
    flipped = bool(rng.random() < 0.18)
    yaw = 0.0 if rng.random() < 0.5 else float(rng.uniform(-4, 4))
    roll = 0.0 if rng.random() < 0.5 else float(rng.uniform(-4, 4))
    inpl = 0.0 if rng.random() < 0.65 else float(rng.uniform(-5, 5))
    r = _rot(2, yaw) @ _rot(1, roll) @ _rot(0, inpl)
    rowdir = r @ np.array([0.0, -1.0 if flipped else 1.0, 0.0])
    coldir = r @ np.array([0.0, 0.0, -1.0])
    normal = r @ np.array([1.0, 0.0, 0.0])
    l2r = bool(rng.random() < 0.5)
    cy, cz = place(rows * px)
    centre = np.array([spine_x + rng.uniform(-4, 4), cy, cz])
    steps = (np.arange(n) - (n - 1) / 2) * (th + gap)
    if l2r:  # written from the patient's left to the right
        steps = steps[::-1]
    centres = centre[None, :] + steps[:, None] * normal[None, :]
    tr_te = {}
    for wt in weightings:
        tr_te[wt] = ((float(rng.uniform(2500, 5000)), float(rng.uniform(80, 130))) if wt == "T2"
                     else (float(rng.uniform(400, 800)), float(rng.uniform(8, 20))))
    ghost = float(rng.uniform(0.03, 0.1)) if rng.random() < 0.2 else 0.0
    return Acquisition(
        field_t=field_t, rows=rows, cols=cols, pixel_mm=px, thickness=th, gap=gap, n_slices=n, rowdir=rowdir,
        coldir=coldir, normal_left=normal, centres=centres, tr_te=tr_te,
        acq_frac=(float(rng.uniform(0.72, 1.0)), float(rng.uniform(0.55, 0.95))), apod=float(rng.uniform(0, 0.7)),
        snr=float(rng.uniform(9, 35) * (1.4 if field_t > 2 else 1.0)), coil_strength=float(rng.uniform(0.2, 0.85)),
        coil_falloff=float(rng.uniform(60, 170)), ghost=ghost, ghost_shift=float(rng.uniform(0.12, 0.45)),
        flipped=flipped, yaw_deg=yaw, roll_deg=roll, inplane_deg=inpl, left_to_right=l2r)


def render_grid(acq: Acquisition) -> tuple[int, int]:
    """Render grid (rows, cols): 1-2x the reconstruction matrix, about 480 on the long side (512 at 512)."""
    f = min(2.0, max(1.0, 480.0 / max(acq.rows, acq.cols)))
    return fft.next_fast_len(int(np.ceil(acq.rows * f)), real=True), fft.next_fast_len(
        int(np.ceil(acq.cols * f)), real=True)


def _window(n_acq: int, apod: float) -> np.ndarray:
    k = np.abs(np.fft.fftfreq(2 * (n_acq // 2), d=1.0)) * 2  # 0 .. 1 at the acquired edge
    return ((1 - apod) + apod * 0.5 * (1 + np.cos(np.pi * k))).astype(np.float32)


def band_limit(img: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Keep the acquired central k-space of a render-grid image, zero-fill to the matrix (index-0 aligned)."""
    big_r, big_c = img.shape
    ar = int(acq.rows * acq.acq_frac[0]) // 2 * 2
    ac = int(acq.cols * acq.acq_frac[1]) // 2 * 2
    spec = fft.rfft2(img, workers=1)
    hr, hc = ar // 2, ac // 2
    out = np.zeros((acq.rows, acq.cols // 2 + 1), dtype=np.complex64)
    wr = _window(ar, acq.apod)
    wc = _window(ac, acq.apod)[:hc]
    out[:hr, :hc] = spec[:hr, :hc] * wr[:hr, None] * wc[None, :]
    out[-hr:, :hc] = spec[-hr:, :hc] * wr[-hr:, None] * wc[None, :]
    res = fft.irfft2(out, s=(acq.rows, acq.cols), workers=1)
    return (res * (acq.rows * acq.cols / (big_r * big_c))).astype(np.float32)


def ghost_noise(img: np.ndarray, acq: Acquisition, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Motion ghost along the phase (column) direction, then complex noise and magnitude."""
    if acq.ghost > 0:
        sh = int(acq.ghost_shift * acq.cols)
        img = img + acq.ghost * np.roll(img, sh, axis=1) + 0.5 * acq.ghost * np.roll(img, -sh, axis=1)
    n = rng.standard_normal((2, *img.shape), dtype=np.float32) * np.float32(sigma)
    return np.hypot(img + n[0], n[1])
