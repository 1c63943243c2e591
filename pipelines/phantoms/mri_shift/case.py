"""One MR study of the shift suite: renderer A or B, shifted, with the per-level truth of ``mri_b.truth``; or
one study of renderer C (``pipelines.phantoms.mri_c``, no shifts: its acquisition draws its own).

``make_case("a" | "b", seed, parse_shifts([...]))`` -> ``MrCase`` (the series of the study, analysed series
first, and the truth with disc centres in patient coordinates and on the stored pixels); ``write_case`` writes
it through ``pipelines.phantoms.dicom.write_series`` with a ``truth.json``.

Renderer B takes every shift into its acquisition. Renderer A draws parallel sagittal planes of its own
geometry, so on A the shifts are applied around it: slice count, thickness, gap, pixel and matrix by its
generator's arguments; ``tilt`` and the in-plane part of ``offcentre`` by resampling every slice (the truth moves
with the same map); the lateral part of ``offcentre`` by rendering extra slices on one side and dropping them on
the other; ``bias`` by an extra coil-bias field; ``noise`` by its generator's noise level; flips and slice order
by the written geometry. ``oblique`` and ``stir`` need renderer B (ValueError on A).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.phantoms.dicom import MRI_MODEL_NAME, SagittalSeries, write_series
from pipelines.phantoms.mri_b.acquisition import sample_acquisition
from pipelines.phantoms.mri_b.render import render_series
from pipelines.phantoms.mri_b.truth import LevelTruthB, write_truth_b
from pipelines.phantoms.mri_shift.spec import matrix, number

STYLES = ("a", "b", "c")
MODEL_NAMES = {"a": MRI_MODEL_NAME, "b": "mri-phantom B", "c": "mri-phantom C"}
"""ManufacturerModelName of each renderer's series."""


ShiftedSeries = SagittalSeries
"""A shifted series of renderer A (the writer's ``SagittalSeries``)."""


@dataclass
class MrCase:
    """One study: ``series[0]`` is the T2 series the truth refers to; others are extra weightings."""

    style: str
    seed: int
    shifts: dict[str, str | None]
    series: list
    levels: tuple[LevelTruthB, ...]
    info: dict = field(default_factory=dict)

    @property
    def uid_key(self) -> str:
        return f"cspine-mri-{self.style}-{self.seed}-" + ",".join(f"{k}:{v}" for k, v in sorted(self.shifts.items()))


def make_case(style: str, seed: int, shifts: dict[str, str | None] | None = None) -> MrCase:
    """Render (and shift) one study; see the module docstring."""
    shifts = dict(shifts or {})
    if style == "b":
        return _case_b(seed, shifts)
    if style == "a":
        return _case_a(seed, shifts)
    if style == "c":
        if shifts:
            raise ValueError("renderer C takes no shift: its acquisition draws slices, pixels, matrix, slab, pose and "
                             "coil per study")
        from pipelines.phantoms.mri_c import make_case_c

        series, levels, info = make_case_c(seed)
        return MrCase("c", seed, {}, list(series), tuple(levels), dict(info))
    raise ValueError(f"style must be one of {STYLES}, not {style!r}")


def write_case(case: MrCase, out_dir: Path) -> list[Path]:
    """Write every series of the study into ``out_dir`` (one study UID) and ``out_dir/truth.json``."""
    import pydicom

    paths: list[Path] = []
    study_uid = None
    for s in case.series:
        files = write_series(s, out_dir, study_uid=study_uid, orientation=s.orientation, positions=np.asarray(s.positions),
                             uid_key=case.uid_key, model_name=MODEL_NAMES[case.style])
        study_uid = study_uid or str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        paths += files
    write_truth_b(Path(out_dir) / "truth.json", case.levels,
                  {"style": case.style, "seed": case.seed, "shifts": case.shifts, "acquisition": case.info,
                   "weightings": [s.weighting for s in case.series]})
    return paths


# ------------------------------------------------------------------------------------------- renderer B
class _GeometryView:
    """Renderer B's ``SeriesB`` seen as a ``ShiftedSeries`` (orientation and positions from its geometry)."""

    def __init__(self, s) -> None:  # noqa: ANN001
        self._s = s
        self.orientation = s.geometry.orientation
        self.positions = s.geometry.positions

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._s, name)


