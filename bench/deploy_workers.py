"""Scale-out benchmark: studies per minute with 1 and with 2 Celery worker processes on this machine.

    .venv/bin/python bench/deploy_workers.py [--studies 8] [--workers 1,2] [--threads 1] [--shape 768x640]

Each run starts its own Redis, ``cspine-node serve`` (Redis broker, the compose file's node environment with no
destinations) and N ``cspine-node worker --pool solo`` processes on loopback, waits until every worker answers
the images' health check (``cspine-node health --role worker``, a Celery ping), warms each worker up with one
study (model loading is not counted), then C-STOREs the same phantom studies (neutral, flexion, extension DX) and waits until all are analysed.
Throughput = studies / (last analysis recorded - first study dispatched), from the spool's timestamps.
``--threads`` sets OMP_NUM_THREADS per worker (1 thread per worker compares 1 vs 2 workers on 2 cores fairly).
The workers use the shipped weights, or those named in ``CSPINE_MODELS`` (``{"keypoints": {"weights": ...}}``).

With ``--gpu`` it instead measures X-ray keypoint images/s on ``--device`` (default cuda): the predictor's
batched path (letterbox, two network passes, decoding) against the raw network forward of the same number of
passes on the same batch size, in one run. ``bench/gpu_throughput.py`` measures the full path through the
cross-study ``BatchingPredictor`` with concurrent callers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load() -> str:
    try:
        la = os.getloadavg()
        return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def run_workers(n_workers: int, warm: list[tuple[str, list[Path]]], measured: list[tuple[str, list[Path]]],
                work: Path, threads: int, timeout_s: float) -> dict:
    """One run with ``n_workers`` worker processes; returns throughput and per-study analysis times."""
    import subprocess

    from node.scu import store_files
    from node.spool import Spool
    from tests.deploy.deploy_files import localize_env, service_env
    from tests.node.nodetest_proc import NodeProcess, wait_for
    from tests.services import free_port, start_redis

    work.mkdir(parents=True, exist_ok=True)
    redis = start_redis(work / "redis")
    procs: list[NodeProcess] = []
    try:
        ports = {("redis", 6379): redis.port}
        spool = work / "spool"
        overrides = {"CSPINE_SPOOL_DIR": str(spool), "CSPINE_DESTINATIONS": "[]", "CSPINE_ALLOWED_CALLING_AETS": "[]",
                     "CSPINE_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": str(threads), "CSPINE_DEVICE": "cpu"}
        if os.environ.get("CSPINE_MODELS"):  # other weights than the shipped ones
            overrides["CSPINE_MODELS"] = os.environ["CSPINE_MODELS"]
        node_env = localize_env(service_env("node"), ports, {
            **overrides, "CSPINE_HOST": "127.0.0.1", "CSPINE_PORT": str(free_port()), "CSPINE_METRICS_PORT": "0",
            "CSPINE_STABLE_AGE_S": "1"})
        worker_env = localize_env(service_env("worker-cpu"), ports, overrides)
        node = NodeProcess(["serve"], node_env, work / "node.log").wait_serving(120)
        procs.append(node)
        names = [f"w{i}@%h" for i in range(n_workers)]
        for i, name in enumerate(names):
            procs.append(NodeProcess(["worker", "--pool", "solo", "--hostname", name], worker_env,
                                     work / f"worker{i}.log"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")} | worker_env | {"PYTHONPATH": str(ROOT)}

        def pinged() -> bool:  # `cspine-node health --role worker` of every worker (the images' health check)
            return all(subprocess.run([sys.executable, "-m", "node.cli", "health", "--role", "worker", "--hostname",
                                       name], env=env, capture_output=True).returncode == 0 for name in names)

        wait_for(pinged, 180, "workers ready", interval=2.0)
        sp = Spool(spool)

        def send_and_wait(studies: list[tuple[str, list[Path]]]) -> None:
            for _, paths in studies:
                store_files(paths, "127.0.0.1", node.port, called_aet="CSPINE", calling_aet="BENCH")

            def done() -> bool:
                rows = [sp.study(uid) for uid, _ in studies]
                failed = [r.study_uid for r in rows if r is not None and r.state == "failed"]
                if failed:
                    raise RuntimeError(f"analysis failed for {failed}; see {work}/worker*.log")
                return all(r is not None and r.state in {"done", "skipped"} for r in rows)

            wait_for(done, timeout_s, f"{len(studies)} studies analysed", interval=0.5)

        send_and_wait(warm)
        t0 = time.monotonic()
        send_and_wait(measured)
        wall = time.monotonic() - t0
        rows = [sp.study(uid) for uid, _ in measured]
        start = min(r.dispatched_at for r in rows)
        end = max(r.analyzed_at for r in rows)
        per_study = [r.analyzed_at - r.analysis_started_at for r in rows]
        sp.close()
        return {"workers": n_workers, "studies": len(rows), "span_s": end - start, "wall_s": wall,
                "studies_per_min": len(rows) / (end - start) * 60.0,
                "analysis_s_mean": statistics.mean(per_study), "analysis_s_median": statistics.median(per_study)}
    finally:
        for p in reversed(procs):
            p.stop()
        redis.stop()


def bench_workers(args: argparse.Namespace) -> int:
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.xray import generate_study

    counts = [int(n) for n in args.workers.split(",")]
    rows, cols = (int(v) for v in args.shape.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="cspine-bench-workers-"))
    print(f"{_load()}; generating {args.studies + max(counts)} phantom studies ({rows}x{cols}) ...", flush=True)

    def make(seed: int) -> tuple[str, list[Path]]:
        st = generate_study(seed, shape=(rows, cols))
        return st.study_uid, [Path(p) for p in write_study(st, work / "phantoms" / str(seed))]

    measured = [make(args.seed + i) for i in range(args.studies)]
    warmups = [make(args.seed + 10_000 + i) for i in range(max(counts))]
    results = []
    for n in counts:
        print(f"running {n} worker(s) ...", flush=True)
        r = run_workers(n, warmups[:n], measured, work / f"run{n}", args.threads, args.timeout)
        r["load_after"] = _load()
        results.append(r)
        print(f"  {n} worker(s): {r['studies_per_min']:.1f} studies/min ({r['studies']} studies in {r['span_s']:.1f} s), "
              f"analysis {r['analysis_s_mean']:.1f} s mean per study; {r['load_after']}", flush=True)
    base = results[0]["studies_per_min"]
    print("\nworkers  studies/min  speed-up  analysis s/study (mean)")
    for r in results:
        print(f"{r['workers']:>7}  {r['studies_per_min']:>11.1f}  {r['studies_per_min'] / base:>7.2f}x  "
              f"{r['analysis_s_mean']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def bench_gpu(args: argparse.Namespace) -> int:
    """Images/s of the predictor's batched path vs the raw network forward (same passes, same batch)."""
    import pydicom
    import torch

    from models.xray_keypoints.predictor import KeypointPredictor
    from pipelines.phantoms.dicom import write_study
    from pipelines.phantoms.xray import generate_study
    from pipelines.xray.preprocessing import image_from_dataset

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible: run this on a GPU machine (or pass --device cpu)")
        return 2
    pred = KeypointPredictor.load(args.weights, device)
    tmp = Path(tempfile.mkdtemp(prefix="cspine-bench-gpu-"))
    files: list[Path] = []
    seed = args.seed
    while len(files) < args.batch:
        files += write_study(generate_study(seed, shape=(768, 640)), tmp / str(seed))
        seed += 1
    images = [image_from_dataset(pydicom.dcmread(f)) for f in files[: args.batch]]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, reps: int) -> float:  # noqa: ANN001
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - t) / reps

    x = torch.rand(args.batch, 1, pred.size, pred.size, device=device)

    @torch.inference_mode()
    def raw() -> None:  # the two passes the predictor makes (whole image, then the spine box)
        pred.model(x)
        pred.model(x)

    t_raw = timed(raw, args.reps)
    t_pipe = timed(lambda: pred.predict_batch(images), args.reps)
    raw_ips, pipe_ips = args.batch / t_raw, args.batch / t_pipe
    print(f"device {device}, batch {args.batch}, input {pred.size} px, model {pred.version}")
    print(f"raw network forward (2 passes): {raw_ips:.1f} images/s")
    print(f"predictor batched path:         {pipe_ips:.1f} images/s  ({pipe_ips / raw_ips:.2f}x of raw)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=8, help="studies measured per run")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per worker")
    ap.add_argument("--shape", default="768x640", help="phantom rows x cols")
    ap.add_argument("--seed", type=int, default=960_000)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one batch of studies")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--gpu", action="store_true", help="images/s on a GPU: predictor vs raw forward")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    return bench_gpu(args) if args.gpu else bench_workers(args)


if __name__ == "__main__":
    sys.exit(main())
