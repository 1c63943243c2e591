"""Seconds to analyse and encode one 3-view radiograph study in a warm process (models loaded and used once).

    .venv/bin/python bench/analyze_latency.py [--runs 5] [--seed 3] [--threads 1]

The study is the phantom of ``cspine-node phantom xray --seed 3 --count 1`` (neutral, flexion, extension DX).
After one warm-up analysis, each run times (medians over ``--runs``, with min and max):

* ``sr``: the TID 1500 SR alone (``pipelines.dicom_out.sr.build_sr``);
* ``encode``: every DICOM result object (``pipelines.dicom_out.encode``: SR, SEG, GSPS, report SC and PDF,
  Grad-CAM SEG) including writing each to bytes once (``save_as``), as the worker does;
* ``pipeline``: the X-ray pipeline and its models (keypoints, curvature, upper cervical, cord compression);
* ``analyze``: ``pipelines.analyze`` (route, pipeline, encode, patient level) plus writing the objects: what
  ``cspine-node analyze`` and a warm worker spend per study.

Also prints ``cold``: the wall time of one ``cspine-node analyze`` process (imports, model loading, first use).
Timings on a shared CPU are noisy: compare medians of one run, and the load average printed with them.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.3f} s (min {min(xs):.3f}, max {max(xs):.3f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--no-cold", action="store_true", help="skip the cspine-node analyze process")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from models.registry import build_models
    from node.settings import NodeSettings
    from pipelines import analyze, pipeline_for, route
    from pipelines.dicom_out import encode
    from pipelines.dicom_out._sources import load_sources
    from pipelines.dicom_out.identity import provenance
    from pipelines.dicom_out.sr import build_sr
    from pipelines.study import Study

    tmp = Path(tempfile.mkdtemp(prefix="cspine-analyze-bench-"))
    subprocess.run([sys.executable, "-m", "node.cli", "phantom", "xray", "--out", str(tmp / "in"), "--seed",
                    str(args.seed), "--count", "1"], check=True, cwd=ROOT, capture_output=True)
    files = sorted((tmp / "in").rglob("*.dcm"))
    (study,) = Study.from_paths(files)
    cold = None
    if not args.no_cold:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "node.cli", "analyze", str(tmp / "in"), "--out", str(tmp / "out")],
                       check=True, cwd=ROOT, capture_output=True, env={**os.environ, "CSPINE_DEVICE": "cpu"})
        cold = time.perf_counter() - t

    models = build_models(NodeSettings(device="cpu").model)
    r = next(x for x in route(study) if x.pipeline is not None)
    pipe = pipeline_for(r.pipeline, models)

    def write(objects: list) -> None:
        for ds in objects:
            ds.save_as(BytesIO(), enforce_file_format=True)

    result = pipe.run(study, r.instances)  # warm-up: first forwards, first encoding
    write(analyze(study, models).objects)
    gc.freeze()  # as a worker does after its warm-up (node.tasks.configure_worker)
    times: dict[str, list[float]] = {"sr": [], "encode": [], "pipeline": [], "analyze": []}
    n_objects = 0
    for _ in range(args.runs):
        t = time.perf_counter()
        result = pipe.run(study, r.instances)
        times["pipeline"].append(time.perf_counter() - t)
        sources = load_sources(study, result)
        prov = provenance(result.algorithm, result.pipeline)
        t = time.perf_counter()
        build_sr(result, sources, prov, series_uid="1.2.3", series_number=1)
        times["sr"].append(time.perf_counter() - t)
        t = time.perf_counter()
        objects = encode(study, result)
        write(objects)
        times["encode"].append(time.perf_counter() - t)
        n_objects = len(objects)
        t = time.perf_counter()
        write([*(a := analyze(study, models)).objects, *a.patient_objects])
        times["analyze"].append(time.perf_counter() - t)
    n_groups = len(result.measurements) + len(result.findings)
    print(f"3-view phantom study (seed {args.seed}), {n_objects} result objects, {len(result.measurements)} "
          f"measurements, {len(result.findings)} findings ({n_groups} values); torch threads {args.threads}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.runs} warm runs")
    for key in ("sr", "encode", "pipeline", "analyze"):
        print(f"  {key:9s} {_stats(times[key])}")
    if cold is not None:
        print(f"  cold      {cold:6.3f} s (one 'cspine-node analyze' process: imports, model loading, first use)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
