"""Spine knowledge: routing, the X-ray and MRI pipelines, and their DICOM outputs.

``analyze(study)`` is the one entry point the node uses: route, run each applicable pipeline, encode
its typed results as DICOM objects. Pipelines are imported lazily (torch is heavy).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.results import StudyResult
from pipelines.route import Route, route
from pipelines.study import Instance, Study

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Analysis", "Instance", "Pipeline", "Route", "Study", "StudyResult", "analyze", "configure", "get_pipeline",
           "route"]


class Pipeline(Protocol):
    """What ``pipelines.xray.pipeline.XrayPipeline`` and ``pipelines.mri.pipeline.MriPipeline`` provide."""

    name: str

    def run(self, study: Study, instances: tuple[Instance, ...]) -> StudyResult: ...


@dataclass
class Analysis:
    """The outcome of analysing one study: typed results, DICOM objects, and what was skipped."""

    study_uid: str
    results: list[StudyResult] = field(default_factory=list)
    objects: list[Dataset] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


_PIPELINES: dict[str, Pipeline] = {}
_OPTIONS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


def configure(name: str, **options: Any) -> None:
    """Constructor options of a pipeline (e.g. ``configure("xray", device="cuda", batch_max_images=8)``); the
    node's worker passes its settings here. A pipeline already loaded is loaded again on next use."""
    with _LOCK:
        _OPTIONS[name] = dict(options)
        _PIPELINES.pop(name, None)


def get_pipeline(name: str) -> Pipeline:
    """Load (once per process, shared by its threads) and return the named pipeline."""
    with _LOCK:
        if name not in _PIPELINES:
            if name == "xray":
                from pipelines.xray.pipeline import XrayPipeline

                _PIPELINES[name] = XrayPipeline(**_OPTIONS.get(name, {}))
            elif name == "mri":
                from pipelines.mri.pipeline import MriPipeline

                _PIPELINES[name] = MriPipeline(**_OPTIONS.get(name, {}))
            else:
                raise KeyError(f"unknown pipeline {name!r}")
        return _PIPELINES[name]


def analyze(study: Study) -> Analysis:
    """Route the study, run every applicable pipeline, and encode the results as DICOM objects."""
    from pipelines.dicom_out import encode

    analysis = Analysis(study.study_uid)
    for r in route(study):
        if r.pipeline is None:
            analysis.skipped.append(r.reason)
            continue
        result = get_pipeline(r.pipeline).run(study, r.instances)
        analysis.results.append(result)
        analysis.objects.extend(encode(study, result))
    return analysis
