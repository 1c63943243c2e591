"""MR series -> ``pipelines.analyze`` (route, MriPipeline, dicom_out) -> SR and SEG that pass dciodvfy.

The network part (C-STORE to the node, results in Orthanc) is the node's end-to-end test; this one
covers everything from files on disk to the DICOM objects the node delivers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from pipelines.phantoms.dicom import write_series
from pipelines.phantoms.mri import generate_series
from pipelines.study import Study
from pipelines.vocabulary import LEVELS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet"),
]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _walk(ds) -> list[str]:
    """Every concept-name and coded-value meaning and text value in an SR content tree."""
    out = []
    for item in ds.get("ContentSequence", []):
        for attr in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            out += [c.CodeMeaning for c in item.get(attr, [])]
        if "TextValue" in item:
            out.append(str(item.TextValue))
        out += _walk(item)
    return out


def test_mr_series_yields_valid_sr_and_seg(tmp_path: Path, require, models):  # noqa: ANN001
    require("dciodvfy")
    torch.set_num_threads(1)
    from pipelines import analyze

    ph = generate_series(4_000_005)
    files = write_series(ph, tmp_path / "in")
    study = Study.from_paths(files)[0]
    analysis = analyze(study, models)
    assert analysis.skipped == [] and [r.pipeline for r in analysis.results] == ["mri"]
    by_class: dict[str, list] = {}
    for ds in analysis.objects:
        by_class.setdefault(str(ds.SOPClassUID), []).append(ds)
    assert len(by_class.get(SR_CLASS, [])) == 1 and len(by_class.get(SEG_CLASS, [])) == 1
    sr, seg = by_class[SR_CLASS][0], by_class[SEG_CLASS][0]
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == study.study_uid
    labels = {s.SegmentLabel for s in seg.SegmentSequence}
    assert "spinal canal" in labels and len(labels & {f"{lv} disc" for lv in LEVELS}) >= 4
    mid_uid = analysis.results[0].images[0].image_uid
    refs = {ref.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for ref in s.ReferencedInstanceSequence}
    assert mid_uid in refs
    meanings = set(_walk(sr))
    # every level's disc point (its tracking identifier) and the SCT finding sites of the levels' findings (the
    # vertebrae of the segment: sites sit under each finding's evaluation, not on the groups, for OHIF's labels)
    assert all(any(t.startswith(f"{lv} disc") for t in meanings) for lv in LEVELS)
    assert {f"C{i} vertebra" for i in range(2, 8)} <= meanings
    assert {"Spinal canal stenosis", "Probability"} <= meanings
    for name, ds in (("sr", sr), ("seg", seg)):
        p = tmp_path / f"{name}.dcm"
        ds.save_as(p, enforce_file_format=True)
        assert _errors(p) == [], name
