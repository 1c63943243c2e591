"""OHIF still writes what the corrections reader was built on: the recording of ``record_ohif_sr.py`` (real OHIF
3.13.2, headless Chromium, a real Orthanc) run again and compared with the committed fixture
``tests/fixtures/ohif_saved_sr.dcm``: the same SOP class, tools, graphic types and labels, points where the mouse
aimed, and the same corners corrected; then OHIF restores that SR, a point is dragged and the SR saved again (a new
SR with new tracking UIDs, as ``ohif_saved_sr_edited.dcm``). Skips outside CI when npm, node or chromium is missing (as the viewer test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.corrections import match_corrections, read_annotations
from pipelines.results import AlgorithmInfo, ImageResult, Keypoint, StudyResult
from pipelines.vocabulary import View
from tests.integration.record_ohif_sr import DEFAULT_OUT, record
from tests.integration.test_viewer_ohif import CHROMIUM, _unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def _moved(path: Path, sidecar: dict) -> set[str]:
    uid = sidecar["referenced_image"]
    kps = [Keypoint(n, x, y, 1.0, uid) for n, (x, y) in sidecar["keypoints"].items()]
    rows, cols = sidecar["image_size"]
    img = ImageResult(uid, "1.2.3", View.NEUTRAL, rows, cols, tuple(sidecar["pixel_spacing_mm"]), kps)
    result = StudyResult(sidecar["study_uid"], "xray", AlgorithmInfo("x", "0"), images=[img])
    return set(match_corrections(read_annotations(pydicom.dcmread(path)), result).images[uid].moved)


def test_ohif_saves_what_the_fixture_holds(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        _unavailable("node missing")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} missing (apt-get install chromium)")
    out = tmp_path / "ohif_saved_sr.dcm"
    report = record(out, tmp_path / "shots", edit=True)
    assert report.get("written") and report.get("written_edited"), {k: v for k, v in report.items() if k != "buttons"}
    new, old = read_annotations(pydicom.dcmread(out)), read_annotations(pydicom.dcmread(DEFAULT_OUT))
    assert new.sop_class_uid == old.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.22"
    assert [(a.tool, a.graphic_type, len(a.points), a.label) for a in new.annotations] == \
        [(a.tool, a.graphic_type, len(a.points), a.label) for a in old.annotations]
    sidecar = json.loads(out.with_suffix(".json").read_text())
    for a, aimed in zip(new.annotations, sidecar["aimed"], strict=True):
        n = len(aimed["image"])
        assert np.abs(a.points[:n] + 0.5 - np.asarray(aimed["image"])).max() < 1.5
    fixture_sidecar = json.loads(DEFAULT_OUT.with_suffix(".json").read_text())
    assert _moved(out, sidecar) == _moved(DEFAULT_OUT, fixture_sidecar) == {
        "C7 antero-inferior", "C7 postero-inferior", "C4 antero-inferior", "C5 postero-superior"}
    edited = read_annotations(pydicom.dcmread(report["written_edited"]))
    old_edited = read_annotations(pydicom.dcmread(DEFAULT_OUT.with_name(DEFAULT_OUT.stem + "_edited.dcm")))
    assert [a.tool for a in edited.annotations] == [a.tool for a in old_edited.annotations] == [a.tool for a in new.annotations]
    assert not {a.tracking_uid for a in edited.annotations} & {a.tracking_uid for a in new.annotations}
    dragged_to = np.asarray(sidecar["aimed_edit"]["image"][1]) - 0.5
    assert np.hypot(*(edited.annotations[1].points[0] - dragged_to)) < 1.5
