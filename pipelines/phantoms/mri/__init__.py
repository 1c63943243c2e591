"""The MRI phantom: synthetic cervical sagittal MR series of a virtual patient with per-level ground truth.

Modules: ``anatomy`` (the spine in sagittal planes as tissue labels, the residual canal and its grade),
``truth`` (per-level truth, its rules, the truth JSON), ``series`` (one rendered series), ``cli``
(``cspine-node phantom mri``). The virtual patient is :mod:`pipelines.phantoms.patient`; the DICOM files are
written by :mod:`pipelines.phantoms.dicom`.
"""

from pipelines.phantoms.mri.series import MriPhantom, generate_series
from pipelines.phantoms.mri.truth import LevelTruth, cord_compression_truth

__all__ = ["LevelTruth", "MriPhantom", "cord_compression_truth", "generate_series"]
