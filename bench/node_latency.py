"""Benchmark: seconds from the sender's association release to the SR and SEG stored in the PACS, cold and warm.

Two Orthancs on loopback, as a site would run them: a PACS that C-STOREs each study to ``cspine-node serve`` (embedded
broker and worker, default settings) and gets the results back by C-STORE, and an archive that gets them by STOW-RS.
For each study: t0 = Orthanc's ``/modalities/CSPINE/store`` returns (its association is released), t1 = the node's
SR and a SEG both listed by the PACS (its ``/tools/find`` polled every 50 ms on one kept connection; ``--poll qido``
polls by QIDO-RS as this benchmark did before 2026-12-03, which saw results 0.2-0.5 s late). Each line also gives
when the last SEG (one per radiograph) was stored in the PACS by the node's outbox (``all SEGs``) and the node's own
stage times (``node.spool.stages``: receive, stability, queue, pipeline, encode, store, each delivery).

* ``cold``: the first study, sent as soon as ``serve`` listens (its worker still loading and warming its models);
* ``first after ready``: the node restarted, the first study sent once ``health --role worker`` says ready;
* ``warm``: the following studies (``--runs``), each a new phantom patient (neutral, flexion, extension DX at the
  phantom's realistic sizes, 1100-3000 px a side);
* ``--timeline``: per warm study, when each result object for the PACS was queued and sent (its outbox row's
  ``created_at`` / ``sent_at``, seconds after the release);
* ``--mri``: then an MRI series of the same virtual patient as the last X-ray study: release -> its SR, SEG and the
  patient-level SR (X-ray + MRI) in the PACS;
* ``--keep``: the node logs at INFO and the work folder (logs, spool, the Orthancs) is kept, to look into a slow study.

    .venv/bin/python bench/node_latency.py [--runs 3] [--mri] [--redis] [--timeline] [--keep]

Prints the machine (CPUs, load average): timings on a shared CPU are noisy, compare medians of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import SegmentationStorage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.spool import Spool  # noqa: E402
from node.spool.stages import stage_order  # noqa: E402
from tests.node.nodetest_proc import NodeProcess, serve, worker  # noqa: E402
from tests.services import Orthanc, free_port, start_orthanc, start_redis  # noqa: E402

POLL = {"how": "find"}
"""How ``send_and_wait`` asks the PACS (``--poll``)."""
_SESSION = requests.Session()


def series_modalities(pacs: Orthanc, study_uid: str) -> list[str]:
    """Modality of every series of the study in the PACS Orthanc. ``find`` (default): Orthanc's own
    ``/tools/find`` on one kept HTTP connection, ~6 ms here; ``qido``: a QIDO-RS search by a new
    ``DICOMwebClient`` each time, as this benchmark polled before: ~0.2 s a poll on an idle machine, so it saw the
    results 0.2-0.5 s after they were stored and took CPU from the node while it polled."""
    if POLL["how"] == "qido":
        rows = DICOMwebClient(pacs.dicomweb_url).search_for_series(study_instance_uid=study_uid, fields=["Modality"])
        return [str(pydicom.Dataset.from_json(r).get("Modality", "")) for r in rows]
    r = _SESSION.post(pacs.http_url + "/tools/find", timeout=30,
                      json={"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
    r.raise_for_status()
    return [str(s.get("MainDicomTags", {}).get("Modality", "")) for s in r.json()]


def send_and_wait(pacs: Orthanc, spool: Spool, files: list[Path], needed: dict[str, int],
                  timeout: float) -> tuple[float, str, int]:
    """Upload ``files`` to the PACS, have it C-STORE them to the node, and wait until the PACS lists the result
    series ``needed`` (modality -> count beyond the source series). Returns (seconds from the release, study UID,
    generation analysed)."""
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    for f in files:
        pacs.upload(f)
    before = series_modalities(pacs, study_uid)
    study_id = next(x["ID"] for x in requests.post(pacs.http_url + "/tools/lookup", data=study_uid, timeout=30).json()
                    if x["Type"] == "Study")
    requests.post(pacs.http_url + "/modalities/CSPINE/store", json={"Resources": [study_id]},
                  timeout=300).raise_for_status()
    t0 = time.time()  # Orthanc answers after its C-STORE association is released
    SENT.append(time.monotonic())
    RELEASED.append(t0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = series_modalities(pacs, study_uid)
        if all(have.count(m) - before.count(m) >= n for m, n in needed.items()):
            break
        row = spool.study(study_uid)
        if row is not None and row.state in {"failed", "skipped"}:
            sys.exit(f"study {row.state}: {row.reason}")
        time.sleep(0.05)
    else:
        sys.exit(f"no results within {timeout} s")
    t1 = time.time()
    settle = time.monotonic() + 60  # the analysis and every delivery recorded (the SR and SEG go out first)

    def settled() -> bool:
        r = spool.study(study_uid)
        return (r is not None and r.analyzed_generation >= r.generation
                and not any(o.state == "pending" for o in spool.outbox(study_uid)))

    while time.monotonic() < settle and not settled():
        time.sleep(0.1)
    row = spool.study(study_uid)
    return t1 - t0, study_uid, row.analyzed_generation if row else 0


SENT: list[float] = []
"""``time.monotonic()`` of each association release (``send_and_wait``)."""
RELEASED: list[float] = []
"""``time.time()`` of each association release (``send_and_wait``), for the outbox's timestamps."""


