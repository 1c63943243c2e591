"""The corrections inbox and folder (``node.corrections``) on a real spool, without services: an SR waits for its
study's result, is folded in once, is rejected with a reason when it moves nothing, and own/unrelated SRs are not
kept. The C-STORE and QIDO-RS paths with a running node and Orthanc: tests/integration/test_corrections_node.py."""

from __future__ import annotations

import dataclasses
import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from node.corrections import CorrectionsStore, Kind, summary
from node.patients import StudyIdentity, save_results
from node.settings import NodeSettings
from node.spool import Spool, header_from_dataset
from pipelines.corrections import CORNER_NAMES
from pipelines.dicom_out.example import phantom_example

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ohif_saved_sr.dcm"
SIDECAR = json.loads(FIXTURE.with_suffix(".json").read_text())


@pytest.fixture
def setup(tmp_path: Path):  # noqa: ANN201
    study, result = phantom_example(SIDECAR["seed"], tmp_path / "study", shape=tuple(SIDECAR["shape"]))
    spool = Spool(tmp_path / "spool")
    for inst in study.instances:
        spool.store(Path(inst.path).read_bytes(), header_from_dataset(pydicom.dcmread(inst.path, stop_before_pixels=True)))
    settings = NodeSettings(spool_dir=tmp_path / "spool", corrections_dir=tmp_path / "coco")
    return CorrectionsStore(settings, spool), spool, study, result


def _finish(spool: Spool, study_uid: str, result) -> None:  # noqa: ANN001
    gen = spool.study(study_uid).generation
    rows = save_results(spool, study_uid, gen, [result], StudyIdentity("key-1", None))
    assert spool.finish_analysis(study_uid, gen, [], [], results=rows)


def _sr(**changes) -> bytes:  # noqa: ANN003
    ds = pydicom.dcmread(FIXTURE)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for k, v in changes.items():
        setattr(ds, k, v)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_correction_waits_for_the_result_then_becomes_an_example(setup) -> None:  # noqa: ANN001
    store, spool, study, result = setup
    data = _sr()
    uid = pydicom.dcmread(BytesIO(data)).SOPInstanceUID
    assert store.receive(data, uid) is Kind.CORRECTION
    assert store.path("inbox", uid).exists()
    assert [o.state for o in store.process_pending()] == ["pending"]  # not analysed yet: kept in the inbox
    _finish(spool, study.study_uid, result)
    (outcome,) = store.process_pending()
    assert (outcome.state, outcome.moved) == ("done", 4)
    assert store.path("done", uid).exists() and not store.path("inbox", uid).exists()
    report = json.loads(store.path("done", uid, ".json").read_text())
    assert report["corrected_model_version"] == f"{result.algorithm.name} {result.algorithm.version}"
    assert any("not a correction" in n for n in report["notes"])
    doc = json.loads((store.coco_dir / "annotations.json").read_text())
    (image,), (ann,) = doc["images"], doc["annotations"]
    assert image["patient_key"] == "key-1" and ann["source_sr_uid"] == uid
    png = np.asarray(Image.open(store.coco_dir / image["file_name"]))
    assert png.dtype == np.uint16 and png.shape == (image["height"], image["width"]) and png.max() > 60000
    assert set(ann["corrected_keypoints"]) == {"C4 antero-inferior", "C7 antero-inferior", "C7 postero-inferior",
                                               "C5 postero-superior"}
    assert len(ann["keypoints"]) == 3 * len(CORNER_NAMES)
    assert summary(store.settings, spool) == {"inbox": 0, "done": 1, "rejected": 0, "examples": 1,
                                              "folder": str(store.coco_dir)}  # what ``cspine-node status`` shows
    # the same SR once more (a resend): kept as received, the example does not change
    store.accept(data, uid)
    before = (store.coco_dir / "annotations.json").read_text()
    assert [o.state for o in store.process_pending()] == ["done"]
    assert (store.coco_dir / "annotations.json").read_text() == before


def test_rejected_own_and_unrelated(setup) -> None:  # noqa: ANN001
    store, spool, study, result = setup
    _finish(spool, study.study_uid, result)
    # an SR that moves nothing: only the soft-tissue probe left
    ds = pydicom.dcmread(FIXTURE)
    imaging = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "126010")
    imaging.ContentSequence = pydicom.Sequence([imaging.ContentSequence[2]])
    ds.SOPInstanceUID = generate_uid()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert store.receive(buf.getvalue(), ds.SOPInstanceUID) is Kind.CORRECTION
    (outcome,) = store.process_pending()
    assert outcome.state == "rejected" and "none of the node's keypoints" in outcome.reason
    assert store.path("rejected", ds.SOPInstanceUID).exists()
    assert not (store.coco_dir / "annotations.json").exists()
    # the node's own SR and an SR about a study the node never had: acknowledged, not kept
    own = _sr(Manufacturer="cspine-node (open source)")
    assert store.receive(own, pydicom.dcmread(BytesIO(own)).SOPInstanceUID) is Kind.OWN
    other = pydicom.dcmread(BytesIO(_sr(StudyInstanceUID=generate_uid())))
    elsewhere = generate_uid()

    def retarget(_ds: pydicom.Dataset, elem: pydicom.DataElement) -> None:
        if elem.keyword == "ReferencedSOPInstanceUID":
            elem.value = elsewhere

    other.walk(retarget)
    buf = BytesIO()
    other.save_as(buf, enforce_file_format=True)
    assert store.receive(buf.getvalue(), other.SOPInstanceUID) is Kind.UNRELATED
    assert store.pending() == []


