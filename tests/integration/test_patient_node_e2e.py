"""Issue 6, patient level, end to end: the paired phantom X-ray and MR studies of one virtual patient are
C-STOREd to ``cspine-node serve`` (embedded broker, real pipelines); a patient-level SR + PDF arrives in a
real Orthanc with the study that completed the pair, passes dciodvfy and lists the corroborations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from node.patients import load_result
from node.scu import store_files
from node.spool import Spool
from pipelines.dicom_out.patient import ALGORITHM, PREDICTION_CODES
from pipelines.patient.report import patient_report
from pipelines.phantoms.paired import paired_phantom_studies
from tests.node.nodetest_proc import serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
SEED = 9


def test_patient_report_through_the_node_to_orthanc(tmp_path: Path, orthanc_factory, require) -> None:  # noqa: ANN001
    require("dciodvfy")
    pacs = orthanc_factory(aet="ORTHANC")
    xray_files, mri_files = paired_phantom_studies(SEED, tmp_path / "in")
    pid = str(pydicom.dcmread(mri_files[0], stop_before_pixels=True).PatientID)
    x_uid, m_uid = (str(pydicom.dcmread(f[0], stop_before_pixels=True).StudyInstanceUID) for f in (xray_files, mri_files))
    spool_dir = tmp_path / "spool"
    node = serve(
        spool_dir, tmp_path / "serve.log",
        CSPINE_STABLE_AGE_S="1",
        CSPINE_DELIVER_BACKOFF_MAX_S="5",
        CSPINE_PATIENT_WINDOW_DAYS="30",
        CSPINE_DESTINATIONS=json.dumps([
            {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs.dicom_port},
        ]),
    )
    try:
        assert store_files([*xray_files, *mri_files], "127.0.0.1", node.port) == [0] * (len(xray_files) + len(mri_files))
        spool = Spool(spool_dir)

        def finished():  # noqa: ANN202
            rows = [spool.study(u) for u in (x_uid, m_uid)]
            return all(r is not None and r.state in {"done", "failed", "skipped"} for r in rows) and rows

        rows = wait_for(finished, 300, "both analyses")
        assert [r.state for r in rows] == ["done", "done"], f"{[r.reason for r in rows]}\nlog:\n{node.log()}"
        later = max(rows, key=lambda r: r.analyzed_at).study_uid
        sent = wait_for(lambda: (o := spool.outbox(x_uid) + spool.outbox(m_uid)) and all(r.state == "sent" for r in o)
                        and o, 120, "delivery to Orthanc")
        assert {r.sop_instance_uid for r in sent} <= pacs.sop_instance_uids()

        patient_objects: dict[str, Path] = {}
        for oid in pacs.instances():
            p = tmp_path / f"{oid}.dcm"
            p.write_bytes(pacs.get(f"/instances/{oid}/file").content)
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            if ds.get("ManufacturerModelName") == ALGORITHM.name:
                assert str(ds.SOPClassUID) not in patient_objects, "one patient report expected"
                patient_objects[str(ds.SOPClassUID)] = p
        assert set(patient_objects) == {SR_CLASS, PDF_CLASS}
        sr = pydicom.dcmread(patient_objects[SR_CLASS])
        earlier = x_uid if later == m_uid else m_uid
        assert sr.StudyInstanceUID == later  # the study whose analysis completed the pair
        assert [s.StudyInstanceUID for s in sr.PertinentOtherEvidenceSequence] == [earlier]
        for p in patient_objects.values():
            out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True)
            assert [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")] == [], p.name

        # the SR lists what patient_report makes of the two persisted pipeline results
        (xr,), (mr,) = spool.results(x_uid), spool.results(m_uid)
        expected = patient_report(load_result(xr), load_result(mr))
        assert expected.corroborations, "seed 9 shows disc herniation with canal stenosis on MRI"
        texts = [str(c.TextValue) for item in sr.ContentSequence for c in item.get("ContentSequence", [])
                 if c.ValueType == "TEXT"]
        listed = [t for t in texts if t.startswith("Corroboration - ")]
        assert len(listed) == len(expected.corroborations)
        for c in expected.corroborations:
            assert any(f"{c.name} {c.site}: present" in t for t in listed), c.site
        assert any(f"X-ray study {x_uid}" in t for t in texts) and any(f"MRI study {m_uid}" in t for t in texts)
        # the neck-pain recovery model ran on the real pipelines' keypoints: a probability in the SR
        (neck,) = [t for t in texts if t.startswith("Postoperative neck pain recovery C2-C7: ")]
        assert 0 < float(neck.split("(p=")[1].split(")")[0]) < 1, neck
        nums = [float(n.MeasuredValueSequence[0].NumericValue) for item in sr.ContentSequence
                for g in item.get("ContentSequence", []) for n in g.get("ContentSequence", [])
                if n.ValueType == "NUM" and any(e.ValueType == "CODE" and e.ConceptCodeSequence[0].CodeValue
                                                == PREDICTION_CODES["neck_pain_recovery"].value for e in g.ContentSequence)]
        assert len(nums) == 1 and 0 < nums[0] < 1
        assert any("neck-pain" in str(e.ManufacturerModelName) for e in sr.ContributingEquipmentSequence)
        log = node.log_path.read_text(errors="replace")
        assert "patient report" in log and pid not in log  # no patient ID in the node's logs
    finally:
        node.stop()
