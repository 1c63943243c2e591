"""Corrections in, end to end with real services: ``cspine-node serve`` (embedded worker, the shipped models) analyses a
phantom study and delivers its results to a real Orthanc by STOW-RS; an SR built the way OHIF 3.13.2 writes it (the
recorded ``tests/fixtures/ohif_saved_sr.dcm`` with its points moved off the node's keypoints) reaches the node

1. by C-STORE: acknowledged 0x0000, never analysed as a study, and a COCO example with the moved corners appears in
   the corrections folder, with its 16-bit PNG, provenance and no patient name or ID;
2. by polling: a second SR stored in Orthanc is found with QIDO-RS, fetched and applied on top of the first.

Garbage SR content is refused (0xC210); the node's own result SR sent back to it is acknowledged and not kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from node.patients import load_result
from node.spool import Spool
from pipelines.corrections import CORNER_NAMES
from pipelines.vocabulary import View
from tests.node.nodetest_proc import serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ohif_saved_sr.dcm"
SIDECAR = json.loads(FIXTURE.with_suffix(".json").read_text())


def _c_store(port: int, datasets: list[pydicom.Dataset]) -> list[int]:
    ae = AE(ae_title="OHIFPACS")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CSPINE")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


ARROW = ("C5 postero-superior", -7, 5)
"""Where the recorded arrow (labelled "C5 PS") points: that corner + (dx, dy) px."""


def _corrected_sr(node_kp: dict[str, tuple[float, float]], probe: tuple[str, float, float],
                  line: tuple[str, str, float, float]) -> pydicom.Dataset:
    """The recorded OHIF SR as OHIF would save it again with other points: a new SR UID, the Probe on ``probe``'s
    corner + (dx, dy) px, the Length from ``line``'s two corners + (dx, dy), the arrow's tip on ``ARROW`` (its tail
    as far from it as recorded); its unrelated Probe kept."""
    ds = pydicom.dcmread(FIXTURE)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    imaging = next(it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "126010")
    length, probe_group, arrow = imaging.ContentSequence[0], imaging.ContentSequence[1], imaging.ContentSequence[3]

    def scoord(g: pydicom.Dataset) -> pydicom.Dataset:
        return next(it for it in g.ContentSequence if it.ValueType == "NUM").ContentSequence[0]

    name, dx, dy = probe
    scoord(probe_group).GraphicData = [node_kp[name][0] + 0.5 + dx, node_kp[name][1] + 0.5 + dy]
    name, dx, dy = ARROW
    tip, tail = np.asarray(scoord(arrow).GraphicData, float).reshape(2, 2)
    new_tip = np.array([node_kp[name][0] + 0.5 + dx, node_kp[name][1] + 0.5 + dy])
    scoord(arrow).GraphicData = [*new_tip, *(new_tip + tail - tip)]
    a, b, dx, dy = line
    scoord(length).GraphicData = [node_kp[a][0] + 0.5 + dx, node_kp[a][1] + 0.5 + dy,
                                  node_kp[b][0] + 0.5 + dx, node_kp[b][1] + 0.5 + dy]
    return ds


def test_ohif_correction_becomes_a_training_example(tmp_path: Path, orthanc_factory) -> None:
    from models.xray_keypoints.data import coco_samples
    from tests.node.nodetest_data import phantom_study_files

    archive = orthanc_factory(aet="ARCHIVE")
    study_uid, files = phantom_study_files(tmp_path / "phantom", seed=SIDECAR["seed"], shape=tuple(SIDECAR["shape"]))
    assert study_uid == SIDECAR["study_uid"]  # the recorded SR's study: seeded UIDs
    spool_dir, coco_dir = tmp_path / "spool", tmp_path / "corrections"
    node = serve(spool_dir, tmp_path / "serve.log", CSPINE_STABLE_AGE_S="1",
                 CSPINE_CORRECTIONS_DIR=str(coco_dir), CSPINE_CORRECTIONS_POLL_S="2",
                 CSPINE_DESTINATIONS=json.dumps([{"name": "archive", "kind": "stow", "url": archive.dicomweb_url}]))
    try:
        assert _c_store(node.port, [pydicom.dcmread(f) for f in files]) == [0, 0, 0]
        spool = Spool(spool_dir)
        row = wait_for(lambda: (s := spool.study(study_uid)) and s.state in {"done", "failed", "skipped"} and s,
                       600, "the analysis")
        assert row.state == "done", f"{row.state}: {row.reason}\n{node.log()[-3000:]}"
        generation, n_instances = row.generation, row.n_instances
        result = load_result(next(r for r in spool.results(study_uid) if r.pipeline == "xray"))
        neutral = next(i for i in result.images if i.view == View.NEUTRAL)
        assert neutral.image_uid == SIDECAR["referenced_image"]
        node_kp = {k.name: (k.x, k.y) for k in neutral.keypoints}
        own_sr = next(o for o in spool.outbox(study_uid) if o.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88"))

        # 1. by C-STORE, with garbage content and the node's own SR beside it
        first = _corrected_sr(node_kp, ("C4 antero-inferior", 9, 6), ("C7 antero-inferior", "C7 postero-inferior", -4, 3))
        garbage = pydicom.dcmread(FIXTURE)
        garbage.SOPInstanceUID = garbage.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        del garbage.ContentSequence
        statuses = _c_store(node.port, [first, garbage, pydicom.dcmread(own_sr.path)])
        assert statuses == [0x0000, 0xC210, 0x0000]
        ann_path = coco_dir / "annotations.json"
        wait_for(lambda: ann_path.exists(), 60, "the corrections folder")
        doc = json.loads(ann_path.read_text())
        assert [c["keypoints"] for c in doc["categories"]] == [list(CORNER_NAMES)]
        (image,), (ann,) = doc["images"], doc["annotations"]
        assert image["image_uid"] == neutral.image_uid and image["view"] == "neutral" and image["patient_key"]
        flat = np.asarray(ann["keypoints"]).reshape(24, 3)
        moved = {"C4 antero-inferior": (9, 6), "C7 antero-inferior": (-4, 3), "C7 postero-inferior": (-4, 3),
                 ARROW[0]: ARROW[1:]}
        for j, name in enumerate(CORNER_NAMES):
            dx, dy = moved.get(name, (0, 0))
            assert flat[j, :2] == pytest.approx((node_kp[name][0] + dx, node_kp[name][1] + dy), abs=2e-3), name
        assert (flat[:, 2] == 2).all()
        assert ann["source_sr_uid"] == first.SOPInstanceUID
        assert ann["corrected_model_version"] == f"{result.algorithm.name} {result.algorithm.version}"
        assert set(ann["corrected_keypoints"]) == set(moved)
        text = ann_path.read_text()
        assert "PHANTOM-000007" not in text and "Phantom^" not in text  # no patient ID or name
        (sample,) = coco_samples(ann_path)
        assert sample.image.shape == (neutral.rows, neutral.columns) and sample.visible[:24].all()
        assert sample.keypoints[CORNER_NAMES.index("C4 antero-inferior")] == pytest.approx(
            (node_kp["C4 antero-inferior"][0] + 9, node_kp["C4 antero-inferior"][1] + 6), abs=2e-3)
        # never analysed as a study, never lost
        again = spool.study(study_uid)
        assert (again.generation, again.n_instances) == (generation, n_instances)
        assert first.SOPInstanceUID not in spool.instance_uids()
        assert (spool_dir / "corrections_sr" / "done" / f"{first.SOPInstanceUID}.dcm").exists()
        assert not (spool_dir / "corrections_sr" / "done" / f"{own_sr.sop_instance_uid}.dcm").exists()

        # 2. by polling Orthanc (QIDO-RS every 2 s): a second SR on top of the first
        second = _corrected_sr(node_kp, ("C3 postero-superior", -6, 4), ("C2 antero-inferior", "C2 postero-inferior", 3, -3))
        archive.upload(_write(tmp_path, second))
        t0 = time.monotonic()
        wait_for(lambda: second.SOPInstanceUID in ann_path.read_text(), 60, "the polled correction")
        print(f"polled correction folded in after {time.monotonic() - t0:.1f} s")
        ann = json.loads(ann_path.read_text())["annotations"][0]
        assert ann["source_sr_uids"] == [first.SOPInstanceUID, second.SOPInstanceUID]
        flat = np.asarray(ann["keypoints"]).reshape(24, 3)
        c3 = node_kp["C3 postero-superior"]
        assert flat[CORNER_NAMES.index("C3 postero-superior"), :2] == pytest.approx((c3[0] - 6, c3[1] + 4), abs=2e-3)
        assert flat[CORNER_NAMES.index("C4 antero-inferior"), :2] == pytest.approx(
            (node_kp["C4 antero-inferior"][0] + 9, node_kp["C4 antero-inferior"][1] + 6), abs=2e-3)  # kept
        log_text = (tmp_path / "serve.log").read_text(errors="replace")
        assert "PHANTOM-000007" not in log_text and "Phantom^" not in log_text and "SR received" in log_text
    finally:
        node.stop()


def _write(tmp_path: Path, ds: pydicom.Dataset) -> Path:
    p = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p
