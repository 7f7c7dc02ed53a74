"""Prometheus metrics of a running pipeline, served on `runtime.metrics_port`.

Two kinds of numbers, two ways in:
  - events the pipeline sees once (a tick, a backend call) are observed as they happen, from the pipeline's output
    thread (never a capture thread): `observe_tick`, `observe_inference`, `publish_failed`;
  - what sources and the publisher already count (samples, drops by reason, clock offset and drift, queue depth,
    publish failures) is kept as the latest snapshot (`observe_source_stats`, `observe_publisher`, a dict copy at
    the monitoring rate) and turned into metrics at scrape time by a custom collector, so those counters read
    exactly what was counted and the hot path does nothing more.

Names follow Prometheus conventions: base units (`_seconds`), `_total` counters, labels of low cardinality only
(device, source, group, modality, stage, reason, backend). Every metric carries `device` (runtime.device_id), so
one Prometheus scraping a fleet tells the boxes apart without relabelling. Each RuntimeMetrics has its own registry (never the global one),
so several pipelines, and tests, share a process.

    metrics = RuntimeMetrics()
    metrics.start_http(9100)          # http://127.0.0.1:9100/metrics
"""

from __future__ import annotations

import numbers
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from edgefuse._optional import require

prom = require("prometheus_client", "the Prometheus exporter (runtime.metrics_port)")
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402

# Pipeline stages take 0.1 ms (a queue hand-off) to a few hundred ms (a slow CPU inference); Prometheus' default
# buckets start at 5 ms and would put every fast stage in the first bucket.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RATE_WINDOW_S = 5.0  # the measured sample rate covers about this long: steady at a 2 Hz monitor rate


