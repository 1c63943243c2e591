"""Renderer B: a second sagittal cervical MR phantom, written from scratch (nothing shared with
``pipelines.phantoms.mri`` but the DICOM writer ``pipelines.phantoms.dicom``).

Modules: ``patient`` (its own population: sizes, posture, degeneration), ``skeleton`` (rigid bodies chained
through wedge discs, the canal line), ``tissues`` (what lies at any 3-D point: C1 arches and dens, clivus and
posterior fossa, airway, bodies and discs, herniations with migrated fragments, osteophyte ridges, sac and cord,
flavum buckling, laminae and spinous processes, pedicles, pillars and facets, foramina and roots, vertebral
arteries), ``acquisition`` (slab planning and pixel grids: oblique slabs, head pose, off-centre spine, gaps,
rectangular matrices), ``render`` (partial volume, signal per weighting, bias, Rician noise), ``truth`` (per-level
truth with disc centres in patient coordinates and on the stored pixels).
"""

from pipelines.phantoms.mri_b.acquisition import Acquisition, sample_acquisition
from pipelines.phantoms.mri_b.patient import SpinePatient, sample_patient
from pipelines.phantoms.mri_b.render import SeriesB, render_series
from pipelines.phantoms.mri_b.truth import LevelTruthB

__all__ = ["Acquisition", "LevelTruthB", "SeriesB", "SpinePatient", "render_series", "sample_acquisition",
           "sample_patient"]
