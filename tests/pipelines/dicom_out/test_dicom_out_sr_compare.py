"""The prior comparison in the encoded objects: SR remarks (dciodvfy 0 errors), the report page's table."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipelines.dicom_out import encode
from pipelines.dicom_out.sr_compare import comparison_remarks, comparison_table
from pipelines.dicom_out.sr_read import prior_from_dataset
from pipelines.patient.compare import Comparison, PriorStudy, compare
from pipelines.results import StudyResult
from pipelines.study import Study


def _texts(sr: Dataset) -> list[str]:
    out = []
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "C0034375":
            out += [str(c.TextValue) for c in item.ContentSequence if c.ValueType == "TEXT"]
    return out


def _comparison(result: StudyResult, sr: Dataset) -> Comparison:
    prior = prior_from_dataset(sr, "node index")
    assert prior.result is not None
    older = dataclasses.replace(prior, study_date="20240101", result=dataclasses.replace(
        prior.result, measurements=[dataclasses.replace(m, value=m.value - 6.0) if m.key == "cobb_c2_c7" else m
                                    for m in prior.result.measurements]))
    unreadable = PriorStudy("1.2.3.4", "20250101", None, "pacs (QIDO-RS)", "prior SR unreadable (InvalidDicomError): not compared")
    cmp = compare(result, "20260101", [older, unreadable])
    assert cmp is not None and cmp.compared
    return cmp


@pytest.mark.integration
def test_sr_and_report_carry_the_comparison(xray_case: tuple[Study, StudyResult], xray_objects: list[Dataset],
                                            tmp_path: Path, dciodvfy, now: datetime) -> None:
    study, result = xray_case
    cmp = _comparison(result, xray_objects[0])
    objects = encode(study, result, now=now, comparison=cmp)
    sr = objects[0]
    texts = _texts(sr)
    assert texts[-len(comparison_remarks(cmp)):] == comparison_remarks(cmp)
    head = next(t for t in texts if t.startswith("Compared with 2024-01-01 (2.0 years earlier, node index)"))
    assert result.algorithm.name in head
    cobb = next(t for t in texts if t.startswith("Comparison: C2-C7 Cobb angle [neutral]"))
    assert "change +6.00 deg (+3.00 deg/year)" in cobb
    assert any(t.startswith("Comparison note: prior study of 2025-01-01 (pacs (QIDO-RS)): prior SR unreadable") for t in texts)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    errors, _ = dciodvfy(path)
    assert errors == []
    # the report page differs from the one without a comparison, and its table has the Cobb rows
    title, header, rows, widths, marked = comparison_table(cmp)
    assert title.startswith("Compared with 2024-01-01") and header[3] == "2024-01-01"
    assert any(r[0].startswith("C2-C7 Cobb angle [neutral]") and r[4] == "+6.0°" for r in rows)
    assert len(rows) == len(marked) and abs(sum(widths) - 1.0) < 1e-6
    sc_with = next(o for o in objects if o.Modality == "OT")
    sc_without = next(o for o in xray_objects if o.Modality == "OT")
    assert not np.array_equal(sc_with.pixel_array, sc_without.pixel_array)
