"""Prometheus metrics of the node, served on an HTTP ``/metrics`` port by ``cspine-node serve``.

Counters that happen in the receiving process (instances, bytes, rejections, associations) are plain
prometheus-client metrics. Everything the workers do (analyses, latency, delivery, dead letters) is read
from the spool index at scrape time by ``SpoolCollector``, so one endpoint reports the whole node even
when the workers are separate processes or machines.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

INSTANCES_RECEIVED = Counter(
    "cspine_instances_received", "Instances acknowledged with Success, by outcome (new/duplicate/replaced)", ["outcome"])
BYTES_RECEIVED = Counter("cspine_received_bytes", "Bytes of instances stored")
INSTANCES_REJECTED = Counter("cspine_instances_rejected", "C-STORE requests refused, by reason", ["reason"])
ASSOCIATIONS = Counter("cspine_associations", "Associations requested, by result", ["result"])
STORE_SECONDS = Histogram(
    "cspine_store_seconds", "Time to validate and durably store one instance (s)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
DISPATCHED = Counter("cspine_studies_dispatched", "Analysis tasks sent to the queue")

LATENCY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class SpoolCollector(Collector):
    """Reads studies, outbox, dead letters and latencies from the spool index at each scrape."""

    def __init__(self, spool_root: str):
        self.spool_root = spool_root

    def collect(self):  # noqa: ANN201 - prometheus-client protocol
        from node.spool import Spool

        spool = Spool(self.spool_root)
        try:
            c = spool.counts()
            g = GaugeMetricFamily("cspine_studies", "Studies in the spool, by state", labels=["state"])
            for state, n in c["studies"].items():
                g.add_metric([state], n)
            yield g
            analysed = sum(n for s, n in c["studies"].items() if s in {"done", "skipped"})
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
            lat = sorted(spool.analysis_latencies())
            buckets = [(str(b), sum(1 for x in lat if x <= b)) for b in LATENCY_BUCKETS] + [("+Inf", len(lat))]
            yield HistogramMetricFamily("cspine_analysis_latency_seconds",
                                        "From study ready (dispatch) to analysis recorded (s)",
                                        buckets=buckets, sum_value=sum(lat))
        finally:
            spool.close()


_collector: SpoolCollector | None = None
_started: set[int] = set()


def serve_metrics(spool_root: str, port: int, host: str = "127.0.0.1") -> None:
    """Register the spool collector (once per process) and start the /metrics HTTP server (once per port)."""
    global _collector
    if _collector is None:
        _collector = SpoolCollector(spool_root)
        REGISTRY.register(_collector)
    _collector.spool_root = spool_root
    if port in _started:
        return
    start_http_server(port, addr=host)
    _started.add(port)
