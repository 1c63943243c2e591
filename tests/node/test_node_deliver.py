"""Delivery against a real Orthanc: C-STORE and STOW-RS (checked by QIDO-RS), and a destination that is
down when results are ready and comes back later (the embedded node's real Celery worker retries)."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from node.deliver import DeliveryError, send_rows
from node.service import Node
from node.settings import Destination, NodeSettings
from node.spool import Spool, header_from_dataset, write_atomic
from node.status import collect
from tests.node.nodetest_data import make_image
from tests.services import free_port

pytestmark = pytest.mark.integration


def _results(spool: Spool, destinations: list[str], n: int = 2) -> tuple[str, list[str]]:
    """A study in the spool with ``n`` result objects queued in the outbox (hand-made images stand in for
    pipeline output: delivery does not look inside the objects)."""
    src = make_image()
    buf = BytesIO()
    src.save_as(buf, enforce_file_format=True)
    spool.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))))
    _, gen = spool.begin_analysis(src.StudyInstanceUID)
    objs = []
    for _ in range(n):
        ds = make_image(src.StudyInstanceUID, modality="OT", sop_class="1.2.840.10008.5.1.4.1.1.7")
        path = spool.outbox_path(src.StudyInstanceUID, gen, ds.SOPInstanceUID)
        b = BytesIO()
        ds.save_as(b, enforce_file_format=True)
        write_atomic(b.getvalue(), path, spool.tmp_dir)
        objs.append((ds.SOPInstanceUID, ds.SOPClassUID, path))
    assert spool.finish_analysis(src.StudyInstanceUID, gen, objs, destinations)
    return src.StudyInstanceUID, [o[0] for o in objs]


def _qido_uids(dicomweb_url: str, study_uid: str) -> set[str]:
    client = DICOMwebClient(dicomweb_url)
    return {str(pydicom.Dataset.from_json(r).SOPInstanceUID)
            for r in client.search_for_instances(study_instance_uid=study_uid)}


def test_cstore_and_stow_to_orthanc(tmp_path: Path, orthanc_factory) -> None:
    pacs = orthanc_factory(aet="PACS")
    archive = orthanc_factory(aet="ARCHIVE")
    spool = Spool(tmp_path / "spool")
    dimse = Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=pacs.dicom_port)
    stow = Destination(name="archive", kind="stow", url=archive.dicomweb_url)
    study, uids = _results(spool, ["pacs", "archive"])
    send_rows(dimse, spool.pending_outbox(study, "pacs"), spool)
    send_rows(stow, spool.pending_outbox(study, "archive"), spool)
    assert spool.pending_outbox(study) == []
    assert {r.state for r in spool.outbox(study)} == {"sent"}
    assert _qido_uids(pacs.dicomweb_url, study) == set(uids)
    assert _qido_uids(archive.dicomweb_url, study) == set(uids)


def test_unreachable_destination_raises_and_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    study, _ = _results(spool, ["pacs"])
    dead = Destination(name="pacs", kind="dimse", ae_title="PACS", host="127.0.0.1", port=free_port(), timeout_s=5)
    rows = spool.pending_outbox(study, "pacs")
    with pytest.raises(DeliveryError) as exc:
        send_rows(dead, rows, spool)
    assert sorted(exc.value.failed_ids) == sorted(r.id for r in rows)
    spool.mark_attempt_failed(exc.value.failed_ids, str(exc.value))
    assert "unreachable" in spool.destination_errors()["pacs"][0]


@pytest.mark.slow
def test_destination_down_then_back_gets_its_results(tmp_path: Path, orthanc_factory) -> None:
    http_port, dicom_port = free_port(), free_port()
    settings = NodeSettings(
        spool_dir=tmp_path / "spool", host="127.0.0.1", port=0, metrics_port=None, stable_age_s=60,
        deliver_backoff_max_s=2, deliver_sweep_s=5, log_json=True,
        destinations=[
            Destination(name="pacs", kind="dimse", ae_title="LATE", host="127.0.0.1", port=dicom_port, timeout_s=5),
            Destination(name="archive", kind="stow", url=f"http://127.0.0.1:{http_port}/dicom-web", timeout_s=5),
        ])
    node = Node(settings).start()
    try:
        study, uids = _results(node.spool, ["pacs", "archive"])
        node.dispatcher.deliver(study, "pacs")
        node.dispatcher.deliver(study, "archive")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dests = collect(settings)["destinations"]
            if all("last_error" in dests[d] for d in ("pacs", "archive")):
                break
            time.sleep(0.5)
        dests = collect(settings)["destinations"]
        assert "unreachable" in dests["pacs"]["last_error"]
        assert "STOW-RS" in dests["archive"]["last_error"]
        assert dests["pacs"]["pending"] == len(uids)

        orthanc = orthanc_factory(aet="LATE", http_port=http_port, dicom_port=dicom_port)  # the destination is back
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and node.spool.pending_outbox(study):
            time.sleep(0.5)
        assert node.spool.pending_outbox(study) == []
        assert {r.state for r in node.spool.outbox(study)} == {"sent"}
        assert _qido_uids(orthanc.dicomweb_url, study) == set(uids)
        assert not any("last_error" in d for d in collect(settings)["destinations"].values())
    finally:
        node.stop()
