"""Prometheus metrics of a running pipeline, served on `runtime.metrics_port`.

Two kinds of numbers, two ways in:
  - events the pipeline sees once (a tick, an inference, a failed publish) are observed as they happen, from the
    pipeline's own (non-capture) threads: `observe_tick`, `observe_inference`, `publish_failed`;
  - what the sources already count (samples, drops by reason, clock offset and drift, queue depth) is kept as the
    latest snapshot (`observe_source_stats`, one dict assignment) and turned into metrics at scrape time by a custom
    collector, so the source counters are exposed exactly as the sources count them and the hot path does nothing.

Each RuntimeMetrics has its own registry (never the global one), so several pipelines (and tests) share a process.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from edgefuse._optional import require

prom = require("prometheus_client", "the Prometheus exporter (runtime.metrics_port)")
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402

# Pipeline stages take 0.1 ms (a queue hand-off) to a few hundred ms (a slow CPU inference); Prometheus' default
# buckets start at 5 ms and would put every fast stage in the first bucket.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class RuntimeMetrics:
    """The runtime's metrics on a private registry; `start_http(port)` serves them for Prometheus to scrape."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ticks = prom.Counter("edgefuse_ticks", "Fusion ticks run.", ["group"], registry=r)
        self.stage_latency = prom.Histogram(
            "edgefuse_stage_latency_seconds", "Time spent per tick in each pipeline stage.", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_latency = prom.Histogram(
            "edgefuse_inference_latency_seconds", "Time of one backend call (one batch).", ["backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = prom.Histogram(
            "edgefuse_inference_batch_size", "Ticks per backend call.", buckets=(1, 2, 4, 8, 16, 32), registry=r
        )
        self.present = prom.Gauge(
            "edgefuse_modality_present", "1 if the modality was present in the group's last tick.",
            ["group", "modality"], registry=r,
        )  # fmt: skip
        self.missing = prom.Counter(
            "edgefuse_modality_missing_ticks", "Ticks in which the modality was missing.", ["group", "modality"],
            registry=r,
        )  # fmt: skip
        self.publish_failures = prom.Counter(
            "edgefuse_publish_failures", "Messages the publisher could not send.", ["reason"], registry=r
        )
        self._sources: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        r.register(_SourceCollector(self))

    # events ---------------------------------------------------------------------------------------------------------
    def observe_tick(
        self, group: str, latency_s_by_stage: Mapping[str, float], mask_by_modality: Mapping[str, float]
    ) -> None:
        """One fusion tick of `group`: seconds per stage (e.g. sync, infer, publish, e2e) and the presence mask."""
        self.ticks.labels(group).inc()
        for stage, seconds in latency_s_by_stage.items():
            self.stage_latency.labels(stage).observe(seconds)
        for modality, present in mask_by_modality.items():
            ok = float(present) > 0.5
            self.present.labels(group, modality).set(1.0 if ok else 0.0)
            if not ok:
                self.missing.labels(group, modality).inc()

    def observe_inference(self, seconds: float, batch: int = 1, backend: str = "") -> None:
        """One backend call that ran `batch` ticks in `seconds`."""
        self.inference_latency.labels(backend).observe(seconds)
        self.batch_size.observe(batch)

    def publish_failed(self, reason: str = "send") -> None:
        """The publisher dropped a message (e.g. reason="hwm" when the send queue is full, "encode", "send")."""
        self.publish_failures.labels(reason).inc()

    def observe_source_stats(self, source: str, stats: Mapping[str, Any]) -> None:
        """Keep a source's latest stats() snapshot; it is exposed at the next scrape.

        Takes Source.stats() as it is. Keys read (all optional, cumulative counts unless said): samples, rate_hz
        (measured), drops (sequence gaps: reason "seq_gap"; or a map {reason: count}), overflows (reason "overflow"),
        queue_drops (reason "queue_full"), late (reason "late"), reconnects, errors, queue_depth (now),
        clock_offset_s (host minus sensor clock, now), clock_drift_ppm (now).
        """
        with self._lock:
            self._sources[source] = dict(stats)

    def source_snapshot(self) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            return dict(self._sources)

    # serving --------------------------------------------------------------------------------------------------------
    def start_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port in a daemon thread; returns the bound port (port 0 picks a free one)."""
        server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP server, if started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SourceCollector(Collector):
    """Turns the sources' latest stats snapshots into metric families at scrape time."""

    def __init__(self, metrics: RuntimeMetrics):
        self.metrics = metrics

    def describe(self) -> list:  # no fixed description: families appear when sources report
        return []

    def collect(self) -> Iterator[Any]:
        snap = self.metrics.source_snapshot()
        samples = CounterMetricFamily("edgefuse_source_samples", "Samples received per source.", labels=["source"])
        rate = GaugeMetricFamily("edgefuse_source_rate_hz", "Measured sample rate per source.", labels=["source"])
        drops = CounterMetricFamily("edgefuse_drops", "Samples dropped, by reason.", labels=["source", "reason"])
        depth = GaugeMetricFamily("edgefuse_queue_depth", "Samples waiting in the source queue.", labels=["source"])
        offset = GaugeMetricFamily(
            "edgefuse_clock_offset_seconds", "Source clock minus host monotonic clock.", labels=["source"]
        )
        drift = GaugeMetricFamily("edgefuse_clock_drift_ppm", "Source clock drift vs host clock.", labels=["source"])
        reconnects = CounterMetricFamily("edgefuse_source_reconnects", "Device reconnects.", labels=["source"])
        errors = CounterMetricFamily("edgefuse_source_errors", "Device or message errors.", labels=["source"])
        for source, s in sorted(snap.items()):
            _add(samples, source, s.get("samples"))
            _add(rate, source, s.get("rate_hz"))
            _add(depth, source, s.get("queue_depth"))
            _add(offset, source, s.get("clock_offset_s"))
            _add(drift, source, s.get("clock_drift_ppm"))
            _add(reconnects, source, s.get("reconnects"))
            _add(errors, source, s.get("errors"))
            for reason, n in sorted(drop_reasons(s).items()):
                _add(drops, source, n, reason)
        yield from (samples, rate, drops, depth, offset, drift, reconnects, errors)


# source stats key -> drop reason label (a source counts sequence gaps as "drops" and ring overflows as "overflows")
DROP_KEYS = {"drops": "seq_gap", "overflows": "overflow", "queue_drops": "queue_full", "late": "late"}


def drop_reasons(stats: Mapping[str, Any]) -> dict[str, float]:
    """{reason: cumulative count} from one source's stats; a `drops` map is taken as already split by reason."""
    out: dict[str, float] = {}
    for key, reason in DROP_KEYS.items():
        value = stats.get(key)
        if isinstance(value, Mapping):
            out.update({str(r): n for r, n in value.items()})
        elif value is not None:
            out[reason] = value
    return out


def _add(family: Any, source: str, value: Any, *extra: str) -> None:
    # numbers.Real also takes NumPy scalars, which sources may report
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        family.add_metric([source, *extra], float(value))