def test_a_correction_whose_study_never_gets_a_result_is_rejected_after_the_wait(setup) -> None:  # noqa: ANN001
    store, spool, study, result = setup
    data = _sr()
    uid = pydicom.dcmread(BytesIO(data)).SOPInstanceUID
    store.receive(data, uid)
    (outcome,) = store.process_pending(now=store.path("inbox", uid).stat().st_mtime + store.settings.corrections_pending_max_s + 1)
    assert outcome.state == "rejected" and store.path("rejected", uid).exists()
    # a study analysed without an X-ray result (as if MRI): rejected at once, no wait
    _finish(spool, study.study_uid, dataclasses.replace(result, pipeline="mri"))
    data = _sr()
    uid = pydicom.dcmread(BytesIO(data)).SOPInstanceUID
    store.receive(data, uid)
    (outcome,) = store.process_pending()
    assert outcome.state == "rejected" and "no X-ray result" in outcome.reason


def test_a_correction_that_keeps_failing_is_rejected_with_the_error_not_lost(setup) -> None:  # noqa: ANN001
    store, spool, study, result = setup
    _finish(spool, study.study_uid, result)
    neutral = next(i for i in result.images if i.view.value == "neutral")
    spool.instance_path(study.study_uid, neutral.image_uid).unlink()  # the radiograph is gone from the spool
    data = _sr()
    uid = pydicom.dcmread(BytesIO(data)).SOPInstanceUID
    store.receive(data, uid)
    assert store.process_pending() == [] and store.process_pending() == []  # retried, still in the inbox
    assert store.path("inbox", uid).exists()
    (outcome,) = store.process_pending()
    assert outcome.state == "rejected" and "FileNotFoundError" in outcome.reason
    assert store.path("rejected", uid).exists() and "FileNotFoundError" in store.path("rejected", uid, ".json").read_text()


class _Archive:
    """A stand-in DICOMweb client (the real QIDO-RS/WADO-RS path runs against Orthanc in
    tests/integration/test_corrections_node.py): ``search_for_instances`` lists ``held``, ``retrieve_instance``
    returns it and counts the fetch."""

    def __init__(self, held: list[pydicom.Dataset], fail: bool = False):
        self.held, self.fail, self.fetched = {str(d.SOPInstanceUID): d for d in held}, fail, []

    def search_for_instances(self, study_instance_uid: str, search_filters: dict) -> list[dict]:
        if self.fail:
            raise ConnectionError("archive down")
        assert search_filters == {"Modality": "SR"}
        return [{"00080018": {"Value": [u]}, "0020000E": {"Value": [str(d.SeriesInstanceUID)]}}
                for u, d in self.held.items() if d.StudyInstanceUID == study_instance_uid]

    def retrieve_instance(self, study: str, series: str, sop: str) -> pydicom.Dataset:
        self.fetched.append(sop)
        return self.held[sop]


def test_poll_fetches_new_corrections_once_and_remembers_the_rest(setup) -> None:  # noqa: ANN001
    from node.corrections_poll import poll_once
    from node.settings import Destination

    store, spool, study, result = setup
    _finish(spool, study.study_uid, result)
    store.settings = store.settings.model_copy(update={"destinations": [
        Destination(name="archive", kind="stow", url="http://archive.invalid/dicom-web")]})
    correction = pydicom.dcmread(BytesIO(_sr()))
    own = pydicom.dcmread(BytesIO(_sr(Manufacturer="cspine-node (open source)")))
    archive = _Archive([correction, own])
    counts = poll_once(store, client_factory=lambda dest: archive)
    assert counts == {"listed": 2, "fetched": 1, "other": 1, "errors": 0}
    assert store.path("inbox", correction.SOPInstanceUID).exists()
    assert (store.sr_root / "seen.txt").read_text().split() == [str(own.SOPInstanceUID)]
    archive.fetched.clear()
    assert poll_once(store, client_factory=lambda dest: archive) == {"listed": 2, "fetched": 0, "other": 0, "errors": 0}
    assert archive.fetched == []  # nothing fetched twice
    assert poll_once(store, client_factory=lambda dest: _Archive([], fail=True))["errors"] == 1
