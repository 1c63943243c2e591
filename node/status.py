"""``cspine-node status``: what the node holds and where it stands, read from the spool index.

Works without a running node (it only reads SQLite); with ``--metrics-url`` it also reads the live
counters of a running ``serve`` (instances received, rejections).
"""

from __future__ import annotations

import time
from typing import Any

from node.settings import NodeSettings
from node.spool import Spool


def collect(settings: NodeSettings, metrics_url: str | None = None) -> dict[str, Any]:
    """Studies by state, queue depth, outbox per destination (with last error), dead letters, recent studies."""
    spool = Spool(settings.spool_dir)
    try:
        counts = spool.counts()
        errors = spool.destination_errors()
        destinations: dict[str, Any] = {}
        for d in settings.destinations:
            destinations[d.name] = {"kind": d.kind,
                                    "target": d.url if d.kind == "stow" else f"{d.ae_title}@{d.host}:{d.port}"}
        for key, n in counts["outbox"].items():
            dest, state = key.rsplit(":", 1)
            destinations.setdefault(dest, {})[state] = n
        for dest, (err, when) in errors.items():
            destinations.setdefault(dest, {})["last_error"] = err
            destinations[dest]["last_error_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        recent = [
            {"study_uid": s.study_uid, "state": s.state, "instances": s.n_instances, "generation": s.generation,
             "analyzed_generation": s.analyzed_generation, "reason": s.reason}
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
        }
    finally:
        spool.close()
    if metrics_url:
        info["metrics"] = _scrape(metrics_url)
    return info


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
    lines.append("destinations:" if info["destinations"] else "destinations: none configured")
    for name, d in info["destinations"].items():
        states = ", ".join(f"{k} {v}" for k, v in d.items() if k in {"pending", "sent", "failed", "superseded"})
        lines.append(f"  {name} ({d.get('kind', '?')} {d.get('target', '')}): {states or 'nothing yet'}")
        if "last_error" in d:
            lines.append(f"    last error {d['last_error_at']}: {d['last_error']}")
    lines.append(f"dead letters: {len(info['dead_letters'])}")
    for dl in info["dead_letters"]:
        lines.append(f"  {dl['kind']} {dl['study_uid']} gen {dl['generation']} {dl['destination']}: {dl['error'][:200]}")
    if info["recent_studies"]:
        lines.append("recent studies:")
        for s in info["recent_studies"]:
            why = f" - {s['reason']}" if s["reason"] else ""
            lines.append(f"  {s['study_uid']} {s['state']} ({s['instances']} instances, gen {s['generation']}){why}")
    if "metrics" in info:
        lines.append("metrics:")
        m = info["metrics"]
        lines.extend([f"  {m}"] if isinstance(m, str) else [f"  {k} {v:g}" for k, v in sorted(m.items())])
    return "\n".join(lines)
