"""``cspine-node``: the command line of the node.

Subcommands::

    serve      receive (DICOM SCP), assemble, dispatch; with no broker URL also runs the embedded worker
    worker     a Celery worker for the node's tasks (Redis broker, or the embedded one under the spool)
    analyze    run the pipelines on DICOM files/folders on disk (no network): result DICOM + summary.txt
    models     the models a worker loads (from models.registry and the settings), with their cards
    status     studies by state, queue lengths, outbox per destination with last error, dead letters, workers,
               model versions, latencies
    health     --role node|worker: exit 0/1 with a one-line reason (container HEALTHCHECK, Kubernetes probes)
    demo       start an embedded node, C-STORE a generated phantom study to it, print the results
    phantom    xray|mri ...  -> pipelines.phantoms.<x>.cli.cli
    train      a model of models.registry (xray, mri, curvature, ...)  -> models.<model>.train.cli
    evaluate   a model of models.registry  -> models.<model>.evaluate.cli

Settings come from ``CSPINE_*`` environment variables and the file in ``CSPINE_CONFIG`` (``--config``
sets it); the few flags below override them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models.registry import REGISTRY
from node.health import Role

DELEGATES: dict[tuple[str, str], str] = {
    ("phantom", "xray"): "pipelines.phantoms.xray.cli",
    ("phantom", "mri"): "pipelines.phantoms.mri.cli",
    ("phantom", "neck-pain"): "models.neck_pain.data",
    **{("train", e.cli): e.train_module for e in REGISTRY},
    **{("evaluate", e.cli): e.evaluate_module for e in REGISTRY},
}
"""Subcommands handed to the module that owns them; train/evaluate targets come from the model registry."""


def _settings(args: argparse.Namespace, **extra: Any):  # noqa: ANN202
    from node.settings import NodeSettings

    if getattr(args, "config", None):
        os.environ["CSPINE_CONFIG"] = str(Path(args.config).resolve())
    overrides = {k: v for k, v in extra.items() if v is not None}
    return NodeSettings(**overrides)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="settings file (TOML/JSON/YAML); same as CSPINE_CONFIG")
    p.add_argument("--spool", type=Path, help="spool directory (CSPINE_SPOOL_DIR)")


def cmd_serve(args: argparse.Namespace) -> int:
    import gc

    from node import embedded

    gc.disable()  # while it imports and starts, as ``cmd_worker`` (it shares the CPU with its loading worker)

    s = _settings(args, spool_dir=args.spool, port=args.port, ae_title=args.ae_title, host=args.host,
                  stable_age_s=args.stable_age, broker_url=args.broker_url, metrics_port=args.metrics_port)
    start_worker = True if args.with_worker else (False if args.no_worker else s.embedded_broker and s.embedded_worker)
    # The worker child first: it imports torch and warms its models while this process imports the rest, recovers
    # the spool and opens the port; it consumes once released (node.embedded).
    worker = embedded.spawn(s) if start_worker else None
    from node.logs import setup_logging
    from node.service import Node

    setup_logging(s.log_level, s.log_json)
    node = Node(s, start_worker=start_worker, worker=worker)
    # pynetdicom writes received C-STORE data sets to temporary files: on the spool's file system they are renamed
    # into place, not copied (``Spool.store``), and ``recover`` removes those of a crash.
    tempfile.tempdir = str(node.spool.tmp_dir)
    node.start()
    gc.freeze()
    gc.enable()
    print(json.dumps({"event": "serving", "ae_title": s.ae_title, "port": node.port, "spool": str(node.spool.root),
                      "broker": "embedded" if s.embedded_broker else "redis", "pid": os.getpid()}), flush=True)
    node.wait()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import gc
    import logging

    # No cyclic garbage collection while the worker imports and loads: each automatic full collection walks the
    # whole growing heap (torch, highdicom's tables: ~520 000 objects at the end), 1.6 s of a 7.8 s start here,
    # for a few hundred unreachable objects. ``tasks.configure_worker`` freezes the heap and enables it again.
    gc.disable()

    from node import tasks
    from node.logs import setup_logging

    s = _settings(args, spool_dir=args.spool, broker_url=args.broker_url, device=args.device)
    setup_logging(s.log_level, s.log_json)
    app = tasks.configure(s)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else s.consumed_queues
    from node.health import worker_nodename

    tasks.configure_worker(s, queues=queues, pool=args.pool, concurrency=args.concurrency,
                           hostname=worker_nodename(args.hostname))
    from node.embedded import wait_for_release

    wait_for_release()  # started by serve before its spool recovery: consume only after it (node.embedded)
    # The banner is plain text on stdout: not in JSON logs, nor under the demo (WARNING).
    quiet = s.log_json or logging.getLevelName(s.log_level.upper()) >= logging.WARNING
    # Celery's worker itself, without its command line: ``celery worker`` would first import every Celery
    # subcommand (click-repl, prompt-toolkit: ~0.5 s here) while the study waits in the queue.
    from celery import concurrency
    from celery.utils.log import mlevel
    from celery.utils.nodenames import default_nodename, host_format

    worker = app.Worker(hostname=host_format(default_nodename(args.hostname or None)),
                        pool_cls=concurrency.get_implementation(args.pool), concurrency=args.concurrency,
                        queues=queues, without_gossip=True, without_mingle=True,
                        without_heartbeat=s.embedded_broker,  # no event bus with the embedded broker
                        loglevel=mlevel(s.log_level.upper()), quiet=quiet, no_color=quiet)
    worker.start()
    return int(worker.exitcode or 0)


def cmd_health(args: argparse.Namespace) -> int:
    from node.health import check

    s = _settings(args, spool_dir=args.spool)
    ok, reason = check(args.role, s, hostname=args.hostname, timeout_s=args.timeout)
    print(f"{'ok' if ok else 'unhealthy'}: {reason}")
    return 0 if ok else 1


def cmd_analyze(args: argparse.Namespace) -> int:
    import gc
    from io import BytesIO

    gc.disable()  # while it imports and loads its models, as ``cmd_worker``
    from models.registry import build_models
    from pipelines import analyze
    from pipelines.study import Study

    settings = _settings(args, device=args.device)

    files: list[Path] = []
    for p in args.paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            print(f"error: {p}: no such file or folder", file=sys.stderr)
            return 2
    dicom_files = []
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(132)
        if head[128:132] == b"DICM":
            dicom_files.append(f)
        else:
            print(f"skipping {f}: not a DICOM Part 10 file", file=sys.stderr)
    if not dicom_files:
        print("error: no DICOM files found", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    n_objects = 0
    if settings.torch_threads > 0:  # as a worker does (settings.torch_threads)
        import torch

        torch.set_num_threads(settings.torch_threads)
    models = build_models(settings.model, store=settings.model_store, batch_wait_ms=settings.batch_wait_ms)
    gc.freeze()
    gc.enable()
    for study in Study.from_paths(dicom_files):
        analysis = analyze(study, models)
        study_dir = out / study.study_uid
        study_dir.mkdir(parents=True, exist_ok=True)
        for ds in [*analysis.objects, *analysis.patient_objects]:
            buf = BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            name = f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
            (study_dir / name).write_bytes(buf.getvalue())
            n_objects += 1
            print(study_dir / name)
        text = "\n".join(r.summary() for r in analysis.results)
        if analysis.skipped:
            text += ("\n" if text else "") + "\n".join(f"Study {study.study_uid} not analysed: {s}"
                                                      for s in analysis.skipped)
        summaries.append(text)
    summary = "\n\n".join(summaries) + "\n"
    (out / "summary.txt").write_text(summary)
    print(summary)
    print(f"{n_objects} result object(s) and summary.txt written to {out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The model table (registry + settings + the site's store) and the store's versions: list, add, promote,
    rollback."""
    from models.registry import entry
    from models.store import ModelStore, StoreError

    s = _settings(args)
    action = args.action or "list"
    if action != "list" and s.model_store is None:
        print("error: no model store configured (CSPINE_MODEL_STORE or model_store in the settings file)",
              file=sys.stderr)
        return 2
    store = ModelStore(s.model_store) if s.model_store is not None else None
    try:
        if action == "add":
            name = entry(args.model).name
            v = store.add(name, args.weights, args.card, args.metrics, data=args.data or "")
            print(f"added {name} {v.version} (not active; `cspine-node models promote {name} {v.version}`)")
        elif action == "promote":
            name = entry(args.model).name
            v = store.promote(name, args.version)
            print(f"{name}: {v.version} is active (workers load it at their next start)")
        elif action == "rollback":
            name = entry(args.model).name
            now = store.rollback(name)
            print(f"{name}: {now or 'the shipped weights'} active (workers load it at their next start)")
        else:
            return _print_models(s, store, as_json=args.json)
    except (StoreError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_models(s: Any, store: Any, *, as_json: bool) -> int:
    rows = []
    for e in REGISTRY:
        ms = s.model(e.name)
        versions = store.versions(e.name) if store is not None else []
        active = next((v.version for v in versions if v.active), None)
        weights = str(ms.weights) if ms.weights else (f"store:{active}" if active else "shipped")
        rows.append({"model": e.name, "cli": e.cli, "task": e.task, "enabled": ms.enabled, "device": ms.device,
                     "weights": weights, "card": str(e.card),
                     "versions": [{"version": v.version, "active": v.active, "data": v.manifest.get("data", "")}
                                  for v in versions]})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "" if r["enabled"] else " (disabled)"
        print(f"{r['model']:<17} {r['cli']:<17} {r['device']:<6} {r['weights']:<8} {r['task']}{state}")
        for v in r["versions"]:
            print(f"{'':<17} {'*' if v['active'] else ' '} {v['version']}  {v['data']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from node.status import collect, render

    s = _settings(args, spool_dir=args.spool)
    info = collect(s, metrics_url=args.metrics_url)
    print(json.dumps(info, indent=2, default=str) if args.json else render(info))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    return run_demo(spool=args.spool, seed=args.seed, timeout_s=args.timeout, port=args.port,
                    with_mri=args.with_mri)


def cmd_delegate(args: argparse.Namespace, rest: list[str]) -> int:
    module_name = DELEGATES.get((args.command, args.target))
    if module_name is None:
        print(f"error: unknown target {args.target!r} for {args.command}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"error: {module_name} is not available ({e})", file=sys.stderr)
        return 2
    if (args.command, args.target) == ("train", "xray") and "--from-corrections" in rest and "--store" not in rest:
        store = _settings(args).model_store  # the site's store from the settings (CSPINE_CONFIG, CSPINE_MODEL_STORE)
        rest = [*rest, "--store", str(store)] if store is not None else rest
    result = module.cli(rest)
    return int(result or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cspine-node", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the node (SCP, assembly, dispatch; embedded worker without a broker URL)")
    _common(p)
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.add_argument("--ae-title")
    p.add_argument("--stable-age", type=float, help="seconds without new instances before dispatch")
    p.add_argument("--broker-url", help="redis://host:port/db (default: embedded broker under the spool)")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: off)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-worker", action="store_true", help="do not start the embedded worker")
    g.add_argument("--with-worker", action="store_true", help="start a local worker child even with Redis")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a Celery worker for the node's tasks")
    _common(p)
    p.add_argument("--broker-url")
    p.add_argument("--pool", default="solo", choices=["solo", "prefork", "threads"],
                   help="solo: one task at a time; threads: --concurrency analyses share one model (batched)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--queues", help="comma-separated Celery queues to consume (default: the analysis and delivery "
                                    "queues of the settings), e.g. cspine.gpu")
    p.add_argument("--hostname", help="Celery node name, e.g. gpu1@%%h (default celery@<host name>)")
    p.add_argument("--device", help="torch device: auto, cpu, cuda, cuda:N (CSPINE_DEVICE)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("health", help="health check for containers and probes: exit 0 healthy, 1 not (one line why)")
    _common(p)
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.NODE.value,
                   help="node: C-ECHO to its SCP, spool writable, broker reachable; worker: Celery ping of its "
                        "hostname (Redis) or a fresh status heartbeat (embedded broker)")
    p.add_argument("--hostname", help="the worker's Celery node name (default celery@<host name>)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per check")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("analyze", help="analyse DICOM files on disk (no network)")
    p.add_argument("paths", nargs="+", help="DICOM files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder for result DICOM files + summary.txt")
    p.add_argument("--config", help="settings file (TOML/JSON/YAML): the models' weights and devices")
    p.add_argument("--device", help="torch device of the models: auto, cpu, cuda, cuda:N (CSPINE_DEVICE)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("status", help="show the node's state (reads the spool index)")
    _common(p)
    p.add_argument("--metrics-url", help="also read this /metrics endpoint, e.g. http://127.0.0.1:9464/metrics")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("models", help="the models a worker loads, and the site's versions: list|add|promote|rollback")
    p.add_argument("--config", help="settings file (TOML/JSON/YAML); same as CSPINE_CONFIG")
    p.add_argument("--json", action="store_true", help="list as JSON")
    act = p.add_subparsers(dest="action")
    a = act.add_parser("list", help="the model table with the stored versions (* = active)")
    a.add_argument("--json", action="store_true")
    a = act.add_parser("add", help="add trained weights with their card and metrics as a new (inactive) version")
    a.add_argument("model")
    a.add_argument("weights", type=Path)
    a.add_argument("--card", type=Path, required=True, help="the MODEL_CARD.md of these weights")
    a.add_argument("--metrics", type=Path, required=True, help="a JSON file with their evaluation")
    a.add_argument("--data", help="what they were trained on (one line)")
    a = act.add_parser("promote", help="make a stored version the active one")
    a.add_argument("model")
    a.add_argument("version")
    a = act.add_parser("rollback", help="return to the previously active version (or the shipped weights)")
    a.add_argument("model")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="start an embedded node, send it a phantom study, print the results")
    p.add_argument("--spool", type=Path, help="spool directory (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="SCP port (default: a free one)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--with-mri", action="store_true",
                   help="also send an MRI study of the same virtual patient: the patient-level report is built")
    p.set_defaults(func=cmd_demo)

    for name in ("phantom", "train", "evaluate"):
        targets = [t for (cmd, t) in DELEGATES if cmd == name]
        p = sub.add_parser(name, help=f"{name} {'|'.join(targets)} ... (options are passed to the owning module)",
                           add_help=False)
        p.add_argument("target", choices=targets)
        p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("phantom", "train", "evaluate"):
        return cmd_delegate(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    t0 = time.time()
    sys.exit(main())
