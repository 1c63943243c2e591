"""Renderer B: a second synthetic lateral cervical radiograph, written independently of renderer A.

Its own anatomy (``anatomy``: bodies hung from C2 by disc wedges, population distributions of body proportions,
curve shapes and motion), its own structures (``structures``: concave endplates, dens and atlas, pillars, spinous
processes, osteophytes, airway, shoulders, skull for a wide field) and its own image formation (``render``:
line integrals, photon counts with scatter and Poisson noise, detector blur, dynamic-range compression and edge
enhancement, a tightly collimated field without the skull or a wide one). ``study`` makes a three-view study with
exact truth in the same keypoint semantics as renderer A. It shares nothing with ``pipelines.phantoms.xray`` but
the DICOM writer (``pipelines.phantoms.dicom.write_study``), which writes its views as DX For Presentation files.
"""

from pipelines.phantoms.xray_b.study import FIELDS, StudyB, ViewB, generate_study_b

__all__ = ["FIELDS", "StudyB", "ViewB", "generate_study_b"]
