"""Test helper: every TEXT value of a result's SR, as the node would write it (``pipelines.dicom_out.encode``)."""

from __future__ import annotations

from pipelines.results import StudyResult
from pipelines.study import Study


def sr_texts(study: Study, result: StudyResult) -> list[str]:
    from pipelines.dicom_out import encode

    sr = next(o for o in encode(study, result) if o.Modality == "SR")
    texts: list[str] = []

    def walk(items) -> None:  # noqa: ANN001
        for it in items:
            if "TextValue" in it:
                texts.append(str(it.TextValue))
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(sr.ContentSequence)
    return texts
