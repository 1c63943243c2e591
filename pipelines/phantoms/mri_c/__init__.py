"""Renderer C: a third, independently written synthetic sagittal cervical-spine MR study (T2, sometimes T1).

``make_case_c(seed)`` returns ``(series, levels, info)``: the series (``series[0]`` is the sagittal T2 the truth
refers to), the exact per-level truth for C2-C3 .. C6-C7 (``LevelTruthB``) and a JSON-ready dict of the draws.
``draw_case_c(seed)`` makes the same draws and truth without rendering any pixel.
"""

from __future__ import annotations

from pipelines.phantoms.mri_c.case import SeriesC, draw_case_c, make_case_c
from pipelines.phantoms.mri_c.patient import PatientC

__all__ = ["PatientC", "SeriesC", "draw_case_c", "make_case_c"]