def pacs_rows(spool: Spool, study_uid: str, generation: int) -> list:
    """The outbox rows of one analysis for the PACS."""
    return [o for o in spool.outbox(study_uid) if o.destination == "pacs" and o.generation == generation]


def timeline_text(spool: Spool, study_uid: str, generation: int) -> str:
    """When each result object for the PACS was queued and sent, seconds after the association release."""
    rows = sorted(pacs_rows(spool, study_uid, generation),
                  key=lambda o: (o.sent_at or float("inf"), o.created_at))
    t0 = RELEASED[-1]
    return "  ".join(f"{pydicom.uid.UID(o.sop_class_uid).name.split()[0]} {o.created_at - t0:.2f}/"
                     f"{(o.sent_at - t0) if o.sent_at else float('nan'):.2f}" for o in rows)


def all_segs_text(spool: Spool, study_uid: str, generation: int) -> str:
    """Seconds after the release until the PACS had stored every SEG of the analysis's outlines (the outbox's
    ``sent_at``; BINARY SEGs, not the FRACTIONAL Grad-CAM maps, which go out with the report)."""
    sent = [o.sent_at for o in pacs_rows(spool, study_uid, generation) if o.sop_class_uid == SegmentationStorage
            and pydicom.dcmread(o.path, stop_before_pixels=True).get("SegmentationType") == "BINARY"]
    if not sent or None in sent:
        return "all SEGs -"
    return f"all SEGs {max(sent) - RELEASED[-1]:.2f} s"


def stages_text(spool: Spool, study_uid: str, generation: int) -> str:
    """The node's stage times of the study, then the number and size of its result objects."""
    st = spool.study_stages(study_uid, generation)
    rows = pacs_rows(spool, study_uid, generation)
    size = sum(Path(o.path).stat().st_size for o in rows if Path(o.path).exists())
    return ("  ".join(f"{k} {v:.2f}" for k, v in sorted(st.items(), key=lambda kv: stage_order(kv[0])))
            + f"  | {len(rows)} objects {size / 1e6:.2f} MB")


