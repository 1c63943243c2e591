"""The MRI shift suite on top of either renderer (A: ``pipelines.phantoms.mri``, B: ``pipelines.phantoms.mri_b``):
slice count and thickness, gaps, pixel size, matrix, obliquity, head tilt, off-centre spine, coil bias, noise,
T1/STIR series in the study, flipped orientation and reversed slice order (``spec``), applied per study with the
truth moved exactly (``case``)."""

from pipelines.phantoms.mri_shift.case import MrCase, make_case, write_case
from pipelines.phantoms.mri_shift.spec import SUITE, parse_shifts, suite_shift

__all__ = ["SUITE", "MrCase", "make_case", "parse_shifts", "suite_shift", "write_case"]