def _case_b(seed: int, shifts: dict[str, str | None]) -> MrCase:
    acq = sample_acquisition(seed)
    over: dict[str, object] = {}
    if "slices" in shifts:
        over["n_slices"] = int(number(shifts, "slices"))
    if "thickness" in shifts:
        over["thickness_mm"] = number(shifts, "thickness")
    if "gap" in shifts:
        over["gap_mm"] = number(shifts, "gap")
    if "pixel" in shifts:  # same field of view, finer or coarser pixels
        px = number(shifts, "pixel")
        over.update(pixel_mm=px, rows=int(round(acq.rows * acq.pixel_mm / px)), columns=int(round(acq.columns * acq.pixel_mm / px)))
    if "matrix" in shifts:
        over["rows"], over["columns"] = matrix(shifts)
    if "oblique" in shifts:
        over["slab_yaw_deg"] = over["slab_roll_deg"] = number(shifts, "oblique")
    if "tilt" in shifts:
        over["pitch_deg"] = number(shifts, "tilt")
    if "offcentre" in shifts:
        v = number(shifts, "offcentre")
        over.update(lateral_offset_mm=v, fov_offset_mm=(0.8 * v, 2.0 * v))
    if "bias" in shifts:
        over["bias"] = number(shifts, "bias")
    if "noise" in shifts:
        over["noise"] = number(shifts, "noise")
    over.update(flip_rows="flip" in shifts, flip_columns="upside" in shifts, reverse="reverse" in shifts)
    acq = replace(acq, **over)  # type: ignore[arg-type]
    t2 = render_series(seed, weighting="T2", acquisition=acq)
    series = [_GeometryView(t2)]
    for wt in ("T1", "STIR"):
        if wt.lower() in shifts:
            series.append(_GeometryView(render_series(seed, weighting=wt, acquisition=acq, patient=t2.patient)))
    return MrCase("b", seed, shifts, series, t2.levels, asdict(acq))


# ------------------------------------------------------------------------------------------- renderer A
def _case_a(seed: int, shifts: dict[str, str | None]) -> MrCase:
    from pipelines.phantoms.mri import generate_series

    for name in ("oblique", "stir"):
        if name in shifts:
            raise ValueError(f"shift {name!r} needs renderer B (--style b): renderer A draws parallel sagittal T2/T1 planes")
    n = int(number(shifts, "slices")) if "slices" in shifts else 11
    thick = number(shifts, "thickness") if "thickness" in shifts else 3.0
    spacing = thick + (number(shifts, "gap") if "gap" in shifts else 0.3)
    rows, cols = matrix(shifts) if "matrix" in shifts else (256, 256)
    px = number(shifts, "pixel") if "pixel" in shifts else 240.0 / 256
    if "pixel" in shifts and "matrix" not in shifts:
        rows = cols = int(round(240.0 / px))
    off = number(shifts, "offcentre") if "offcentre" in shifts else 0.0
    drop = int(round(abs(off) / spacing))
    kw = {"shape": (rows, cols), "fov_mm": px * cols, "n_slices": n + 2 * drop, "slice_thickness_mm": thick,
          "spacing_between_slices_mm": spacing}
    if "noise" in shifts:
        kw["noise"] = number(shifts, "noise")
    t2 = generate_series(seed, weighting="T2", **kw)
    wts = ["T2"] + (["T1"] if "t1" in shifts else [])
    phs = [t2] + [generate_series(seed, weighting=w, **kw) for w in wts[1:]]
    keep = slice(2 * drop, 2 * drop + n) if off > 0 else slice(0, n)
    tilt = number(shifts, "tilt") if "tilt" in shifts else 0.0
    shift_px = (0.8 * off / px, -2.0 * off / px)  # (x, y): posterior and cranial, as on renderer B
    flip, upside, reverse = "flip" in shifts, "upside" in shifts, "reverse" in shifts
    rng = np.random.default_rng([seed, 4242])
    bias = _bias_field(rows, cols, number(shifts, "bias"), rng) if "bias" in shifts else None
    out = []
    for ph in phs:
        vol = ph.volume[keep].astype(np.float32)
        if tilt or off:
            vol = np.stack([_move(v, tilt, shift_px) for v in vol])
        if bias is not None:
            vol *= bias[None]
        vol = np.clip(vol, 0, 4095).astype(np.uint16)
        if flip:
            vol = vol[:, :, ::-1]
        if upside:
            vol = vol[:, ::-1, :]
        pos = np.asarray(ph.slice_positions_mm[keep])
        orient, first = _a_geometry(pos, rows, cols, px, flip, upside)
        if reverse:
            vol, pos, first = vol[::-1], pos[::-1], first[::-1]
        out.append(ShiftedSeries(ph.patient, ph.weighting, np.ascontiguousarray(vol), (px, px), thick, spacing,
                                 tuple(float(v) for v in pos), orient, first))
    levels = _a_truth(t2, out[0], tilt, shift_px, flip, upside)
    info = {"n_slices": n, "thickness_mm": thick, "spacing_mm": spacing, "pixel_mm": px, "rows": rows, "columns": cols,
            "tilt_deg": tilt, "offcentre_mm": off, "lateral_offset_slices": drop if off > 0 else 0}
    return MrCase("a", seed, shifts, out, levels, info)