def wait_worker_ready(env: dict[str, str], timeout: float = 300) -> float:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        r = subprocess.run([sys.executable, "-m", "node.cli", "health", "--role", "worker"], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True)
        if r.returncode == 0:
            return time.monotonic() - t
        time.sleep(0.2)
    sys.exit("worker not ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="warm studies")
    ap.add_argument("--mri", action="store_true", help="then an MRI study of the last patient (patient report)")
    ap.add_argument("--redis", action="store_true", help="Redis broker + separate worker process")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work folder (the node's logs at INFO, its spool, the Orthancs' logs) and print it")
    ap.add_argument("--timeline", action="store_true",
                    help="also print, per warm study, when each object for the PACS was queued / sent (s after release)")
    ap.add_argument("--poll", choices=("find", "qido"), default="find",
                    help="how the PACS is asked for the results (series_modalities); qido: as before 2026-12-03")
    args = ap.parse_args()
    POLL["how"] = args.poll
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.paired import paired_phantom_studies
    from pipelines.phantoms.xray import generate_study

    work = Path(tempfile.mkdtemp(prefix="cspine-latency-"))
    node_port = free_port()
    pacs = start_orthanc(work / "pacs", modalities={"CSPINE": ("CSPINE", "127.0.0.1", node_port)})
    archive = start_orthanc(work / "archive", aet="ARCHIVE")
    redis = start_redis(work / "redis") if args.redis else None
    spool_dir = work / "spool"
    env = {"CSPINE_SPOOL_DIR": str(spool_dir), "CSPINE_LOG_LEVEL": "INFO" if args.keep else "WARNING", "CSPINE_DEVICE": "cpu",
           "CSPINE_DESTINATIONS": json.dumps([
               {"name": "pacs", "kind": "dimse", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": pacs.dicom_port},
               {"name": "archive", "kind": "stow", "url": archive.dicomweb_url}])}
    if redis:
        env["CSPINE_BROKER_URL"] = redis.url
    procs: list[NodeProcess] = []

    def start() -> None:
        procs.append(serve(spool_dir, work / f"serve{len(procs)}.log", port=node_port, **env))
        if redis:
            procs.append(worker(spool_dir, work / f"worker{len(procs)}.log", **env))

    def stop() -> None:
        while procs:
            procs.pop().stop()

    xray = {"SR": 1, "SEG": 1}
    try:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; broker "
              f"{'redis' if redis else 'embedded'}; default assembly (dispatch at the release, results held for the 0.5 s grace); PACS Orthanc -> node -> "
              f"PACS (C-STORE) + archive (STOW-RS)")
        files = [write_study(generate_study(200 + i), work / f"x{i}") for i in range(args.runs + 2)]
        t = time.monotonic()
        start()
        spool = Spool(spool_dir)
        dt, uid, gen = send_and_wait(pacs, spool, files[0], xray, args.timeout)
        print(f"cold (sent {SENT[-1] - t:.1f} s after start, worker loading): {dt:6.2f} s   "
              f"[{stages_text(spool, uid, gen)}]")
        stop()
        start()
        ready = wait_worker_ready(env)
        dt, uid, gen = send_and_wait(pacs, spool, files[1], xray, args.timeout)
        print(f"first after ready (worker ready {ready:.1f} s after serve listened): {dt:6.2f} s   "
              f"[{stages_text(spool, uid, gen)}]")
        warm = []
        for i in range(args.runs):
            dt, uid, gen = send_and_wait(pacs, spool, files[2 + i], xray, args.timeout)
            warm.append(dt)
            print(f"warm {i + 1}: {dt:6.2f} s   {all_segs_text(spool, uid, gen)}   [{stages_text(spool, uid, gen)}]")
            if args.timeline:
                print(f"    queued/sent: {timeline_text(spool, uid, gen)}")
        if warm:
            print(f"warm median {statistics.median(warm):.2f} s (min {min(warm):.2f}, max {max(warm):.2f})")
        if args.mri:
            x_files, m_files = paired_phantom_studies(77, work / "paired")
            send_and_wait(pacs, spool, x_files, xray, args.timeout)
            dt, uid, gen = send_and_wait(pacs, spool, m_files, {"SR": 2, "SEG": 1}, args.timeout)
            print(f"MRI after the same patient's X-ray (MRI SR + SEG + patient-level SR): {dt:6.2f} s   "
                  f"[{stages_text(spool, uid, gen)}]")
        shape = {pydicom.dcmread(f, stop_before_pixels=True).Rows for fs in files for f in fs}
        print(f"radiographs {min(shape)}-{max(shape)} rows; load average now {os.getloadavg()[0]:.2f}")
    finally:
        stop()
        pacs.stop()
        archive.stop()
        if redis:
            redis.stop()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
