"""RuntimeMetrics: real observations, a real HTTP exporter on 127.0.0.1, the exposition text parsed back."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgefuse.runtime.metrics import LATENCY_BUCKETS, RuntimeMetrics  # noqa: E402


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """GET /metrics and parse it: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics():
    m = RuntimeMetrics()
    yield m
    m.close()


def test_ticks_latency_presence_and_failures_are_scraped(metrics):
    metrics.observe_tick("g0", {"sync": 0.0004, "infer": 0.003}, {"camera": 1.0, "mic": 1.0, "env": 0.0})
    metrics.observe_tick("g0", {"sync": 0.0002, "infer": 0.004}, {"camera": 0.0, "mic": 1.0, "env": 0.0})
    metrics.observe_inference(0.0035, batch=2, backend="onnxruntime")
    metrics.publish_failed("hwm")
    port = metrics.start_http(0)
    got = scrape(port)

    assert got[("edgefuse_ticks_total", (("group", "g0"),))] == 2
    # the last tick's mask is the gauge; every missing tick is counted
    assert got[("edgefuse_modality_present", (("group", "g0"), ("modality", "camera")))] == 0
    assert got[("edgefuse_modality_present", (("group", "g0"), ("modality", "mic")))] == 1
    assert got[("edgefuse_modality_missing_ticks_total", (("group", "g0"), ("modality", "env")))] == 2
    assert got[("edgefuse_modality_missing_ticks_total", (("group", "g0"), ("modality", "camera")))] == 1
    sync = (("stage", "sync"),)
    assert got[("edgefuse_stage_latency_seconds_count", sync)] == 2
    assert got[("edgefuse_stage_latency_seconds_sum", sync)] == pytest.approx(0.0006)
    # both sync observations (0.2 ms, 0.4 ms) are under the 0.5 ms bucket, none under 0.1 ms: ms-scale buckets
    assert got[("edgefuse_stage_latency_seconds_bucket", (("le", "0.0005"), ("stage", "sync")))] == 2
    assert got[("edgefuse_stage_latency_seconds_bucket", (("le", "0.0001"), ("stage", "sync")))] == 0
    assert got[("edgefuse_inference_latency_seconds_count", (("backend", "onnxruntime"),))] == 1
    assert got[("edgefuse_inference_batch_size_sum", ())] == 2
    assert got[("edgefuse_publish_failures_total", (("reason", "hwm"),))] == 1
    assert LATENCY_BUCKETS[0] == 0.0001 and 0.25 in LATENCY_BUCKETS


def test_source_stats_are_exposed_as_counted_at_scrape_time(metrics):
    port = metrics.start_http(0)
    # Source.stats() as a source returns it, NumPy scalars included
    stats = {"samples": 120, "drops": 3, "overflows": 1, "reconnects": 2, "errors": 0, "rate_hz": np.float64(9.8)}
    metrics.observe_source_stats("camera", {**stats, "queue_depth": np.int64(4)})
    metrics.observe_source_stats("env", {"samples": 40, "clock_offset_s": -0.0125, "clock_drift_ppm": 35.5})
    got = scrape(port)
    cam = (("source", "camera"),)
    assert got[("edgefuse_source_samples_total", cam)] == 120
    assert got[("edgefuse_source_rate_hz", cam)] == pytest.approx(9.8)
    assert got[("edgefuse_drops_total", (("reason", "seq_gap"), ("source", "camera")))] == 3
    assert got[("edgefuse_drops_total", (("reason", "overflow"), ("source", "camera")))] == 1
    assert got[("edgefuse_queue_depth", cam)] == 4
    assert got[("edgefuse_source_reconnects_total", cam)] == 2
    assert got[("edgefuse_clock_offset_seconds", (("source", "env"),))] == pytest.approx(-0.0125)
    assert got[("edgefuse_clock_drift_ppm", (("source", "env"),))] == pytest.approx(35.5)
    assert ("edgefuse_clock_offset_seconds", cam) not in got  # a source without a clock fit reports none

    # a newer snapshot replaces the old one: counters read exactly what the source counted
    metrics.observe_source_stats("camera", {**stats, "samples": 250, "drops": {"seq_gap": 5, "queue_full": 7}})
    got = scrape(port)
    assert got[("edgefuse_source_samples_total", cam)] == 250
    assert got[("edgefuse_drops_total", (("reason", "queue_full"), ("source", "camera")))] == 7
    assert got[("edgefuse_drops_total", (("reason", "seq_gap"), ("source", "camera")))] == 5


def test_two_pipelines_in_one_process_have_separate_registries():
    a, b = RuntimeMetrics(), RuntimeMetrics()
    try:
        a.observe_tick("main", {}, {})
        pa, pb = a.start_http(0), b.start_http(0)
        assert pa != pb
        assert scrape(pa)[("edgefuse_ticks_total", (("group", "main"),))] == 1
        assert ("edgefuse_ticks_total", (("group", "main"),)) not in scrape(pb)
    finally:
        a.close()
        b.close()