def _move(img: np.ndarray, tilt_deg: float, shift_px: tuple[float, float]) -> np.ndarray:
    """Rotate counter-clockwise on screen by ``tilt_deg`` (head forwards) about the centre, then shift."""
    c = (np.array(img.shape) - 1) / 2
    m, t = _map(tilt_deg, shift_px, c)
    inv = np.linalg.inv(m)
    return ndimage.affine_transform(img, inv, offset=c - inv @ (c + t), order=1, mode="constant", cval=0.0)


def _map(tilt_deg: float, shift_px: tuple[float, float], c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) forward map ``p' = m (p - c) + c + t`` of ``_move``."""
    th = np.radians(tilt_deg)
    # on screen (x right, y down) counter-clockwise: x' = x cos + y sin, y' = -x sin + y cos; here in (y, x)
    m = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return m, np.array([shift_px[1], shift_px[0]])


def _bias_field(rows: int, cols: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    c = rng.normal(0, 0.3, 2)
    return np.exp(strength * (0.8 * xx + c[0] * yy - 0.5 * (yy + c[1]) ** 2)).astype(np.float32)


def _a_geometry(pos: np.ndarray, rows: int, cols: int, px: float, flip: bool, upside: bool) -> tuple[list[float], np.ndarray]:
    """Renderer A's written geometry (``write_series`` defaults), with the flips."""
    row, col = np.array([0.0, 1, 0]), np.array([0.0, 0, -1])
    centres = np.stack([pos, np.full_like(pos, -cols * px / 2 + (cols - 1) / 2 * px),
                        np.full_like(pos, rows * px / 2 - (rows - 1) / 2 * px)], 1)
    if flip:
        row = -row
    if upside:
        col = -col
    first = centres - (cols - 1) / 2 * px * row - (rows - 1) / 2 * px * col
    return [float(v) for v in (*row, *col)], first


def _a_truth(ph, s: ShiftedSeries, tilt: float, shift_px: tuple[float, float], flip: bool,
             upside: bool) -> tuple[LevelTruthB, ...]:
    rows, cols = s.volume.shape[1:]
    c = (np.array([rows, cols]) - 1) / 2
    m, t = _map(tilt, shift_px, c)
    row, col = np.array(s.orientation[:3]), np.array(s.orientation[3:])
    pos = np.asarray(s.slice_positions_mm)
    k = int(np.argmin(np.abs(pos)))  # renderer A's discs lie on the patient midline (w = 0)
    px = s.pixel_spacing_mm[0]
    out = []
    for lt in ph.levels:
        yx = m @ (np.array([lt.disc_centre_px[1], lt.disc_centre_px[0]]) - c) + c + t
        x, y = yx[1], yx[0]
        x, y = (cols - 1 - x if flip else x), (rows - 1 - y if upside else y)
        p = s.positions[k] + x * px * row + y * px * col + np.array([-pos[k], 0.0, 0.0])
        out.append(LevelTruthB(
            level=lt.level, disc=lt.disc, disc_herniation=lt.disc_herniation, canal_residual_mm=lt.canal_residual_mm,
            canal_grade=lt.canal_grade, canal_stenosis=lt.canal_stenosis, cord_compression=lt.cord_compression,
            foramen_narrowing_left=lt.foramen_narrowing_left, foramen_narrowing_right=lt.foramen_narrowing_right,
            foraminal_stenosis_left=lt.foraminal_stenosis_left, foraminal_stenosis_right=lt.foraminal_stenosis_right,
            disc_centre_mm=tuple(float(v) for v in p), disc_slice=k, disc_centre_px=(float(x), float(y)),
            disc_offplane_mm=float(-pos[k]),
        ))
    return tuple(out)
