"""Per-level ground truth of a renderer-B series (also the truth format of the shift suite), and its JSON.

Same meaning as every MRI phantom (``pipelines.vocabulary.TRUTH_RULES``): disc herniation = protrusion or
extrusion; canal stenosis = residual mid-sagittal canal AP below cord AP + 1 mm at the disc level (cord contact or
deformity); foraminal stenosis = AP narrowing of the foramen >= 50 %. Renderer B measures the residual canal on
the patient's mid-sagittal plane (not on a slice) as the narrowest sac AP within half a disc height + 2 mm of the
disc centre, and grades it: 0 >= cord + 3 mm, 1 >= cord + 1 mm, 2 >= 0.75 cord, 3 below (cord compressed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.vocabulary import TRUTH_RULES


def canal_grade_b(residual_mm: float, cord_ap_mm: float) -> int:
    """Canal grade 0..3 of a residual sac AP (mm) for a cord of ``cord_ap_mm`` (module docstring)."""
    if residual_mm >= cord_ap_mm + 3.0:
        return 0
    if residual_mm >= cord_ap_mm + 1.0:
        return 1
    if residual_mm >= 0.75 * cord_ap_mm:
        return 2
    return 3


@dataclass(frozen=True)
class LevelTruthB:
    """Truth of one graded level, with the disc centre in patient coordinates and on the stored pixels."""

    level: str
    disc: str
    disc_herniation: bool
    canal_residual_mm: float
    canal_grade: int
    canal_stenosis: bool
    cord_compression: bool
    foramen_narrowing_left: float
    foramen_narrowing_right: float
    foraminal_stenosis_left: bool
    foraminal_stenosis_right: bool
    disc_centre_mm: tuple[float, float, float]
    """Disc centre (LPS, mm) in the frame of reference of the written series."""
    disc_slice: int
    """Index (written order, 0-based) of the slice nearest the disc centre."""
    disc_centre_px: tuple[float, float]
    """Disc centre (column, row) on the stored pixel grid of ``disc_slice``."""
    disc_offplane_mm: float
    """Distance of the disc centre from that slice's plane (mm, + towards the patient's left)."""

    def label(self, task: str) -> bool:
        """The binary label of one of ``vocabulary.TASKS``."""
        return bool(getattr(self, {"disc_degeneration": "disc_herniation"}.get(task, task)))


def truth_dict(levels: tuple[LevelTruthB, ...], extra: dict | None = None) -> dict:
    """JSON-ready truth: levels, rules, and whatever describes the series (``extra``)."""
    return {"levels": [asdict(t) for t in levels], "rules": TRUTH_RULES, **(extra or {})}


def write_truth_b(path: Path, levels: tuple[LevelTruthB, ...], extra: dict | None = None) -> Path:
    path = Path(path)
    path.write_text(json.dumps(truth_dict(levels, extra), indent=1))
    return path


def read_truth_b(path: Path) -> tuple[tuple[LevelTruthB, ...], dict]:
    """The levels and the rest of a truth JSON written by ``write_truth_b``."""
    d = json.loads(Path(path).read_text())
    levels = tuple(LevelTruthB(**{**t, "disc_centre_mm": tuple(t["disc_centre_mm"]),
                                  "disc_centre_px": tuple(t["disc_centre_px"])}) for t in d.pop("levels"))
    return levels, d
