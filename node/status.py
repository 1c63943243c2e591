"""``cspine-node status``: what the node holds and where it stands, read from the spool index.

Works without a running node (it reads SQLite, the broker's queue lengths and the workers' status files: the
figures of the node's /metrics); with ``--metrics-url`` it also reads the live counters of a running ``serve``
(instances received, rejections).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from node import corrections
from node.metrics import queue_lengths
from node.settings import DestinationKind, NodeSettings, redact_url
from node.spool import OutboxState, Spool
from node.worker_status import alive, read_statuses


def collect(settings: NodeSettings, metrics_url: str | None = None) -> dict[str, Any]:
    """Studies by state, queue depth, outbox per destination (with last error), dead letters, recent studies."""
    spool = Spool(settings.spool_dir)
    try:
        counts = spool.counts()
        errors = spool.destination_errors()
        destinations: dict[str, Any] = {}
        for d in settings.destinations:
            target = redact_url(d.url) if d.kind is DestinationKind.STOW else f"{d.ae_title}@{d.host}:{d.port}"
            destinations[d.name] = {"kind": d.kind.value, "target": target}
        for key, n in counts["outbox"].items():
            dest, state = key.rsplit(":", 1)
            destinations.setdefault(dest, {})[state] = n
        for dest, (err, when) in errors.items():
            destinations.setdefault(dest, {})["last_error"] = err
            destinations[dest]["last_error_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        recent = [
            {"study_uid": s.study_uid, "state": s.state, "instances": s.n_instances, "generation": s.generation,
             "analyzed_generation": s.analyzed_generation, "reason": s.reason, "attempts": s.attempts,
             "worker_deaths": s.worker_deaths, "retry_at": s.retry_at}
            for s in spool.studies()[-20:]
        ]
        info: dict[str, Any] = {
            "spool": str(spool.root),
            "studies": counts["studies"],
            "queue": counts["queue"],
            "instances": counts["instances"],
            "destinations": destinations,
            "dead_letters": spool.dead_letters()[-20:],
            "recent_studies": recent,
            "latency_s": {"analysis": _quantiles(spool.analysis_latencies()),
                          "delivery": _quantiles(spool.delivery_latencies())},
            "stages_s": {stage: _quantiles(v) for stage, v in spool.stage_times().items()},
            "corrections": corrections.summary(settings, spool),
        }
    finally:
        spool.close()
    queues = list(dict.fromkeys([settings.analyze_queue, settings.deliver_queue, *settings.consumed_queues]))
    try:
        info["celery_queues"] = queue_lengths(settings.broker_url, str(settings.spool_dir), queues)
    except Exception as e:  # noqa: BLE001 - broker down is a status to show, not a crash
        info["celery_queues"] = f"unreachable: {type(e).__name__}: {e}"
    info["routing"] = {"analyze": settings.analyze_queue, "deliver": settings.deliver_queue}
    info["workers"] = _workers(settings)
    if metrics_url:
        info["metrics"] = _scrape(metrics_url)
    return info


def _quantiles(values: list[float]) -> dict[str, float]:
    """Count, median, 95th percentile and max (s) of latencies; just the count when there are none."""
    if not values:
        return {"count": 0}
    v = np.sort(np.asarray(values, dtype=float))
    return {"count": len(v), "p50": round(float(np.quantile(v, 0.5)), 3), "p95": round(float(np.quantile(v, 0.95)), 3),
            "max": round(float(v[-1]), 3)}


def _workers(settings: NodeSettings) -> list[dict[str, Any]]:
    """The workers' status files: name, alive, device, queues, models, batch sizes."""
    now = time.time()
    out = []
    for st in read_statuses(settings.spool_dir):
        out.append({"hostname": st.get("hostname", "?"), "alive": alive(st, settings.worker_status_interval_s, now),
                    "heartbeat_age_s": round(now - float(st.get("heartbeat", 0)), 1), "device": st.get("device", ""),
                    "pool": st.get("pool", ""), "queues": st.get("queues", []), "analyses": st.get("analyses", 0),
                    "ready": bool(st.get("ready", True)), "warmup_s": st.get("warmup_s", {}),
                    "models": st.get("models", []), "batch_sizes": st.get("batch_sizes", {})})
    return out


