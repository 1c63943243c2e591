"""The MRI phantom's ground truth per graded level, its rules, and the truth JSON.

Truth rules (``pipelines.vocabulary.TRUTH_RULES``): disc herniation = protrusion or extrusion; canal stenosis =
residual mid-sagittal canal AP diameter below cord diameter + 1 mm (no CSF left in front of and behind the cord:
cord contact or deformity, Kang grade >= 2); cord compression = the same; foraminal stenosis = narrowing >= 50 %
of the foraminal AP width.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.phantoms.mri.anatomy import canal_grade, residual_canal_mm
from pipelines.phantoms.patient import VirtualPatient
from pipelines.vocabulary import TRUTH_RULES

if TYPE_CHECKING:
    from pipelines.phantoms.mri.series import MriPhantom


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
