"""What the prior-study lookup (``node.priors``) adds to a study's latency, against a local Orthanc.

    .venv/bin/python bench/priors_latency.py [--runs 10] [--no-analyze]

Starts an Orthanc (``tests.services.start_orthanc``, loopback) holding the SR this node wrote for an earlier phantom
X-ray study of the patient (2024-01-01; seed 6), and times, for the current study (seed 5, 2026-01-01), medians over
``--runs`` (min, max) of ``PriorHistory.priors`` alone:

* ``index``: the prior found in the node's own index (no PACS query);
* ``qido``: not in the index, found through QIDO-RS + WADO-RS (studies, SR series, instances, one retrieve);
* ``cfind``: the same through C-FIND (study, series, image level) + C-GET on one association;
* ``none``: a patient the PACS has nothing for (QIDO-RS, one query).

Then (unless ``--no-analyze``) ``pipelines.analyze`` of the current study with the shipped models, without a history
and with the QIDO-RS lookup: the lookup runs while the pipeline does, so what it adds is ``priors`` (the wait after the
pipeline finished) plus the comparison's share of ``encode`` (SR remarks, one more table on the report page).
Timings on a shared CPU are noisy: compare the medians of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _stats(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"


def _relabel(paths: list[Path], out: Path, pid: str, date: str) -> list[Path]:
    import pydicom

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientID, ds.StudyDate = pid, date
        written.append(out / p.name)
        ds.save_as(written[-1], enforce_file_format=True)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-analyze", action="store_true", help="only the lookup, no models")
    args = ap.parse_args(argv)

    from node.priors import PriorHistory
    from node.settings import Destination
    from node.spool import Spool
    from pipelines.dicom_out import encode
    from pipelines.dicom_out.example import phantom_example
    from pipelines.study import Study
    from pipelines.vocabulary import PipelineName
    from tests.services import free_port, start_orthanc

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pid = "BENCH-PRIORS-1"
        prior_study, prior_result = phantom_example(6, tmp / "prior_raw", shape=(1024, 832))
        prior = Study.from_paths(_relabel([i.path for i in prior_study.instances], tmp / "prior", pid, "20240101"))[0]
        sr = encode(prior, prior_result)[0]
        sr.save_as(tmp / "prior_sr.dcm", enforce_file_format=True)
        current_raw, _ = phantom_example(5, tmp / "current_raw", shape=(1024, 832))
        current = Study.from_paths(_relabel([i.path for i in current_raw.instances], tmp / "current", pid, "20260101"))[0]
        stranger = Study.from_paths(_relabel([i.path for i in current_raw.instances], tmp / "stranger", "NOBODY", "20260101"))[0]

        orthanc = start_orthanc(tmp / "orthanc", modalities={"NODE": ("CSPINE", "127.0.0.1", free_port())})
        try:
            orthanc.upload(tmp / "prior_sr.dcm")
            stow = Destination(name="archive", kind="stow", url=orthanc.dicomweb_url, priors=True)
            dimse = Destination(name="pacs", kind="dimse", ae_title=orthanc.aet, host="127.0.0.1",
                                port=orthanc.dicom_port, priors=True)
            index_spool = _indexed(Spool(tmp / "spool_index"), prior, prior_result)
            cases = {
                "index": (lambda: PriorHistory(index_spool, 90, [stow]), current),
                "qido": (lambda: PriorHistory(Spool(tmp / "spool_empty"), 90, [stow]), current),
                "cfind": (lambda: PriorHistory(Spool(tmp / "spool_empty"), 90, [dimse]), current),
                "none": (lambda: PriorHistory(Spool(tmp / "spool_empty"), 90, [stow]), stranger),
            }
            print(f"prior lookup, {args.runs} runs each (load average {os.getloadavg()[0]:.2f}):")
            for name, (make, study) in cases.items():
                times, found = [], []
                for _ in range(args.runs + 1):
                    history = make()
                    t = time.perf_counter()
                    priors = history.priors(study, PipelineName.XRAY)
                    times.append(time.perf_counter() - t)
                    found = priors
                times = times[1:]  # the first run warms imports and connections
                comparable = sum(p.result is not None for p in found)
                print(f"  {name:6s} {_stats(times)}  priors={len(found)} comparable={comparable} "
                      f"source={found[0].source if found else '-'}")
            if not args.no_analyze:
                _analyze(args.runs, current, lambda: PriorHistory(Spool(tmp / "spool_empty"), 90, [stow]))
        finally:
            orthanc.stop()
    return 0


def _indexed(sp, prior, result):  # noqa: ANN001, ANN202 - a spool whose index holds the prior as analysed by the node
    from io import BytesIO

    import pydicom

    from node.patients import SpoolHistory, save_results
    from node.spool import header_from_dataset

    for inst in prior.instances:
        data = Path(inst.path).read_bytes()
        sp.store(data, header_from_dataset(pydicom.dcmread(BytesIO(data), stop_before_pixels=True)))
    gen = sp.study(prior.study_uid).generation
    sp.mark_dispatched(prior.study_uid, gen, "bench")
    sp.begin_analysis(prior.study_uid)
    rows = save_results(sp, prior.study_uid, gen, [result], SpoolHistory(sp, 90).identity(prior))
    sp.finish_analysis(prior.study_uid, gen, [], [], results=rows)
    return sp


def _analyze(runs: int, study, make_history) -> None:  # noqa: ANN001
    import torch

    import pipelines
    from models.registry import build_models
    from node.settings import NodeSettings

    torch.set_num_threads(1)
    settings = NodeSettings(device="cpu")
    models = build_models(settings.model, batch_wait_ms=settings.batch_wait_ms)
    pipelines.analyze(study, models, None)  # warm-up
    plain, with_priors, waits, encode_plain, encode_priors = [], [], [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        a = pipelines.analyze(study, models, None)
        plain.append(time.perf_counter() - t)
        encode_plain.append(a.timings.get("encode", 0.0))
        t = time.perf_counter()
        b = pipelines.analyze(study, models, make_history())
        with_priors.append(time.perf_counter() - t)
        waits.append(b.timings.get("priors", 0.0))
        encode_priors.append(b.timings.get("encode", 0.0))
        assert b.comparisons and b.comparisons[0].compared, "the prior was not compared"
    print(f"pipelines.analyze of the current study, {runs} runs (torch 1 thread, load average {os.getloadavg()[0]:.2f}):")
    print(f"  no history        {_stats(plain)}   encode {_stats(encode_plain)}")
    print(f"  QIDO-RS priors    {_stats(with_priors)}   encode {_stats(encode_priors)}")
    print(f"  wait for lookup   {_stats(waits)}  (after the pipeline finished)")
    print(f"  added (medians)   {(statistics.median(with_priors) - statistics.median(plain)) * 1000:7.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
