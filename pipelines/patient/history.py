"""Where the other study of a patient comes from: a small interface the node implements over its index.

The patient-level report pairs an X-ray and an MRI study of one patient. ``pipelines`` does not know where
earlier studies are kept; it asks a ``PatientHistory`` (``node.patients.SpoolHistory`` answers from the node's
own index, by a salted patient key and a study-date window).
"""

from __future__ import annotations

from typing import Protocol

from pipelines.results import StudyResult
from pipelines.study import Study
from pipelines.vocabulary import PipelineName

PAIRED: tuple[PipelineName, ...] = (PipelineName.XRAY, PipelineName.MRI)
"""The pipelines whose results make a patient-level report together."""


def other_modality(pipeline: PipelineName | str) -> PipelineName:
    """The pipeline paired with ``pipeline`` (X-ray <-> MRI)."""
    return PipelineName.MRI if PipelineName(pipeline) == PipelineName.XRAY else PipelineName.XRAY


class PatientHistory(Protocol):
    """Earlier analysed studies of the patient of a study."""

    def partner(self, study: Study, pipeline: PipelineName) -> tuple[Study, StudyResult] | None:
        """The newest other study of ``study``'s patient analysed by ``pipeline`` (within the node's pairing
        window), with its typed result; None when there is none."""
        ...
