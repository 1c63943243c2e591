"""Prometheus metrics of the node, served on an HTTP ``/metrics`` port by ``cspine-node serve``.

Counters that happen in the receiving process (instances, bytes, rejections, associations) are plain
prometheus-client metrics. Everything the workers do (analyses, latency, delivery, dead letters) is read
from the spool index at scrape time by ``SpoolCollector``, the Celery queue lengths from the broker (Redis
``LLEN``, or the embedded broker's message files), and the workers' device, model versions and batch sizes from
their status files (``node.worker_status``), so one endpoint reports the whole node even when the workers are
separate processes or machines. Every metric is documented in ``docs/node.md``.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from node.settings import NodeSettings, embedded_broker_dir

INSTANCES_RECEIVED = Counter(
    "cspine_instances_received", "Instances acknowledged with Success, by outcome (new/duplicate/replaced)", ["outcome"])
BYTES_RECEIVED = Counter("cspine_received_bytes", "Bytes of instances stored")
INSTANCES_REJECTED = Counter("cspine_instances_rejected", "C-STORE requests refused, by reason", ["reason"])
ASSOCIATIONS = Counter("cspine_associations", "Associations requested, by result", ["result"])
CONNECTIONS_CLOSED = Counter(
    "cspine_connections_closed", "Connections closed before their A-ASSOCIATE-RQ, by reason (pending_cap/deadline)",
    ["reason"])
STORE_SECONDS = Histogram(
    "cspine_store_seconds", "Time to validate and durably store one instance (s)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
DISPATCHED = Counter("cspine_studies_dispatched", "Analysis tasks sent to the queue")

LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _histogram(values: list[float], buckets: tuple[float, ...]) -> tuple[list[tuple[str, float]], float]:
    v = sorted(values)
    return [(str(b), sum(1 for x in v if x <= b)) for b in buckets] + [("+Inf", len(v))], sum(v)


def queue_lengths(broker_url: str | None, spool_root: str, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue: Redis ``LLEN`` of the queue's lists (all priority levels), or the
    message files of the embedded filesystem broker under ``<spool>/broker/queue``. Raises when unreachable."""
    if broker_url:
        import redis
        from kombu.transport.redis import PRIORITY_STEPS

        client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            out = {}
            for q in queues:
                keys = [q] + [f"{q}\x06\x16{p}" for p in PRIORITY_STEPS if p]
                out[q] = int(sum(client.llen(k) for k in keys))
            return out
        finally:
            client.close()
    folder = embedded_broker_dir(spool_root) / "queue"
    names = os.listdir(folder) if folder.is_dir() else []
    return {q: sum(1 for n in names if n.partition(".")[2] == f"{q}.msg") for q in queues}


