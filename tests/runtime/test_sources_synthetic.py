"""Synthetic sources: one shared world, device-like timing, sensor clocks through ClockFit, ground truth in meta."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.runtime.clock import monotonic_ns
from edgefuse.runtime.sources import make_sources
from edgefuse.spec import load_spec

CONFIGS = "configs"


def run_virtual(sources, seconds: float, step_s: float = 0.1) -> dict[str, list]:
    for s in sources.values():
        s.open()
    got: dict[str, list] = {sid: [] for sid in sources}
    for _ in range(round(seconds / step_s)):
        for sid, s in sources.items():  # in lockstep, as a pipeline stepping a virtual clock would
            got[sid] += s.read(step_s)
    return got


@pytest.fixture(scope="module")
def home():
    spec = load_spec(f"{CONFIGS}/smart_home.yaml")
    sources = make_sources(spec, seed=3, realtime=False)
    return spec, sources, run_virtual(sources, 12.0)


def test_counts_rates_and_shapes_on_the_virtual_clock(home):
    _, sources, got = home
    assert len(got["camera"]) == 120 and got["camera"][0].data.shape == (64, 64, 3)
    assert got["camera"][0].data.dtype == np.uint8
    assert len(got["mic"]) == 374  # 32 ms blocks (blocksize 512) that ended (+2 ms) within 12 s
    assert got["mic"][0].data.shape == (512, 1) and got["mic"][0].rate_hz == 16000
    assert len(got["env"]) == 120 and got["env"][0].data.shape == (1, 6)
    for sid, samples in got.items():
        assert [s.seq for s in samples] == list(range(len(samples)))
        assert all(s.t_arrival_ns >= s.t_capture_ns for s in samples)
        assert sources[sid].stats()["samples"] == len(samples)
    np.testing.assert_array_equal(np.diff([s.t_capture_ns for s in got["mic"]]), 32_000_000)
    assert sources["mic"].now_ns() == sources["mic"].world.t0_ns + 12_000_000_000


def test_streams_are_the_worlds_episodes_across_boundaries(home):
    _, sources, got = home
    world = sources["mic"].world
    audio = np.concatenate([s.data for s in got["mic"]])  # (N, 1)
    assert world.episode_s == 8.0  # live episodes: the 4 s window twice (live_episode_s)
    n = 8 * 16000  # audio rows per episode
    np.testing.assert_array_equal(audio[:n], world.episode(0)["mic"][:n])
    np.testing.assert_array_equal(audio[n : n + 48000], world.episode(1)["mic"][:48000])  # 3 s into episode 1
    np.testing.assert_array_equal(got["camera"][81].data, world.episode(1)["camera"][1])  # 10 Hz: frame 80 starts ep 1
    assert sources["camera"].world is world and sources["env"].world is world


def test_series_sensor_clock_is_fitted_back_onto_the_host_clock(home):
    _, sources, got = home
    env = sources["env"]
    err_ms = np.array([(s.t_capture_ns - s.meta["t_true_ns"]) / 1e6 for s in got["env"]])
    assert abs(env.sensor_offset_ns) > 1e7  # the sensor clock really is off by more than 10 ms
    assert np.abs(err_ms[30:]).max() < 1.5  # but capture times land within the path's minimum delay
    assert env.stats()["clock_drift_ppm"] == pytest.approx(env.sensor_drift * 1e6, abs=8)


def test_ground_truth_labels(home):
    spec, sources, got = home
    world = sources["env"].world
    for s in got["camera"][::7]:
        assert s.meta["labels"] == world.episode_labels(s.meta["t_true_ns"])
        assert s.meta["labels"]["event"] in spec.labels["event"]
    t0 = world.t0_ns
    assert world.labels_at(t0 + 4_500_000_000) == world.labels(0)  # window [0.5, 4.5] s inside episode 0
    assert world.labels_at(t0 + 7_900_000_000) == world.labels(0)  # [3.9, 7.9] s: still episode 0
    assert world.labels_at(t0 + 8_500_000_000) is None  # window straddles episodes 0 and 1 (8 s each)
    assert world.labels_at(t0 + 12_500_000_000) == world.labels(1)
    rows = world.timeline(t0, t0 + 12_000_000_000)
    assert [(a - t0, b - t0) for a, b, _ in rows] == [(0, 8e9), (8e9, 12e9)]


def test_same_seed_same_streams(home):
    spec, _, got = home
    again = run_virtual(make_sources(spec, seed=3, realtime=False), 2.0)
    for sid in ("camera", "mic", "env"):
        for a, b in zip(again[sid], got[sid], strict=False):
            np.testing.assert_array_equal(a.data, b.data)


def test_realtime_pacing():
    spec = load_spec(f"{CONFIGS}/smart_home.yaml")
    mic = make_sources(spec, realtime=True)["mic"]
    mic.open()
    lateness_ms, got = [], []
    t_end = monotonic_ns() + 400_000_000
    while monotonic_ns() < t_end:
        for s in mic.read(0.05):
            lateness_ms.append((monotonic_ns() - s.t_arrival_ns) / 1e6)
            got.append(s)
    t_done = monotonic_ns()  # the last read may return up to 50 ms past t_end
    # blocks (32 ms, arriving 2 ms after their end) come when due on the world's clock: none early, none held back
    block_ns = round(spec.modalities["mic"].source.blocksize / spec.modalities["mic"].rate_hz * 1e9)
    assert block_ns == 32_000_000
    due = (t_end - mic.world.t0_ns - 2_000_000) // block_ns  # arrived by t_end
    due_done = (t_done - mic.world.t0_ns - 2_000_000) // block_ns  # arrived by the time the reads ended
    assert due - 2 <= len(got) <= due_done
    assert min(lateness_ms) >= 0 and max(lateness_ms) < 200  # late only by scheduling: episode 0 rendered up front


def test_realtime_world_renders_the_next_episode_in_the_background():
    from edgefuse.runtime.sources.synthetic import World

    spec = load_spec(f"{CONFIGS}/smart_home.yaml")
    live = World(spec, seed=5, episode_s=1.0, prefetch=True)  # renders episode 0 before its clock starts
    t0 = live.t0_ns
    assert live._cache[0].done() and 1 in live._cache  # asking for 0 started 1 on the renderer thread
    ep1 = live._cache[1].result(timeout=30)
    assert live.episode(1) is ep1 and 2 in live._cache  # nobody renders twice; playing 1 starts 2
    offline = World(spec, seed=5, t0_ns=t0, episode_s=1.0)  # on demand, in the caller
    for k in (0, 1, 2):  # the same episodes whichever thread rendered them
        a, b = live.episode(k), offline.episode(k)
        assert live.labels(k) == offline.labels(k)
        assert all(np.array_equal(np.asarray(a[m]), np.asarray(b[m])) for m in ("mic", "env"))
        assert all(np.array_equal(x, y) for x, y in zip(a["camera"], b["camera"], strict=True))
    live.close()  # stops prefetching; later episodes render on demand
    assert np.array_equal(np.asarray(live.episode(6)["mic"]), np.asarray(offline.episode(6)["mic"]))
    assert 7 not in live._cache


def test_text_and_an_optional_camera():
    spec = load_spec(f"{CONFIGS}/customer_service.yaml")
    got = run_virtual(make_sources(spec, seed=1, realtime=False), 30.0, step_s=0.5)
    texts = got["transcript"]
    assert len(texts) >= 5 and all(isinstance(s.data, str) and s.data for s in texts)
    assert all(s.t_arrival_ns - s.t_capture_ns == 150_000_000 for s in texts)
    assert 0 < len(got["camera"]) <= 150  # 5 fps at most; absent in some episodes
    assert len(got["voice"]) > 0 and got["voice"][0].data.shape == (256, 1)  # 32 ms blocks at 8 kHz


def test_groups_get_prefixed_ids_and_their_own_world():
    spec = load_spec(f"{CONFIGS}/smart_home.yaml")
    a = make_sources(spec, group="g0", realtime=False)
    b = make_sources(spec, group="g1", seed=1, realtime=False)
    assert sorted(a) == ["g0/camera", "g0/env", "g0/mic"] and a["g0/mic"].modality == "mic"
    assert a["g0/mic"].world is a["g0/env"].world and a["g0/mic"].world is not b["g1/mic"].world
    assert run_virtual(a, 0.5)["g0/env"][0].source == "g0/env"
