"""Renderer B's acquisition: how the slab is planned on the patient, and the pixel grid of every slice.

Patient frame: DICOM LPS (mm; x left, y posterior, z superior). The anatomy frame of ``skeleton`` is placed in it
by the head pose (flexion/extension ``pitch``, lateral bend ``head_roll``, axial turn ``head_yaw``, degrees) about
the C4-C5 disc centre at the origin. The slab is sagittal, turned by ``slab_yaw`` (about z) and ``slab_roll``
(about y), its centre ``lateral_offset_mm`` off the spine's midline along the slab normal and its field of view
centred ``fov_offset_mm`` (anterior-posterior, cranio-caudal; in the slab plane) away from the planned centre.

Defaults (``sample_acquisition``): 9-17 slices of 3-4 mm with 0-1.2 mm gaps, 0.44-0.78 mm square pixels on a
rectangular matrix, slab obliquity up to 5 degrees, head pitch up to 15, the spine up to 5 mm off the slab
centre, coil bias and Rician noise of varying strength. Any field can be fixed with ``overrides``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

WEIGHTINGS = ("T2", "T1", "STIR")


def rot_x(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@dataclass(frozen=True)
class Acquisition:
    """One sagittal acquisition (see module docstring for the frames)."""

    n_slices: int = 13
    thickness_mm: float = 3.0
    gap_mm: float = 0.3
    pixel_mm: float = 0.6
    rows: int = 384
    """Pixels cranio-caudally (along the column direction)."""
    columns: int = 320
    """Pixels antero-posteriorly (along the row direction)."""
    slab_yaw_deg: float = 0.0
    slab_roll_deg: float = 0.0
    pitch_deg: float = 0.0
    head_roll_deg: float = 0.0
    head_yaw_deg: float = 0.0
    lateral_offset_mm: float = 0.0
    fov_offset_mm: tuple[float, float] = (0.0, 0.0)
    bias: float = 0.3
    """Strength of the receive-coil bias (0 none, 1 strong)."""
    noise: float = 0.03
    """Rician noise sigma relative to the brightest tissue."""
    flip_rows: bool = False
    """Anterior on the image right (row direction pointing anterior)."""
    flip_columns: bool = False
    """Head at the image bottom."""
    reverse: bool = False
    """Slices numbered from the patient's left to right (default right to left)."""

    @property
    def spacing_mm(self) -> float:
        return self.thickness_mm + self.gap_mm

    def to_dict(self) -> dict:
        return asdict(self)


def sample_acquisition(seed: int, **overrides: object) -> Acquisition:
    """Draw an acquisition for ``seed`` in the ranges of the module docstring; ``overrides`` fix fields."""
    rng = np.random.default_rng([seed, 6262])
    n = int(rng.integers(9, 18))
    thick = float(rng.uniform(3.0, 4.0))
    px = float(rng.uniform(0.44, 0.78))
    fov_si = float(rng.uniform(190.0, 260.0))
    ratio = float(rng.choice([1.0, 0.875, 0.8, 0.75]))
    rows = int(np.clip(round(fov_si / px / 16) * 16, 256, 512))
    cols = int(np.clip(round(rows * ratio / 16) * 16, 224, 512))
    acq = Acquisition(
        n_slices=n, thickness_mm=thick, gap_mm=float(rng.choice([0.0, rng.uniform(0.2, 1.2)])), pixel_mm=px,
        rows=rows, columns=cols, slab_yaw_deg=float(rng.uniform(-5, 5)), slab_roll_deg=float(rng.uniform(-5, 5)),
        pitch_deg=float(rng.uniform(-15, 15)), head_roll_deg=float(rng.normal(0, 2.0)),
        head_yaw_deg=float(rng.normal(0, 2.0)), lateral_offset_mm=float(np.clip(rng.normal(0, 2.5), -5, 5)),
        fov_offset_mm=(float(rng.normal(0, 8)), float(rng.normal(0, 10))), bias=float(rng.uniform(0.1, 0.7)),
        noise=float(rng.uniform(0.015, 0.06)),
    )
    return replace(acq, **overrides) if overrides else acq  # type: ignore[arg-type]


@dataclass(frozen=True)
class SliceGeometry:
    """The written geometry of a series: one ``ImagePositionPatient`` per slice, one orientation for all."""

    row_dir: np.ndarray
    """(3,) direction of increasing column index (along a row)."""
    col_dir: np.ndarray
    """(3,) direction of increasing row index."""
    normal: np.ndarray
    """(3,) slab normal towards the patient's left (whatever the flips)."""
    positions: np.ndarray
    """(n, 3) centre of the first pixel of each slice, in written order."""
    centres: np.ndarray
    """(n, 3) slice centres, in written order."""
    pose: np.ndarray
    """(3, 3) anatomy frame -> patient frame rotation (the anatomy origin is the patient origin)."""
    pixel_mm: float
    shape: tuple[int, int]

    @property
    def orientation(self) -> list[float]:
        return [float(v) for v in (*self.row_dir, *self.col_dir)]

    def points(self, k: int, offset_mm: float = 0.0) -> np.ndarray:
        """(rows * columns, 3) patient coordinates of slice ``k``'s pixel centres (shifted along the normal)."""
        rows, cols = self.shape
        r, c = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
        base = self.positions[k] + offset_mm * self.normal
        return (base[None, :] + (c.ravel()[:, None] * self.row_dir[None, :] + r.ravel()[:, None] * self.col_dir[None, :])
                * self.pixel_mm).astype(np.float32)

    def to_pixel(self, point: np.ndarray) -> tuple[int, float, float, float]:
        """Nearest slice, (column, row) on its stored grid, and the distance off its plane (mm)."""
        off = (point[None, :] - self.centres) @ self.normal
        k = int(np.argmin(np.abs(off)))
        d = point - self.positions[k]
        return k, float(d @ self.row_dir / self.pixel_mm), float(d @ self.col_dir / self.pixel_mm), float(off[k])


def slice_geometry(acq: Acquisition) -> SliceGeometry:
    """Place the slab and its pixel grids (see module docstring)."""
    pose = rot_z(acq.head_yaw_deg) @ rot_y(acq.head_roll_deg) @ rot_x(acq.pitch_deg)
    slab = rot_z(acq.slab_yaw_deg) @ rot_y(acq.slab_roll_deg)
    row, col, nrm = slab @ np.array([0.0, 1, 0]), slab @ np.array([0.0, 0, -1]), slab @ np.array([1.0, 0, 0])
    # planned centre: on the canal, a little below C4-C5; the spine off the slab centre by the lateral offset
    planned = pose @ np.array([0.0, 10.0, -4.0])
    centre = planned - acq.lateral_offset_mm * nrm + acq.fov_offset_mm[0] * row - acq.fov_offset_mm[1] * col
    rows, cols = acq.rows, acq.columns
    if acq.flip_rows:
        row = -row
    if acq.flip_columns:
        col = -col
    k = np.arange(acq.n_slices) - (acq.n_slices - 1) / 2
    centres = centre[None, :] + (k * acq.spacing_mm)[:, None] * nrm[None, :]
    if acq.reverse:
        centres = centres[::-1]
    first = centres - (cols - 1) / 2 * acq.pixel_mm * row - (rows - 1) / 2 * acq.pixel_mm * col
    return SliceGeometry(row, col, nrm, first, centres, pose, acq.pixel_mm, (rows, cols))