class SpoolCollector(Collector):
    """Reads studies, outbox, dead letters, latencies (spool index), queue lengths (broker) and the workers'
    status files (device, model versions, batch sizes) at each scrape."""

    def __init__(self, spool_root: str, broker_url: str | None = None, queues: list[str] | None = None,
                 worker_interval_s: float = 10.0):
        self.spool_root = spool_root
        self.broker_url = broker_url
        self.queues = list(queues or ["cspine"])
        self.worker_interval_s = worker_interval_s

    def collect(self):  # noqa: ANN201 - prometheus-client protocol
        from node.spool import Spool, StudyState

        spool = Spool(self.spool_root)
        try:
            c = spool.counts()
            g = GaugeMetricFamily("cspine_studies", "Studies in the spool, by state", labels=["state"])
            for state, n in c["studies"].items():
                g.add_metric([state], n)
            yield g
            analysed = sum(n for s, n in c["studies"].items() if s in {StudyState.DONE, StudyState.SKIPPED})
            yield CounterMetricFamily("cspine_studies_analysed", "Studies whose newest analysis finished",
                                      value=analysed)
            q = GaugeMetricFamily("cspine_queue_depth", "Studies assembling or queued/running", labels=["stage"])
            for stage, n in c["queue"].items():
                q.add_metric([stage], n)
            yield q
            o = GaugeMetricFamily("cspine_outbox", "Result objects per destination and state",
                                  labels=["destination", "state"])
            for key, n in c["outbox"].items():
                dest, state = key.rsplit(":", 1)
                o.add_metric([dest, state], n)
            yield o
            d = CounterMetricFamily("cspine_failures", "Dead letters (analysis or delivery gave up)", labels=["kind"])
            for kind, n in c["dead_letters"].items():
                d.add_metric([kind], n)
            yield d
            buckets, total = _histogram(spool.analysis_latencies(), LATENCY_BUCKETS)
            yield HistogramMetricFamily("cspine_analysis_latency_seconds",
                                        "From study ready (dispatch) to analysis recorded (s)",
                                        buckets=buckets, sum_value=total)
            buckets, total = _histogram(spool.delivery_latencies(), LATENCY_BUCKETS)
            yield HistogramMetricFamily("cspine_delivery_latency_seconds",
                                        "From analysis recorded to all its objects delivered, per destination (s)",
                                        buckets=buckets, sum_value=total)
            h = HistogramMetricFamily("cspine_stage_seconds", "Seconds of each stage of a study (node.spool.stages)",
                                      labels=["stage"])
            for stage, values in spool.stage_times().items():
                buckets, total = _histogram(values, STAGE_BUCKETS)
                h.add_metric([stage], buckets, total)
            yield h
        finally:
            spool.close()
        ql = GaugeMetricFamily("cspine_celery_queue_length", "Tasks waiting in each Celery queue (broker)",
                               labels=["queue"])
        try:
            for name, n in queue_lengths(self.broker_url, self.spool_root, self.queues).items():
                ql.add_metric([name], n)
        except Exception:  # noqa: BLE001 - broker down: no samples this scrape (the node's health says why)
            pass
        yield ql
        yield from self._workers()

    def _workers(self):  # noqa: ANN202
        from node.worker_status import BATCH_BUCKETS, alive, read_statuses

        statuses = read_statuses(self.spool_root)
        live = [s for s in statuses if alive(s, self.worker_interval_s)]
        w = GaugeMetricFamily("cspine_workers", "Workers with a fresh status heartbeat, by torch device",
                              labels=["device"])
        for dev in sorted({str(s.get("device", "")) for s in live}):
            w.add_metric([dev], sum(1 for s in live if str(s.get("device", "")) == dev))
        yield w
        m = GaugeMetricFamily("cspine_model_info", "Model versions the running workers have used (value 1)",
                              labels=["pipeline", "model", "version"])
        seen = sorted({(x["pipeline"], x["model"], x["version"]) for s in live for x in s.get("models", [])})
        for labels in seen:
            m.add_metric(list(labels), 1)
        yield m
        counts: dict[int, int] = {}
        for s in statuses:
            for k, n in s.get("batch_sizes", {}).items():
                counts[int(k)] = counts.get(int(k), 0) + int(n)
        buckets = [(str(b), sum(n for k, n in counts.items() if k <= b)) for b in BATCH_BUCKETS]
        buckets.append(("+Inf", sum(counts.values())))
        yield HistogramMetricFamily("cspine_batch_size", "Radiographs per batched keypoint forward (all workers)",
                                    buckets=buckets, sum_value=sum(k * n for k, n in counts.items()))


_collector: SpoolCollector | None = None
_started: set[int] = set()


def serve_metrics(spool_root: str, port: int, host: str = "127.0.0.1", settings: NodeSettings | None = None) -> None:
    """Register the spool collector (once per process) and start the /metrics HTTP server (once per port)."""
    global _collector
    if _collector is None:
        _collector = SpoolCollector(spool_root)
        REGISTRY.register(_collector)
    _collector.spool_root = spool_root
    if settings is not None:
        _collector.broker_url = settings.broker_url
        _collector.queues = list(dict.fromkeys([settings.analyze_queue, settings.deliver_queue,
                                                *settings.consumed_queues]))
        _collector.worker_interval_s = settings.worker_status_interval_s
    if port in _started:
        return
    start_http_server(port, addr=host)
    _started.add(port)
