"""End to end with real services: Orthanc C-STOREs a phantom study to ``cspine-node serve`` (Redis broker),
a real ``cspine-node worker`` analyses it with the real pipelines, and the results come back to Orthanc by
C-STORE and to a DICOMweb archive (a second Orthanc) by STOW-RS, both checked by QIDO-RS."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from node.spool import Spool
from tests.node.nodetest_data import phantom_study_files
from tests.node.nodetest_proc import serve, wait_for, worker
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _qido(url: str, study_uid: str) -> dict[str, str]:
    """SOPInstanceUID -> Modality of the instances of a study, by QIDO-RS."""
    out = {}
    for r in DICOMwebClient(url).search_for_instances(study_instance_uid=study_uid, fields=["Modality"]):
        ds = pydicom.Dataset.from_json(r)
        out[str(ds.SOPInstanceUID)] = str(ds.get("Modality", ""))
    return out


def test_orthanc_to_node_to_orthanc(tmp_path: Path, orthanc_factory, redis_server) -> None:
    node_port, metrics_port = free_port(), free_port()
    pacs = orthanc_factory(aet="ORTHANC", modalities={"CSPINE": ("CSPINE", "127.0.0.1", node_port)})
    archive = orthanc_factory(aet="ARCHIVE")
    study_uid, files = phantom_study_files(tmp_path / "phantom", seed=11)
    for f in files:
        pacs.upload(f)
    sources = set(_qido(pacs.dicomweb_url, study_uid))
    assert len(sources) == 3

    env = {
        "CSPINE_BROKER_URL": redis_server.url,
        "CSPINE_ALLOWED_CALLING_AETS": json.dumps(["ORTHANC"]),
        "CSPINE_STABLE_AGE_S": "2",
        "CSPINE_DELIVER_BACKOFF_MAX_S": "5",
        "CSPINE_DESTINATIONS": json.dumps([
            {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs.dicom_port},
            {"name": "archive", "kind": "stow", "url": archive.dicomweb_url},
        ]),
    }
    spool_dir = tmp_path / "spool"
    node = serve(spool_dir, tmp_path / "serve.log", port=node_port, CSPINE_METRICS_PORT=str(metrics_port), **env)
    work = worker(spool_dir, tmp_path / "worker.log", **env)
    try:
        assert node.serving["broker"] == "redis"
        lookup = requests.post(pacs.http_url + "/tools/lookup", data=study_uid, timeout=30).json()
        study_id = next(x["ID"] for x in lookup if x["Type"] == "Study")
        r = requests.post(pacs.http_url + "/modalities/CSPINE/store", json={"Resources": [study_id]}, timeout=120)
        assert r.ok, r.text

        spool = Spool(spool_dir)
        assert wait_for(lambda: spool.instance_uids(study_uid) == sources, 120, "the study in the spool")
        row = wait_for(lambda: (s := spool.study(study_uid)) and s.state in {"done", "failed", "skipped"} and s,
                       900, "the analysis")
        assert row.state == "done", f"{row.state}: {row.reason}\nworker log:\n{work.log()}"
        sent = wait_for(lambda: (rows := spool.outbox(study_uid)) and all(x.state == "sent" for x in rows) and rows,
                        300, "delivery to both destinations")
        results = {x.sop_instance_uid for x in sent}
        assert results and {x.destination for x in sent} == {"pacs", "archive"}

        in_pacs = _qido(pacs.dicomweb_url, study_uid)
        in_archive = _qido(archive.dicomweb_url, study_uid)
        assert results <= set(in_pacs), "C-STORE results missing in Orthanc"
        assert results == set(in_archive), "STOW-RS results missing in the archive"
        assert "SR" in set(in_pacs.values()) and "SR" in set(in_archive.values())

        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'cspine_instances_received_total{outcome="new"} 3.0' in metrics  # a fresh process: exact
        assert "cspine_studies_analysed_total 1.0" in metrics
    finally:
        work.stop()
        node.stop()
