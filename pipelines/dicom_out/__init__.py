"""Typed results -> DICOM objects a radiologist sees (IHE AI Results style).

``encode(study, result)`` returns, for one pipeline run on one study:

* ``sr``: a TID 1500 Comprehensive 3D SR (keypoints, measurements with units, uncertainty and finding
  sites, coded findings, research-use statement; Contributing Equipment names the algorithm);
* ``seg``: DICOM SEG of the outlined structures (vertebral bodies C2-C7 and the canal on radiographs,
  whatever masks an MRI pipeline gives), one per source series;
* ``pr``: a Grayscale Softcopy Presentation State per annotated image (outlines, Cobb lines, SVA plumb
  line, labels) - the presentation every viewer shows;
* ``report``: the one-page report as a Secondary Capture image and as an Encapsulated PDF;
* ``map``: the explanation maps (Grad-CAM) as a FRACTIONAL SEG per source image that has any (see
  ``pipelines.dicom_out.heatmap`` for why not a Parametric Map).

``encode_patient(report, results, sources, current=...)`` (``pipelines.dicom_out.patient``) encodes the
patient-level report of an X-ray and an MRI study of one patient (paper 002 Fig. 7/8): TID 1500 SR + PDF.

Series/UID policy: see ``pipelines.dicom_out.identity``. Codes: ``pipelines.dicom_out.codes``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydicom.dataset import Dataset

from pipelines.dicom_out import iod_lookup
from pipelines.dicom_out._sources import load_sources, previous_results
from pipelines.dicom_out.heatmap import build_heatmap_segs
from pipelines.dicom_out.identity import provenance, result_series_uid, series_number
from pipelines.dicom_out.patient import encode_patient
from pipelines.dicom_out.pr import build_gsps
from pipelines.dicom_out.report import build_pdf, build_sc, render
from pipelines.dicom_out.seg import iter_segs
from pipelines.dicom_out.sr import build_sr
from pipelines.patient.compare import Comparison
from pipelines.results import StudyResult
from pipelines.study import Study

__all__ = ["encode", "encode_patient"]

iod_lookup.install()  # highdicom asks the same questions of its standard tables for every object


def encode(study: Study, result: StudyResult, *, now: datetime | None = None,
           comparison: Comparison | None = None,
           first: Callable[[list[Dataset]], None] | None = None) -> list[Dataset]:
    """All DICOM result objects of ``result`` (SR, SEG..., GSPS..., report SC, report PDF, Grad-CAM SEG...).

    ``now`` fixes the creation time and InstanceNumber (tests); it defaults to the current UTC time. ``comparison``
    (with the patient's prior study, ``pipelines.patient.compare``) goes into the SR and the report page.
    ``first`` is called with the SR as soon as it is built, then with the first SEG as soon as it is built, then with
    the other SEGs, before the rest is encoded (the node stores and sends each hand-out while it encodes the next
    ones, the presentation states and the report); they are in the returned list too. Raises ValueError when the
    result does not belong to the study or refers to images it lacks.
    """
    if not result.images:
        return []
    sources = load_sources(study, result)
    prov = provenance(result.algorithm, result.pipeline, now, contributors=tuple(result.contributors))

    def series(kind: str) -> dict:
        return {"series_uid": result_series_uid(study.study_uid, result.pipeline, kind), "series_number": series_number(result.pipeline, kind)}

    sr_series = series("sr")
    objects: list[Dataset] = [build_sr(result, sources, prov, previous=previous_results(study, sr_series["series_uid"]),
                                       comparison=comparison, **sr_series)]
    if first is not None:
        first(list(objects))
    segs: list[Dataset] = []
    for seg in iter_segs(result, sources, prov, **series("seg")):
        segs.append(seg)
        if first is not None and len(segs) == 1:
            first([seg])  # one SEG in the PACS while the others are built (one per radiograph)
    objects += segs
    if first is not None and len(segs) > 1:
        first(segs[1:])
    objects += build_gsps(result, sources, prov, **series("pr"))
    objects += build_heatmap_segs(result, sources, prov, **series("map"))
    page = render(result, sources, comparison)
    objects.append(build_sc(result, sources, prov, page, **series("report")))
    objects.append(build_pdf(result, sources, prov, page, **series("pdf")))
    return objects
