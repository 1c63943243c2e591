"""Spine knowledge: routing, the X-ray and MRI pipelines, the patient level, and their DICOM outputs.

``analyze(study, models, history)`` is the one entry point the node uses: route, run each applicable pipeline
with the models it is handed (``pipelines.interfaces.ModelSet``, built by ``models.registry``), encode its typed
results as DICOM objects, and add the patient-level report when the patient's other modality is known (from
this study or from ``history``). The node only stores what it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pipelines.interfaces import ModelSet, PatientModel
from pipelines.patient.compare import Comparison, PriorLookup
from pipelines.patient.history import PatientHistory
from pipelines.results import StudyResult
from pipelines.route import Route, route
from pipelines.study import Instance, Study
from pipelines.vocabulary import PipelineName

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Analysis", "Instance", "ModelSet", "PatientHistory", "Pipeline", "Route", "Study", "StudyResult",
           "add_patient_level", "analyze", "pipeline_for", "route"]

LOG = logging.getLogger("pipelines")


class Pipeline(Protocol):
    """What ``pipelines.xray.pipeline.XrayPipeline`` and ``pipelines.mri.pipeline.MriPipeline`` provide."""

    name: PipelineName

    def run(self, study: Study, instances: tuple[Instance, ...]) -> StudyResult: ...


@dataclass
class Analysis:
    """The outcome of analysing one study: typed results, DICOM objects, and what was skipped."""

    study_uid: str
    results: list[StudyResult] = field(default_factory=list)
    objects: list[Dataset] = field(default_factory=list)
    """The study's own result objects (SR, SEG, GSPS, PDF ...)."""
    patient_objects: list[Dataset] = field(default_factory=list)
    """The patient-level SR + PDF, when the patient's other modality was found."""
    partner_study_uid: str = ""
    """The study paired with this one for the patient-level report ("" when none)."""
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the analysis (e.g. the patient-level report could not be built)."""
    comparisons: list[Comparison] = field(default_factory=list)
    """Per pipeline result, the comparison with the patient's prior study (when ``history`` has ``priors``)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step: ``pipeline:<name>`` (each pipeline's run), ``encode`` (its DICOM objects, all pipelines),
    ``priors`` (waiting for the prior lookup after the pipeline finished) and ``patient`` (the patient-level report)."""


def pipeline_for(name: PipelineName | str, models: ModelSet) -> Pipeline:
    """The named pipeline over ``models``; ValueError when a model it needs is not configured."""
    name = PipelineName(name)
    if name == PipelineName.XRAY:
        from pipelines.xray.pipeline import XrayPipeline

        return XrayPipeline.from_models(models)
    from pipelines.mri.pipeline import MriPipeline

    return MriPipeline.from_models(models)


def analyze(study: Study, models: ModelSet, history: PatientHistory | None = None, *,
            now: datetime | None = None, on_first: Callable[[list[Dataset]], None] | None = None) -> Analysis:
    """Route the study, run every applicable pipeline, encode the results as DICOM objects, and add the patient-level
    report (``pipelines.patient``) when this study or ``history`` holds the patient's other modality. A failure of
    the patient-level report is a warning: the study's own results still go out. ``on_first``: called with each
    pipeline's SR and SEGs as soon as they are encoded (``pipelines.dicom_out.encode``'s ``first``)."""
    from pipelines.dicom_out import encode

    analysis = Analysis(study.study_uid)
    for r in route(study):
        if r.pipeline is None:
            analysis.skipped.append(r.reason)
            continue
        try:
            pipeline = pipeline_for(r.pipeline, models)
        except ValueError as exc:
            analysis.skipped.append(f"{r.pipeline}: {exc}")
            continue
        priors = PriorLookup(history, study, pipeline.name)  # runs while the pipeline does (``node.priors``)
        t = time.perf_counter()
        result = pipeline.run(study, r.instances)
        t1 = time.perf_counter()
        comparison = priors.comparison(result)
        if priors.started:
            analysis.timings["priors"] = analysis.timings.get("priors", 0.0) + priors.wait_s
        if comparison is not None:
            analysis.comparisons.append(comparison)
        t2 = time.perf_counter()
        analysis.results.append(result)
        analysis.objects.extend(encode(study, result, now=now, comparison=comparison, first=on_first))
        key = f"pipeline:{pipeline.name}"
        analysis.timings[key] = analysis.timings.get(key, 0.0) + t1 - t
        analysis.timings["encode"] = analysis.timings.get("encode", 0.0) + time.perf_counter() - t2
    t = time.perf_counter()
    add_patient_level(analysis, study, models.neck_pain, history, now=now, on_first=on_first)
    if analysis.patient_objects:
        analysis.timings["patient"] = time.perf_counter() - t
    return analysis


def add_patient_level(analysis: Analysis, study: Study, predictor: PatientModel | None,
                      history: PatientHistory | None, *, now: datetime | None = None,
                      on_first: Callable[[list[Dataset]], None] | None = None) -> None:
    """Add the patient-level SR + PDF of ``analysis.results`` (``pipelines.patient.patient_objects``; ``on_first``
    gets the SR before the PDF is rendered). A failure is a warning in ``analysis``: the study's own results still
    go out."""
    from pipelines.patient import patient_objects

    try:
        analysis.patient_objects, analysis.partner_study_uid = patient_objects(
            study, analysis.results, predictor, history, now, first=on_first)
    except Exception as exc:  # noqa: BLE001 - the study's own results must still go out
        LOG.warning("patient-level report failed: %s", type(exc).__name__)
        analysis.warnings.append(f"patient-level report not built: {type(exc).__name__}: {str(exc)[:300]}")
