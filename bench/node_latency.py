"""Benchmark: seconds from association release to results stored in Orthanc, for a 3-view study.

Starts a real Orthanc (loopback, own storage) and ``cspine-node serve`` (embedded broker and worker by
default; ``--redis`` uses a private redis-server and a separate ``cspine-node worker``), uploads a phantom
neutral/flexion/extension study to Orthanc, asks Orthanc to C-STORE it to the node (the REST call returns
after the association is released: t0), and polls Orthanc's QIDO-RS until the node's SR is there (t1).
Prints t1 - t0 per run with the node's own breakdown (stable age, queue + analysis, delivery). The first
run includes loading the model in the worker; later runs are warm.

    .venv/bin/python bench/node_latency.py [--runs 2] [--stable-age 2] [--redis]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.spool import Spool  # noqa: E402
from tests.node.nodetest_data import phantom_study_files  # noqa: E402
from tests.node.nodetest_proc import serve, worker  # noqa: E402
from tests.services import free_port, start_orthanc, start_redis  # noqa: E402


def sr_uids(url: str, study_uid: str) -> set[str]:
    rows = DICOMwebClient(url).search_for_instances(study_instance_uid=study_uid, fields=["Modality"])
    return {str(pydicom.Dataset.from_json(r).SOPInstanceUID) for r in rows
            if pydicom.Dataset.from_json(r).get("Modality") == "SR"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--stable-age", type=float, default=2.0)
    ap.add_argument("--redis", action="store_true", help="Redis broker + separate worker process")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cspine-latency-"))
    node_port = free_port()
    orthanc = start_orthanc(work / "orthanc", modalities={"CSPINE": ("CSPINE", "127.0.0.1", node_port)})
    redis = start_redis(work / "redis") if args.redis else None
    env = {"CSPINE_STABLE_AGE_S": str(args.stable_age), "CSPINE_LOG_LEVEL": "WARNING",
           "CSPINE_DESTINATIONS": json.dumps([{"name": "orthanc", "kind": "dimse", "ae_title": "ORTHANC",
                                               "host": "127.0.0.1", "port": orthanc.dicom_port}])}
    if redis:
        env["CSPINE_BROKER_URL"] = redis.url
    node = serve(work / "spool", work / "serve.log", port=node_port, **env)
    procs = [node]
    if redis:
        procs.append(worker(work / "spool", work / "worker.log", **env))
    spool = Spool(work / "spool")
    try:
        print(f"broker: {'redis' if redis else 'embedded'}; stable age {args.stable_age} s; Orthanc -> node -> Orthanc")
        for run in range(args.runs):
            study_uid, files = phantom_study_files(work / f"phantom{run}", seed=100 + run, shape=None)
            for f in files:
                orthanc.upload(f)
            study_id = next(x["ID"] for x in requests.post(orthanc.http_url + "/tools/lookup", data=study_uid,
                                                           timeout=30).json() if x["Type"] == "Study")
            r = requests.post(orthanc.http_url + "/modalities/CSPINE/store", json={"Resources": [study_id]},
                              timeout=300)
            r.raise_for_status()
            t0 = time.time()  # Orthanc answers after its C-STORE association is released
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if sr_uids(orthanc.dicomweb_url, study_uid):
                    break
                row = spool.study(study_uid)
                if row is not None and row.state in {"failed", "skipped"}:
                    sys.exit(f"study {row.state}: {row.reason}")
                time.sleep(0.2)
            else:
                sys.exit(f"no results within {args.timeout} s")
            t1 = time.time()
            row = spool.study(study_uid)
            settle = time.monotonic() + 30  # the SR can be visible before the node records its last send
            while time.monotonic() < settle and any(o.state == "pending" for o in spool.outbox(study_uid)):
                time.sleep(0.1)
            sent = [o.sent_at for o in spool.outbox(study_uid) if o.sent_at] or [float("nan")]
            shape = pydicom.dcmread(files[0], stop_before_pixels=True)
            print(f"run {run + 1}: {len(files)} views {shape.Rows}x{shape.Columns}: release -> results in Orthanc "
                  f"{t1 - t0:6.1f} s  (ready/dispatch at +{row.ready_at - t0:.1f} s, analysis "
                  f"{row.analyzed_at - row.analysis_started_at:.1f} s, queue wait "
                  f"{row.analysis_started_at - row.ready_at:.1f} s, last object sent at +{max(sent) - t0:.1f} s)")
    finally:
        for p in procs:
            p.stop()
        orthanc.stop()
        if redis:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
