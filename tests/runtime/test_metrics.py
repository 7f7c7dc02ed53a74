"""RuntimeMetrics: real observations, a real HTTP exporter on 127.0.0.1, the exposition text parsed back."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgefuse.runtime.metrics import LATENCY_BUCKETS, RuntimeMetrics  # noqa: E402
from edgefuse.runtime.queues import Drops, SampleQueue  # noqa: E402
from edgefuse.runtime.sources import make_sources  # noqa: E402
from edgefuse.spec import default_device_id, load_spec  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


DEVICE = "box-7"


def scrape(port: int, device: str = DEVICE) -> dict[tuple[str, tuple], float]:
    """GET /metrics and parse it: {(sample name, sorted labels but device): value}; every edgefuse sample must
    carry the device label."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            if s.name.startswith("edgefuse_"):
                assert labels.pop("device", None) == device, (s.name, s.labels)
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


@pytest.fixture
def metrics():
    m = RuntimeMetrics(device=DEVICE)
    yield m
    m.close()


def test_ticks_latency_presence_and_failures_are_scraped(metrics):
    metrics.observe_tick("g0", {"sync": 0.0004, "infer": 0.003}, {"camera": 1.0, "mic": 1.0, "env": 0.0})
    metrics.observe_tick("g0", {"sync": 0.0002, "infer": 0.004}, {"camera": 0.0, "mic": 1.0, "env": 0.0})
    metrics.observe_inference(0.0035, batch=2, backend="onnxruntime")
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
    assert LATENCY_BUCKETS[0] == 0.0001 and 0.25 in LATENCY_BUCKETS


def test_source_stats_from_real_sources_are_exposed_at_scrape_time(metrics):
    spec = load_spec(CONFIGS / "smart_home.yaml")
    sources = make_sources(spec, realtime=False)  # synthetic streams on a virtual clock: no waiting
    drops = Drops()
    queue = SampleQueue(4, "camera", drops)
    for src in sources.values():
        src.open()
    for sid, src in sources.items():
        for s in src.read(1.0):
            if sid == "camera":
                queue.put(s)  # 10 frames into a 4-deep queue: 6 dropped as queue_full
    port = metrics.start_http(0)
    for t, (sid, src) in enumerate(sources.items()):
        st = {**src.stats(), "queue_depth": len(queue), "dropped": drops.by_source().get(sid, {})}
        metrics.observe_source_stats(sid, st, now=float(t))
    got = scrape(port)

    cam, env = (("source", "camera"),), (("source", "env"),)
    assert got[("edgefuse_source_samples_total", cam)] == sources["camera"].stats()["samples"] == 10
    assert got[("edgefuse_drops_total", (("reason", "queue_full"), ("source", "camera")))] == 6
    assert got[("edgefuse_drops_total", (("reason", "sensor_gap"), ("source", "camera")))] == 0
    assert got[("edgefuse_queue_depth", cam)] == 4
    # the synthetic env sensor has its own drifting clock, fitted like a networked sensor's
    fit = sources["env"].stats()
    assert got[("edgefuse_clock_offset_seconds", env)] == pytest.approx(fit["clock_offset_ms"] / 1e3)
    assert got[("edgefuse_clock_drift_ppm", env)] == pytest.approx(fit["clock_drift_ppm"])
    assert ("edgefuse_clock_offset_seconds", cam) not in got  # a camera has no clock fit to report

    # the rate is measured from the sample counts between snapshots: 10 more frames in 0.5 s -> 20 Hz
    cam_stats = sources["camera"].stats()
    metrics.observe_source_stats("camera", {**cam_stats, "samples": cam_stats["samples"] + 10}, now=0.5)
    assert ("edgefuse_source_rate_hz", cam) not in got  # one snapshot: no rate yet
    assert scrape(port)[("edgefuse_source_rate_hz", cam)] == pytest.approx(20.0)


def test_publish_failures_counted_here_and_by_the_publisher_add_up(metrics):
    metrics.publish_failed("hwm")
    metrics.observe_publisher({"hwm": 3, "encode": 1})  # Publisher.failures, cumulative
    port = metrics.start_http(0)
    got = scrape(port)
    assert got[("edgefuse_publish_failures_total", (("reason", "hwm"),))] == 4
    assert got[("edgefuse_publish_failures_total", (("reason", "encode"),))] == 1
    metrics.observe_publisher({"hwm": 5, "encode": 1})  # a newer snapshot replaces the old one
    assert scrape(port)[("edgefuse_publish_failures_total", (("reason", "hwm"),))] == 6


def test_two_pipelines_in_one_process_have_separate_registries():
    a, b = RuntimeMetrics(device="a"), RuntimeMetrics()  # b: the default device id, the host name
    try:
        a.observe_tick("main", {}, {})
        b.observe_tick("main", {}, {})
        b.observe_tick("main", {}, {})
        pa, pb = a.start_http(0), b.start_http(0)
        assert pa != pb
        assert scrape(pa, "a")[("edgefuse_ticks_total", (("group", "main"),))] == 1
        assert scrape(pb, default_device_id())[("edgefuse_ticks_total", (("group", "main"),))] == 2
    finally:
        a.close()
        b.close()


def test_a_missing_or_unpaced_device_shows_in_the_metrics(metrics, tmp_path):
    from edgefuse.spec import parse_spec

    spec = parse_spec({"name": "t", "labels": {"e": ["a", "b"]},
                       "modalities": {"camera": {"kind": "image", "rate_hz": 10, "shape": [8, 8],
                                                 "source": {"type": "camera", "uri": str(tmp_path / "none.mp4")}}},
                       "model": {"encoders": {"camera": {"type": "dwcnn"}}}})  # fmt: skip
    cam = make_sources(spec)["camera"]
    cam.open()  # no such file: masked
    port = metrics.start_http(0)
    metrics.observe_source_stats("camera", cam.stats(), now=0.0)
    # a flagged device's counters, as CameraSource/MicrophoneSource report them after a flood
    metrics.observe_source_stats("mic", {"connected": True, "unpaced": 2, "pace_ratio": 1004.1}, now=0.0)
    got = scrape(port)
    assert got[("edgefuse_source_connected", (("source", "camera"),))] == 0
    assert got[("edgefuse_source_connected", (("source", "mic"),))] == 1
    assert got[("edgefuse_source_unpaced_total", (("source", "mic"),))] == 2
    assert got[("edgefuse_source_pace_ratio", (("source", "mic"),))] == pytest.approx(1004.1)
    assert ("edgefuse_source_pace_ratio", (("source", "camera"),)) not in got  # never measured: no sample
