"""A sender that sends one study over two associations, back to back, with the default dispatch at the release
(``node.grace``): the real ``cspine-node serve`` (embedded broker and worker, real pipelines) dispatches the study
when the first association is released; the second association comes while that part is being analysed, within the
release grace, and that analysis is set aside; the PACS (a real Orthanc) gets the results of the whole study only:
one SR, nothing of the first part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from node.scu import store_files
from node.spool import Spool
from tests.node.nodetest_data import phantom_study_files
from tests.node.nodetest_proc import ROOT, serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_second_association_within_the_grace_gives_one_set_of_results(tmp_path: Path, orthanc_factory) -> None:
    pacs = orthanc_factory(aet="ORTHANC")
    study_uid, files = phantom_study_files(tmp_path / "phantom", seed=23)
    env = {
        "CSPINE_RELEASE_GRACE_S": "2.0",  # room for the second association even on a loaded machine
        "CSPINE_DESTINATIONS": json.dumps([
            {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs.dicom_port}]),
    }
    spool_dir = tmp_path / "spool"
    node = serve(spool_dir, tmp_path / "serve.log", **env)
    try:
        health = [sys.executable, "-m", "node.cli", "health", "--role", "worker"]
        health_env = {**{k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")},
                      "CSPINE_SPOOL_DIR": str(spool_dir)}
        wait_for(lambda: subprocess.run(health, cwd=ROOT, capture_output=True, env=health_env).returncode == 0, 300,
                 "the embedded worker ready")
        spool = Spool(spool_dir)
        assert store_files(files[:1], "127.0.0.1", node.port) == [0]  # the first association, released
        wait_for(lambda: (s := spool.study(study_uid)) and s.state == "analyzing", 60,
                 "the analysis of the first association's part", interval=0.02)
        assert store_files(files[1:], "127.0.0.1", node.port) == [0, 0]  # the second, while it runs
        row = wait_for(lambda: (s := spool.study(study_uid)) and s.analyzed_generation >= 3 and s, 600,
                       "the analysis of the whole study")
        assert row.state == "done", f"{row.state}: {row.reason}\n{node.log()}"
        sent = wait_for(lambda: (r := spool.outbox(study_uid)) and all(x.state == "sent" for x in r) and r, 300,
                        "delivery to the PACS")
        assert {x.generation for x in sent} == {3}, "nothing of the analysis of the first association was queued"
        modalities = [str(pydicom.Dataset.from_json(r).get("Modality", "")) for r in
                      DICOMwebClient(pacs.dicomweb_url).search_for_series(study_instance_uid=study_uid,
                                                                          fields=["Modality"])]
        assert modalities.count("SR") == 1, modalities
        assert '"event": "analysis set aside"' in (tmp_path / "serve.log").read_text(), node.log()
    finally:
        node.stop()
