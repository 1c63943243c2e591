"""An MR series C-STOREd to ``cspine-node serve`` (embedded broker, no Redis) yields an SR and a SEG that
arrive in a real Orthanc by C-STORE and pass dciodvfy (issue 6, "end to end").

The X-ray twin of this test (tests/integration/test_node_e2e.py) runs the Redis broker with a separate worker;
this one runs the embedded default, so both broker modes are covered end to end.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from node.scu import store_files
from node.spool import Spool
from pipelines.phantoms.dicom import write_series
from pipelines.phantoms.mri import generate_series
from tests.node.nodetest_proc import serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def test_mr_series_through_the_node_to_orthanc(tmp_path: Path, orthanc_factory, require) -> None:
    require("dciodvfy")
    pacs = orthanc_factory(aet="ORTHANC")
    files = write_series(generate_series(4_000_011), tmp_path / "in", patient_id="PHANTOM-MR-11")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    spool_dir = tmp_path / "spool"
    node = serve(
        spool_dir, tmp_path / "serve.log",
        CSPINE_STABLE_AGE_S="2",
        CSPINE_DELIVER_BACKOFF_MAX_S="5",
        CSPINE_METRICS_PORT="0",
        CSPINE_DESTINATIONS=json.dumps([
            {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs.dicom_port},
        ]),
    )
    try:
        assert node.serving["broker"] != "redis"
        statuses = store_files(files, "127.0.0.1", node.port)
        assert statuses == [0x0000] * len(files)

        spool = Spool(spool_dir)
        row = wait_for(lambda: (s := spool.study(study_uid)) and s.state in {"done", "failed", "skipped"} and s,
                       600, "the analysis")
        assert row.state == "done", f"{row.state}: {row.reason}\nlog:\n{node.log()}"
        sent = wait_for(lambda: (rows := spool.outbox(study_uid)) and all(x.state == "sent" for x in rows) and rows,
                        300, "delivery to Orthanc")
        results = {x.sop_instance_uid for x in sent}
        assert results <= pacs.sop_instance_uids()

        by_class: dict[str, list[Path]] = {}
        for oid in pacs.instances():
            raw = pacs.get(f"/instances/{oid}/file").content
            p = tmp_path / f"{oid}.dcm"
            p.write_bytes(raw)
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            if str(ds.SOPInstanceUID) in results:
                by_class.setdefault(str(ds.SOPClassUID), []).append(p)
        assert len(by_class.get(SR_CLASS, [])) == 1 and len(by_class.get(SEG_CLASS, [])) == 1
        for p in by_class[SR_CLASS] + by_class[SEG_CLASS]:
            out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True)
            errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
            assert errors == [], p.name
        seg = pydicom.dcmread(by_class[SEG_CLASS][0], stop_before_pixels=True)
        assert "spinal canal" in {s.SegmentLabel for s in seg.SegmentSequence}
        assert "PHANTOM-MR-11" not in node.log()  # no patient ID in the node's logs
    finally:
        node.stop()
