"""The X-ray phantom: synthetic lateral cervical radiographs (neutral / flexion / extension) with exact truth.

Modules, in the order the phantom is built: ``anatomy`` (patient parameters, the vertebral chain in mm),
``sampling`` (one patient from a seed), ``truth`` (true measurements from the construction, not from
``pipelines.xray.geometry``), ``draw`` (attenuation canvases and the structures on them), ``render`` (projection,
exposure, one view), ``study`` (a study of several views), ``coco`` (COCO-keypoints export), ``cli``
(``cspine-node phantom xray``); ``upper_cervical`` adds the C0-C2 abnormalities. The DICOM files are written by
:mod:`pipelines.phantoms.dicom`.
"""

from pipelines.phantoms.xray.anatomy import PatientParams
from pipelines.phantoms.xray.render import PhantomView, generate_view, unit_image
from pipelines.phantoms.xray.sampling import DIFFICULTIES
from pipelines.phantoms.xray.study import PhantomStudy, generate_study

__all__ = ["DIFFICULTIES", "PatientParams", "PhantomStudy", "PhantomView", "generate_study", "generate_view",
           "unit_image"]