class RuntimeMetrics:
    """The runtime's metrics on a private registry; `start_http(port)` serves them for Prometheus to scrape."""

    def __init__(self, registry: CollectorRegistry | None = None, device: str | None = None):
        from edgefuse.spec import default_device_id

        self.device = device or default_device_id()
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ticks = prom.Counter("edgefuse_ticks", "Fusion ticks run.", ["device", "group"], registry=r)
        self.stage_latency = prom.Histogram(
            "edgefuse_stage_latency_seconds", "Time spent per tick in each pipeline stage.", ["device", "stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_latency = prom.Histogram(
            "edgefuse_inference_latency_seconds", "Time of one backend call (one batch).", ["device", "backend"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.anomaly_score = prom.Gauge(
            "edgefuse_anomaly_score", "The latest fused anomaly score (validation-std units).", ["device", "group"],
            registry=r,
        )  # fmt: skip
        self.anomaly_alerts = prom.Counter(
            "edgefuse_anomaly_alerts", "Ticks whose fused anomaly score exceeded the threshold.", ["device", "group"],
            registry=r,
        )  # fmt: skip
        self.batch_size = prom.Histogram(
            "edgefuse_inference_batch_size",
            "Ticks per backend call.",
            ["device"],
            buckets=(1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self.present = prom.Gauge(
            "edgefuse_modality_present", "1 if the modality was present in the group's last tick.",
            ["device", "group", "modality"], registry=r,
        )  # fmt: skip
        self.missing = prom.Counter(
            "edgefuse_modality_missing_ticks", "Ticks in which the modality was missing.", ["device", "group", "modality"],
            registry=r,
        )  # fmt: skip
        self._sources: dict[str, dict[str, Any]] = {}
        self._rate_points: dict[str, deque[tuple[float, float]]] = {}
        self._publish_failed: dict[str, int] = {}  # counted here by publish_failed()
        self._publisher_failures: dict[str, int] = {}  # the publisher's own counts (observe_publisher)
        self._lock = threading.Lock()
        self._server: Any = None
        r.register(_SnapshotCollector(self))

    # events ---------------------------------------------------------------------------------------------------------
    def observe_tick(
        self, group: str, latency_s_by_stage: Mapping[str, float], mask_by_modality: Mapping[str, float]
    ) -> None:
        """One fusion tick of `group`: seconds per stage (e.g. sync, infer, publish, e2e) and the presence mask."""
        d = self.device
        self.ticks.labels(d, group).inc()
        for stage, seconds in latency_s_by_stage.items():
            self.stage_latency.labels(d, stage).observe(seconds)
        for modality, present in mask_by_modality.items():
            ok = float(present) > 0.5
            self.present.labels(d, group, modality).set(1.0 if ok else 0.0)
            if not ok:
                self.missing.labels(d, group, modality).inc()

    def observe_anomaly(self, group: str, score: float, alert: bool) -> None:
        """One tick's fused anomaly score (a gauge) and whether it alerted (a counter)."""
        self.anomaly_score.labels(self.device, group).set(score)
        if alert:
            self.anomaly_alerts.labels(self.device, group).inc()

    def observe_inference(self, seconds: float, batch: int = 1, backend: str = "") -> None:
        """One backend call that ran `batch` ticks in `seconds`."""
        self.inference_latency.labels(self.device, backend).observe(seconds)
        self.batch_size.labels(self.device).observe(batch)

    def publish_failed(self, reason: str = "send") -> None:
        """One message the publisher could not send (reason "slow_subscriber", "encode", "send", "closed")."""
        with self._lock:
            self._publish_failed[reason] = self._publish_failed.get(reason, 0) + 1

    def observe_publisher(self, failures: Mapping[str, int]) -> None:
        """The publisher's own cumulative failure counts by reason (Publisher.failures), read as a snapshot."""
        with self._lock:
            self._publisher_failures = dict(failures)

    def observe_source_stats(self, source: str, stats: Mapping[str, Any], now: float | None = None) -> None:
        """Keep a source's latest stats snapshot (Pipeline.source_stats()[sid]); it is exposed at the next scrape.

        Keys read, all optional (cumulative counts unless said): samples, drops (gaps in the sensor's own sequence:
        reason "sensor_gap"), overflows (device buffer overruns: "overflow"), dropped ({reason: count} counted by the
        pipeline: queue_full, late, seq_gap, invalid), rejected ({reason: count} of refused sensor messages:
        "rejected_<reason>"), reconnects, errors, clock_jumps, and now-values queue_depth, clock_offset_ms,
        clock_drift_ppm. The sample rate is measured here from the sample count over the last RATE_WINDOW_S.
        """
        now = time.monotonic() if now is None else now
        snap = dict(stats)
        samples = snap.get("samples")
        with self._lock:
            if _is_num(samples):
                pts = self._rate_points.setdefault(source, deque())
                pts.append((now, float(samples)))
                while len(pts) > 2 and now - pts[1][0] >= RATE_WINDOW_S:
                    pts.popleft()
                (t0, n0), (t1, n1) = pts[0], pts[-1]
                if t1 > t0 and n1 >= n0:
                    snap["rate_hz"] = (n1 - n0) / (t1 - t0)
            self._sources[source] = snap

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        """(source stats by source, publish failures by reason), as the collector reads them."""
        with self._lock:
            failures = dict(self._publisher_failures)
            for reason, n in self._publish_failed.items():
                failures[reason] = failures.get(reason, 0) + n
            return dict(self._sources), failures

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


class _SnapshotCollector(Collector):
    """Turns the latest source stats and publisher counts into metric families at scrape time."""

    def __init__(self, metrics: RuntimeMetrics):
        self.metrics = metrics

    def describe(self) -> list:  # no fixed description: families appear when sources report
        return []

    def collect(self) -> Iterator[Any]:
        sources, publish_failures = self.metrics.snapshot()
        d = self.metrics.device
        src = ["device", "source"]
        samples = CounterMetricFamily("edgefuse_source_samples", "Samples delivered per source.", labels=src)
        rate = GaugeMetricFamily(
            "edgefuse_source_rate_hz", f"Sample rate over the last {RATE_WINDOW_S:g} s.", labels=src
        )
        drops = CounterMetricFamily("edgefuse_drops", "Samples lost, by source and reason.", labels=[*src, "reason"])
        depth = GaugeMetricFamily("edgefuse_queue_depth", "Samples waiting in the source's queue.", labels=src)
        offset = GaugeMetricFamily("edgefuse_clock_offset_seconds", "Host minus sensor clock (fitted).", labels=src)
        drift = GaugeMetricFamily("edgefuse_clock_drift_ppm", "Sensor clock rate error vs the host clock.", labels=src)
        jumps = CounterMetricFamily("edgefuse_clock_jumps", "Sensor clock steps detected.", labels=src)
        reconnects = CounterMetricFamily("edgefuse_source_reconnects", "Device reconnects.", labels=src)
        errors = CounterMetricFamily("edgefuse_source_errors", "Device or message errors.", labels=src)
        failures = CounterMetricFamily(
            "edgefuse_publish_failures", "Messages not sent, by reason.", labels=["device", "reason"]
        )
        connected = GaugeMetricFamily("edgefuse_source_connected", "1 while the device is open.", labels=src)
        unpaced = CounterMetricFamily("edgefuse_source_unpaced", "Times flagged off real-time pace.", labels=src)
        pace = GaugeMetricFamily("edgefuse_source_pace_ratio", "Delivered rate / nominal rate.", labels=src)
        for source, s in sorted(sources.items()):
            _add(samples, [d, source], s.get("samples"))
            _add(rate, [d, source], s.get("rate_hz"))
            _add(depth, [d, source], s.get("queue_depth"))
            offset_ms = s.get("clock_offset_ms")
            _add(offset, [d, source], offset_ms / 1e3 if _is_num(offset_ms) else None)
            _add(drift, [d, source], s.get("clock_drift_ppm"))
            _add(jumps, [d, source], s.get("clock_jumps"))
            _add(reconnects, [d, source], s.get("reconnects"))
            _add(errors, [d, source], s.get("errors"))
            if isinstance(s.get("connected"), bool):
                _add(connected, [d, source], int(s["connected"]))
            _add(unpaced, [d, source], s.get("unpaced"))
            _add(pace, [d, source], s.get("pace_ratio"))
            for reason, n in sorted(drop_reasons(s).items()):
                _add(drops, [d, source, reason], n)
        for reason, n in sorted(publish_failures.items()):
            _add(failures, [d, reason], n)
        yield from (samples, rate, drops, depth, offset, drift, jumps, reconnects, errors, failures, connected)
        yield from (unpaced, pace)


def drop_reasons(stats: Mapping[str, Any]) -> dict[str, float]:
    """{reason: cumulative count} of one source's losses, from the source's counters and the pipeline's."""
    out: dict[str, float] = {}
    for key, reason in (("drops", "sensor_gap"), ("overflows", "overflow")):
        if _is_num(stats.get(key)):
            out[reason] = stats[key]
    for reason, n in (stats.get("dropped") or {}).items():
        out[str(reason)] = out.get(str(reason), 0) + n
    for reason, n in (stats.get("rejected") or {}).items():
        out[f"rejected_{reason}"] = n
    return {r: n for r, n in out.items() if _is_num(n)}


def _is_num(value: Any) -> bool:
    # numbers.Real also takes NumPy scalars, which sources may report
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _add(family: Any, labels: list[str], value: Any) -> None:
    if _is_num(value):
        family.add_metric(labels, float(value))