def _scrape(url: str) -> dict[str, float] | str:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(url, timeout=5).text
    except requests.RequestException as e:
        return f"unreachable: {e}"
    out = {}
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("cspine_"):
            continue
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in s.labels.items())
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def render(info: dict[str, Any]) -> str:
    """Plain-text rendering of ``collect``'s dict."""
    lines = [f"spool: {info['spool']}",
             f"instances: {info['instances']['count']} ({info['instances']['bytes'] / 1e6:.1f} MB)",
             "studies: " + (", ".join(f"{k} {v}" for k, v in sorted(info["studies"].items())) or "none"),
             f"queue: assembling {info['queue']['assembling']}, queued/running {info['queue']['queued_or_running']}"]
    cq = info.get("celery_queues", {})
    routing = info.get("routing", {})
    lines.append(f"celery queues (analysis -> {routing.get('analyze', '?')}, delivery -> {routing.get('deliver', '?')}): "
                 + (cq if isinstance(cq, str) else ", ".join(f"{q} {n}" for q, n in cq.items()) or "none"))
    for kind, q in info.get("latency_s", {}).items():
        label = "dispatch to analysed" if kind == "analysis" else "analysed to delivered"
        lines.append(f"{kind} latency ({label}): " + (
            f"{q['count']} done, median {q['p50']:g} s, p95 {q['p95']:g} s, max {q['max']:g} s" if q.get("count")
            else "none yet"))
    stages = info.get("stages_s", {})
    lines.append("stage times (median / p95 / max, s; node.spool.stages):" if stages else "stage times: none yet")
    for stage, q in stages.items():
        lines.append(f"  {stage:24s} {q['p50']:8.3f} {q['p95']:8.3f} {q['max']:8.3f}   ({q['count']} studies)")
    workers = info.get("workers", [])
    lines.append("workers:" if workers else "workers: none has reported (status files under <spool>/run/workers)")
    for w in workers:
        state = "alive" if w["alive"] else f"silent for {w['heartbeat_age_s']:g} s"
        state += "" if w.get("ready", True) else ", warming up (not taking work yet)"
        batches = w["batch_sizes"]
        n_fw = sum(batches.values())
        n_img = sum(int(k) * v for k, v in batches.items())
        bs = f", {n_fw} forwards, {n_img / n_fw:.2f} images/forward" if n_fw else ""
        lines.append(f"  {w['hostname']} {state}: device {w['device']}, pool {w['pool']}, queues "
                     f"{','.join(w['queues'])}, {w['analyses']} analyses{bs}")
    models = sorted({(m["pipeline"], m["model"], m["version"]) for w in workers if w["alive"] for m in w["models"]})
    lines.append("model versions: " + ("; ".join(f"{p}: {m} {v}" for p, m, v in models) or "none reported yet"))
    lines.append("destinations:" if info["destinations"] else "destinations: none configured")
    for name, d in info["destinations"].items():
        states = ", ".join(f"{k} {v}" for k, v in d.items() if k in {s.value for s in OutboxState})
        lines.append(f"  {name} ({d.get('kind', '?')} {d.get('target', '')}): {states or 'nothing yet'}")
        if "last_error" in d:
            lines.append(f"    last error {d['last_error_at']}: {d['last_error']}")
    if "corrections" in info:
        c = info["corrections"]
        lines.append(f"corrections: {c['examples']} training examples in {c['folder']} (SRs: {c['done']} folded in, "
                     f"{c['inbox']} waiting, {c['rejected']} rejected)")
    lines.append(f"dead letters: {len(info['dead_letters'])}")
    for dl in info["dead_letters"]:
        lines.append(f"  {dl['kind']} {dl['study_uid']} gen {dl['generation']} {dl['destination']}: {dl['error'][:200]}")
    if info["recent_studies"]:
        lines.append("recent studies:")
        for s in info["recent_studies"]:
            why = f" - {s['reason']}" if s["reason"] else ""
            tries = f", {s['attempts']} attempts" if s.get("attempts", 0) > 1 else ""
            tries += f", {s['worker_deaths']} worker deaths" if s.get("worker_deaths") else ""
            lines.append(f"  {s['study_uid']} {s['state']} ({s['instances']} instances, gen {s['generation']}{tries})"
                         f"{why}")
    if "metrics" in info:
        lines.append("metrics:")
        m = info["metrics"]
        lines.extend([f"  {m}"] if isinstance(m, str) else [f"  {k} {v:g}" for k, v in sorted(m.items())])
    return "\n".join(lines)
