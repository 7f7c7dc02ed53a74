"""The synchronizer on synthetic timestamps: policies, resampling, budget, late samples, bounded history."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.errors import DataError
from edgefuse.runtime.clock import Sample
from edgefuse.runtime.queues import Drops
from edgefuse.runtime.sync import NS, Synchronizer, _Ring, drive, windows_from_session
from edgefuse.spec import SpecError, parse_spec

MS = 1_000_000


def make_spec(**runtime) -> object:
    data = {
        "name": "tiny",
        "modalities": {
            "cam": {
                "kind": "image",
                "rate_hz": 10,
                "shape": [8, 8],
                "channels": 3,
                "sync": {"policy": "nearest", "tolerance_s": 0.06},
            },
            "mic": {"kind": "audio", "rate_hz": 1000, "window_s": 0.5, "channels": 1, "sync": {"policy": "window"}},
            "env": {
                "kind": "series",
                "rate_hz": 10,
                "window_s": 2.0,
                "channels": ["a", "b"],
                "sync": {"policy": "window", "min_coverage": 0.6},
            },
            "txt": {
                "kind": "text",
                "rate_hz": 1,
                "window_s": 3.0,
                "shape": [8],
                "sync": {"policy": "hold", "max_staleness_s": 5.0},
            },
        },
        "labels": {"event": ["quiet", "loud"]},
        "model": {
            "encoders": {
                "cam": {"type": "dwcnn"},
                "mic": {"type": "logmel_cnn", "n_fft": 64, "hop": 32},
                "env": {"type": "cnn1d"},
                "txt": {"type": "hashed_embedding", "buckets": 64},
            }
        },
        "runtime": {"tick_hz": 2, "latency_budget_ms": 50, **runtime},
    }
    return parse_spec(data)


def frame(v: int) -> np.ndarray:
    return np.full((8, 8, 3), v, dtype=np.uint8)


def s(source: str, seq: int, t_ns: int, data, rate_hz: float = 0.0, arrival: int | None = None, **meta) -> Sample:
    return Sample(source, seq, t_ns, t_ns if arrival is None else arrival, data, rate_hz, meta)


def stream(t0: int, t1: int, txt_every_s: float = 1.0) -> list[Sample]:
    """All four modalities from t0 to t1 ns in capture order: cam 10 Hz, mic 100-row blocks, env 10 Hz, txt 1 Hz."""
    out = []
    for i, t in enumerate(range(t0, t1, 100 * MS)):  # mic block of 100 rows at 1 kHz = 100 ms
        out.append(s("mic", i, t, np.full((100, 1), i, np.float32), 1000.0, arrival=t + 99 * MS))
        out.append(s("cam", i, t, frame(i % 256)))
        out.append(s("env", i, t, np.array([[i, -i]], np.float32)))
        if (t - t0) % round(txt_every_s * NS) == 0:
            out.append(s("txt", i, t, f"word{i}"))
    return sorted(out, key=lambda x: x.t_arrival_ns)


def test_ring_keeps_newest_rows_contiguous_and_in_order():
    ring = _Ring(10, 1)
    for k in range(7):  # 7 blocks of 3 rows: wraps twice
        ts = np.arange(3 * k, 3 * k + 3, dtype=np.int64)
        ring.write(ts, ts[:, None].astype(np.float32), err=-1)
    t, err, x = ring.view()
    assert t.tolist() == list(range(11, 21))
    assert x[:, 0].tolist() == list(range(11, 21))
    ring.write(np.arange(100, 125, dtype=np.int64), np.zeros((25, 1), np.float32), err=-1)  # longer than capacity
    assert ring.view()[0].tolist() == list(range(115, 125))


def test_fixed_rate_ticks_resolve_every_policy():
    spec = make_spec(latency_budget_ms=120)  # mic blocks arrive 99 ms after their first row: the budget covers it
    sync = Synchronizer(spec)
    ticks = list(drive(sync, stream(0, 5 * NS)))
    by_t = {tk.t_tick_ns: tk for tk in ticks}
    assert sorted(by_t) == [i * NS // 2 for i in range(0, 10)]  # 2 Hz grid from the first sample, to the last data
    tk = by_t[3 * NS]
    assert tk.mask.tolist() == [1, 1, 1, 1] and tk.complete
    # cam: the frame at exactly 3 s is index 30
    assert tk.inputs["cam"].shape == (3, 8, 8) and np.allclose(tk.inputs["cam"], 30 / 255)
    # env: 20 rows in [1.1 s, 3.0 s] are readings 11..30 (series: nearest rows, never invented values)
    assert tk.inputs["env"].shape == (2, 20)
    assert tk.inputs["env"][0].tolist() == list(range(11, 31)) and tk.inputs["env"][1].tolist() == list(
        range(-11, -31, -1)
    )
    # mic: 500 rows ending at 3.0 s; the block starting at 3.0 s (value 30) supplies the last row
    mic = tk.inputs["mic"]
    assert mic.shape == (1, 500) and mic[0, -1] == 30 and mic[0, 0] == 25 and mic[0, -2] == 29
    # txt: utterances in [0 s, 3 s] joined (one per second)
    assert tk.inputs["txt"].dtype == np.int64 and (tk.inputs["txt"] > 0).sum() >= 4
    assert tk.capture_ns == {"cam": 3 * NS, "mic": 3 * NS, "env": 3 * NS, "txt": 3 * NS}
    # early ticks: the 2 s env window is not yet covered at 0.5 s -> missing, zeros
    assert by_t[NS // 2].mask[2] == 0 and not by_t[NS // 2].inputs["env"].any()


def test_audio_resampled_linearly_from_a_faster_source():
    spec = make_spec()
    sync = Synchronizer(spec)
    t = np.arange(0, 4000)  # 2 s of a 2 kHz ramp whose value is the time in ms
    for b in range(0, 4000, 200):
        sync.push(s("mic", b // 200, b * NS // 2000, (t[b : b + 200, None] / 2).astype(np.float32), 2000.0))
    tk = sync._assemble(1_500 * MS, 1_500 * MS, [True] * 4)
    grid_ms = np.arange(1001, 1501)  # 500 rows at 1 kHz ending at 1500 ms
    assert np.allclose(tk.inputs["mic"][0], grid_ms, atol=1e-3)


def test_window_coverage_below_minimum_marks_missing():
    spec = make_spec()
    sync = Synchronizer(spec)
    for i in range(0, 20):  # env rows 0.0..1.9 s, then a gap
        if 5 <= i < 14:  # 9 of the 20 rows missing -> coverage 0.55 < 0.6
            continue
        sync.push(s("env", i, i * 100 * MS, np.array([[i, i]], np.float32)))
    tk = sync._assemble(1_900 * MS, 1_900 * MS, [True] * 4)
    assert tk.mask[2] == 0 and tk.capture_ns["env"] is None


def test_nearest_picks_closest_frame_within_tolerance_only():
    spec = make_spec()
    sync = Synchronizer(spec)
    for i, t_ms in enumerate([900, 980, 1100]):
        sync.push(s("cam", i, t_ms * MS, frame(i + 1)))
    tk = sync._assemble(1000 * MS, 1000 * MS, [True] * 4)
    assert tk.capture_ns["cam"] == 980 * MS and np.allclose(tk.inputs["cam"], 2 / 255)
    tk = sync._assemble(1200 * MS, 1200 * MS, [True] * 4)  # nearest is 100 ms away > 60 ms tolerance
    assert tk.mask[0] == 0


def test_hold_text_joins_window_then_falls_back_to_latest_within_staleness():
    spec = make_spec()
    sync = Synchronizer(spec)
    sync.push(s("txt", 0, 1 * NS, "turn the lights"))
    sync.push(s("txt", 1, 2 * NS, "off now"))
    both = sync._assemble(3 * NS, 3 * NS, [True] * 4).inputs["txt"]
    from edgefuse.text import hash_tokens

    assert both.tolist() == hash_tokens("turn the lights off now", 8, 64, 2).tolist()
    late = sync._assemble(6 * NS, 6 * NS, [True] * 4)  # window [3 s, 6 s] empty; latest is 4 s old <= 5 s
    assert late.mask[3] == 1 and late.inputs["txt"].tolist() == hash_tokens("off now", 8, 64, 2).tolist()
    assert sync._assemble(8 * NS, 8 * NS, [True] * 4).mask[3] == 0  # 6 s old > staleness


def test_silent_modality_waits_for_budget_then_emits_masked_and_counts_late():
    spec = make_spec()
    drops = Drops()
    sync = Synchronizer(spec, drops=drops)
    # the camera falls silent after 1.4 s; everything else has arrived up to 1.52 s
    samples = [
        x
        for x in stream(0, 2 * NS)
        if (x.source != "cam" or x.t_capture_ns < 1_400 * MS) and x.t_arrival_ns <= 1_520 * MS
    ]
    now = 0
    for x in samples:
        now = max(now, x.t_arrival_ns)
        sync.push(x)
        sync.poll(now)
    # tick at 1.5 s: mic/env/txt data present, camera silent. A frame up to half a period (50 ms) after the tick
    # could still be the nearest, so the 50 ms budget counts from there: nothing before 1.6 s
    assert sync.pending == 1 and sync.poll(1_599 * MS) == []
    (tk,) = sync.poll(1_600 * MS)
    assert tk.t_tick_ns == 1_500 * MS and not tk.complete and tk.mask.tolist() == [0, 1, 1, 1]
    assert tk.stamps["data"] == 1_600 * MS
    # the frame captured at 1.5 s shows up after its tick went out: counted late, never blocks
    assert sync.push(s("cam", 99, 1_500 * MS, frame(1), arrival=1_650 * MS)) is False
    assert drops.by_reason()["late"] == 1
    # silent for over three periods before the next tick (2.0 s): waited for the budget only
    sync.push(s("mic", 99, 1_600 * MS, np.ones((400, 1), np.float32), 1000.0, arrival=2_000 * MS))
    sync.push(s("env", 99, 2_000 * MS, np.array([[1, 1]], np.float32), arrival=2_000 * MS))
    assert sync.poll(2_049 * MS) == [] and len(sync.poll(2_050 * MS)) == 1


@pytest.mark.parametrize("offset_ms, waits", [(-48, False), (-52, True)])
def test_nearest_frame_within_half_a_period_needs_no_wait_for_the_next(offset_ms, waits):
    """10 Hz frames 48 ms before each tick: the next frame (52 ms after) cannot be nearer, so the tick goes out as
    soon as the windows are in. Frames 52 ms before: the next one (48 ms after) is nearer, so the tick waits for it."""
    sync = Synchronizer(make_spec())
    samples = []
    for k in range(1, 16):
        t = k * 100 * MS
        samples.append(s("cam", k, t + offset_ms * MS, frame(k)))
        samples.append(s("env", k, t, np.array([[k, -k]], np.float32)))
        # 100 mic rows at 1 kHz ending exactly at t, arriving then
        samples.append(s("mic", k, t - 99 * MS, np.full((100, 1), k, np.float32), 1000.0, arrival=t))
    emitted = {}
    for x in sorted(samples, key=lambda x: x.t_arrival_ns):
        sync.push(x)
        emitted.update({tk.t_tick_ns: (x.t_arrival_ns, tk) for tk in sync.poll(x.t_arrival_ns)})
    at, tk = emitted[1_000 * MS]
    assert tk.complete and tk.mask[0] == 1
    if waits:  # emitted when the frame at 1048 ms arrived, and uses it
        assert at == 1_048 * MS and tk.capture_ns["cam"] == 1_048 * MS
    else:  # emitted when the mic and env data reached 1.0 s, with the frame at 952 ms
        assert at == 1_000 * MS and tk.capture_ns["cam"] == 952 * MS


def test_modalities_final_before_the_last_arrival_are_assembled_early_and_identically():
    spec = make_spec()
    samples = stream(0, 4 * NS)  # mic blocks arrive 99 ms after they start: ticks wait for the mic
    early = Synchronizer(spec)
    for x in samples:
        if x.t_arrival_ns > 1_520 * MS:
            break
        early.push(x)
        early.poll(x.t_arrival_ns)
    # tick 1.5 s waits for the mic block covering it; the frame and the env window are final, so already built
    assert early.pending == 1 and early._early_t == 1_500 * MS and set(early._early) == {"cam", "env"}
    early, late = Synchronizer(spec), Synchronizer(spec)
    late._take_early = lambda t, ready: None  # every tensor built at emission, as before early assembly
    a, b = list(drive(early, samples)), list(drive(late, samples))
    assert [t.t_tick_ns for t in a] == [t.t_tick_ns for t in b] and len(a) == 8
    for x, y in zip(a, b, strict=True):
        assert x.mask.tolist() == y.mask.tolist() and x.capture_ns == y.capture_ns and x.sync_err_ns == y.sync_err_ns
        assert all(np.array_equal(x.inputs[m], y.inputs[m]) for m in spec.modalities)


def test_trigger_ticks_on_each_trigger_sample():
    spec = make_spec(trigger="cam")
    sync = Synchronizer(spec)
    ticks = list(drive(sync, [x for x in stream(0, 3 * NS) if x.source in ("cam", "env")]))
    assert [tk.t_tick_ns for tk in ticks] == [i * 100 * MS for i in range(30)]
    assert all(tk.mask[0] == 1 for tk in ticks)


def test_invalid_samples_are_counted_not_raised():
    spec = make_spec()
    drops = Drops()
    sync = Synchronizer(spec, drops=drops)
    assert not sync.push(s("env", 0, 0, np.zeros((1, 3), np.float32)))  # 3 channels, spec has 2
    assert not sync.push(s("env", 1, 1, np.array([[np.nan, 1]], np.float32)))
    assert not sync.push(s("cam", 0, 0, np.zeros((8, 8, 3), np.float32)))  # not uint8
    assert not sync.push(s("txt", 0, 0, b"bytes"))
    assert not sync.push(s("radar", 0, 0, np.zeros((1, 1), np.float32)))
    assert drops.by_source() == {
        "env": {"invalid": 2},
        "cam": {"invalid": 1},
        "txt": {"invalid": 1},
        "radar": {"invalid": 1},
    }


def test_history_and_pending_stay_bounded_under_a_long_flood():
    spec = make_spec()
    sync = Synchronizer(spec, max_pending=16)
    ring = sync.tracks["mic"].ring
    nbytes = ring.t.nbytes + ring.x.nbytes
    block = np.zeros((100, 1), np.float32)
    for i in range(3000):  # 300 s of audio, never polled: ticks pile up
        sync.push(s("mic", i, i * 100 * MS, block, 1000.0))
    sync.poll(5 * MS)  # nothing due yet
    sync.poll(300 * NS)
    assert ring.t.nbytes + ring.x.nbytes == nbytes and ring.n == 300_000
    assert sync.pending <= 16 and sync.skipped > 0


def test_group_prefixed_sources_map_to_modalities():
    spec = make_spec()
    sync = Synchronizer(spec, group="g1")
    sync.push(s("g1/cam", 0, 0, frame(7)))
    tk = sync._assemble(0, 0, [True] * 4)
    assert tk.group == "g1" and tk.mask[0] == 1


def test_policies_that_make_no_sense_are_refused_with_their_path():
    spec = make_spec()
    spec.modalities["cam"].sync.policy = "window"
    with pytest.raises(SpecError, match=r"modalities\.cam\.sync\.policy"):
        Synchronizer(spec)


def test_sync_error_against_ground_truth():
    spec = make_spec()
    sync = Synchronizer(spec)
    sync.push(s("cam", 0, 1_000 * MS, frame(1), t_true_ns=1_000 * MS - 3 * MS))
    tk = sync._assemble(1_000 * MS, 1_000 * MS, [True] * 4)
    assert tk.sync_err_ns["cam"] == 3 * MS and tk.sync_err_ns["mic"] is None


def test_windows_from_session_match_the_serving_ticks(tmp_path):
    spec = make_spec()
    samples = stream(0, 5 * NS)
    labels = tmp_path / "labels.csv"
    labels.write_text("t0_s,t1_s,event\n0,2,quiet\n3,4,loud\n")
    w = windows_from_session(spec, samples, labels)
    assert len(w) == 8 and w.t_ns.tolist() == [0, NS // 2, NS, 3 * NS // 2, 2 * NS, 3 * NS, 7 * NS // 2, 4 * NS]
    assert w.targets["event"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert w.inputs["cam"].shape == (8, 3, 8, 8) and w.inputs["mic"].shape == (8, 1, 500)
    assert w.inputs["env"].shape == (8, 2, 20) and w.inputs["txt"].shape == (8, 8)
    assert w.mask.shape == (8, 4) and w.mask.dtype == np.float32
    serving = {tk.t_tick_ns: tk for tk in drive(Synchronizer(spec), samples)}
    for i, t in enumerate(w.t_ns):
        for m in spec.modality_names:
            assert np.array_equal(w.inputs[m][i], serving[int(t)].inputs[m])


def test_windows_from_a_recorded_session_folder(tmp_path):
    from edgefuse.runtime.record import SessionWriter, write_labels

    spec = make_spec()
    with SessionWriter(tmp_path / "s", spec, chunk_s=0.05) as writer:
        t0 = -(-writer.start_ns // NS) * NS  # frames on the tick grid
        for x in stream(t0, t0 + 3 * NS):
            writer.write(x)
    write_labels(tmp_path / "s" / "labels.csv", [(0.0, 5.0, {"event": "loud"})], ["event"])
    w = windows_from_session(spec, tmp_path / "s")
    assert w.t_ns.tolist() == [t0 + k * NS // 2 for k in range(6)]
    assert w.targets["event"].tolist() == [1] * 6 and w.mask[-1].tolist() == [1, 1, 1, 1]


def test_label_errors_name_the_file_and_row(tmp_path):
    spec = make_spec()
    bad = tmp_path / "labels.csv"
    bad.write_text("t0_s,t1_s,event\n0,1,boom\n")
    with pytest.raises(DataError, match=r"labels\.csv: line 2: event='boom'"):
        windows_from_session(spec, stream(0, NS), bad)
    with pytest.raises(DataError, match=r"label row 1: event must be one of"):
        windows_from_session(spec, stream(0, NS), [(0.0, 1.0, {"event": "boom"})])
    with pytest.raises(DataError, match="no labels"):
        windows_from_session(spec, stream(0, NS))


@pytest.mark.parametrize("offset_ns", [7, 230_000, -310_000, 499_000])
def test_run_path_equals_nearest_row_resampling_with_gaps(offset_ns):
    """Rows on the grid's lattice (any phase within half a period) with lost blocks: the run path slices exactly the
    rows nearest-row resampling picks, and both leave the lost blocks' grid points at zero."""
    from edgefuse.runtime.sync import _resample

    sync = Synchronizer(make_spec())
    rng = np.random.default_rng(0)
    for b in range(20):  # 2 s of 1 kHz noise in 100-row blocks; blocks 12 and 17 lost
        if b not in (12, 17):
            x = rng.standard_normal((100, 1)).astype(np.float32)
            sync.push(s("mic", b, b * 100 * MS + offset_ns, x, 1000.0))
    track = sync.tracks["mic"]
    ts, _, xs = track.ring.view()
    for t in (1_000 * MS, 1_234_400_000, 1_999 * MS + 7, 1_700 * MS):
        before = track.takes["run"]
        fast = track.take(t)
        assert track.takes["run"] == before + 1
        grid = t - track.grid_off
        slow, covered, newest, _ = _resample(ts, xs, grid, track.src_period_ns, False, track.grid_period_ns / 2)
        assert fast[0] is not None and np.array_equal(fast[0], slow)
        assert fast[1] == ts[newest] and covered == np.count_nonzero(slow)
    gap = track.take(1_350 * MS)[0]  # block 12 = [1.2, 1.3) s is the window's grid points 349..448 (0.851..1.35 s)
    assert not gap[0, 349:449].any() and gap[0, 449:].all() and gap[0, :349].all()


def test_jittered_blocks_stay_sample_contiguous_and_take_the_run_path():
    """Block stamps jitter by milliseconds (a host stamps on arrival) and 2 % of blocks are lost: the samples of
    consecutive blocks stay contiguous, every window is sliced by rows (counter), and values are never duplicated."""
    spec = make_spec()
    sync = Synchronizer(spec)
    rng = np.random.default_rng(1)
    value = 0
    for b in range(300):  # 30 s of 1 kHz in 100-row blocks; the value is the sample index
        x = np.arange(value, value + 100, dtype=np.float32)[:, None]
        value += 100
        if rng.random() < 0.02:
            continue
        sync.push(s("mic", b, b * 100 * MS + int(rng.normal(0, 4 * MS)), x, 1000.0))
        if b > 10 and b % 5 == 0:
            tk = sync.tracks["mic"].take(b * 100 * MS)
            if tk[0] is not None:
                w = tk[0][0][tk[0][0] != 0]
                assert np.all(np.diff(w) >= 1)  # strictly increasing sample indices: no row twice
    takes = sync.stats()["mic"]
    assert takes["resample"] == 0 and takes["run"] > 50


def test_stale_rows_are_masked_within_one_staleness_bound():
    """A 1 kHz mic in 100-row blocks stops at 2.0 s: with min_coverage 0.2 its 0.5 s window stays covered enough
    for a while, but the newest row is old; the modality is missing once that age passes 3 blocks (300 ms)."""
    spec = make_spec()
    spec.modalities["mic"].sync.min_coverage = 0.2
    sync = Synchronizer(spec)
    for b in range(20):
        sync.push(s("mic", b, b * 100 * MS, np.ones((100, 1), np.float32), 1000.0))
    track = sync.tracks["mic"]
    assert track.stale_ns == 300 * MS
    assert track.take(2_250 * MS)[0] is not None  # newest row 1.999 s: 251 ms old, 50 % covered
    assert track.take(2_320 * MS)[0] is None  # 321 ms old, though 36 % of the window is covered
    env = sync.tracks["env"]
    for k in range(30):  # 10 Hz env readings up to 2.9 s; a 2 s window needs 60 % coverage
        sync.push(s("env", k, k * 100 * MS, np.array([[k, -k]], np.float32)))
    assert env.take(3_150 * MS)[0] is not None
    assert env.take(3_250 * MS)[0] is None  # 350 ms after the last reading: 80 % covered, but stale
    assert sync.stats()["env"]["stale"] == 1


def test_explicit_staleness_bound_for_hold_and_window():
    spec = make_spec()
    spec.modalities["env"].sync.max_staleness_s = 1.0
    sync = Synchronizer(spec)
    for k in range(30):
        sync.push(s("env", k, k * 100 * MS, np.array([[k, -k]], np.float32)))
    assert sync.tracks["env"].take(3_600 * MS)[0] is not None  # 0.7 s old (the default bound is 0.3 s), 65 % covered
    txt = sync.tracks["txt"]  # hold, max_staleness_s 5
    sync.push(s("txt", 0, NS, "hello"))
    assert txt.take(5_900 * MS)[0] is not None and txt.take(6_100 * MS)[0] is None


def _offset_camera_run(offset_ms: float, lock: bool, seed: int = 0, seconds: int = 60) -> tuple[int, int, list]:
    """10 Hz camera frames offset_ms off the 2 Hz tick grid with 3 ms jitter and 10-30 ms transport delay; env on
    the grid, the mic in 10 ms blocks. Returns (ticks, ticks with the camera present, tick wait times in ms)."""
    spec = make_spec(**({"phase_lock": "cam"} if lock else {}))
    sync = Synchronizer(spec)
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(1, seconds * 10):
        t = k * 100 * MS
        tc = t + round(offset_ms * MS + rng.normal(0, 3 * MS))
        samples.append(s("cam", k, tc, frame(k % 256), arrival=tc + int(rng.uniform(10, 30) * MS)))
        samples.append(s("env", k, t, np.array([[k, -k]], np.float32), arrival=t + 5 * MS))
        for b in range(10):
            tb = t + b * 10 * MS
            samples.append(s("mic", 10 * k + b, tb, np.ones((10, 1), np.float32), 1000.0, arrival=tb + 15 * MS))
        if k % 10 == 0:
            samples.append(s("txt", k, t, "hi"))
    ticks, waits = [], []
    for x in sorted(samples, key=lambda x: x.t_arrival_ns):
        sync.push(x)
        for tk in sync.poll(x.t_arrival_ns):
            ticks.append(tk)
            waits.append((x.t_arrival_ns - tk.t_tick_ns) / MS)
    ticks = ticks[6:]  # past the 2 s env window's start-up
    return len(ticks), sum(int(tk.mask[0]) for tk in ticks), waits[6:]


@pytest.mark.parametrize("offset_ms", [50, 48, -52, 35, 80])
def test_offset_camera_is_present_on_every_tick(offset_ms):
    """A 10 Hz camera whose frames fall anywhere against the tick grid (the tolerance is 60 ms): the frame within
    tolerance is taken, even one after the tick that arrives 10-30 ms after its capture, past a budget counted from
    the tick."""
    n, present, _ = _offset_camera_run(offset_ms, lock=False)
    assert n > 100 and present / n >= 0.99


def test_phase_lock_puts_ticks_on_the_frames_so_ticks_do_not_wait():
    n, present, waits = _offset_camera_run(50, lock=True)
    n0, present0, waits0 = _offset_camera_run(50, lock=False)
    assert present == n and present0 == n0
    # locked: a tick goes out when its frame arrives (10-30 ms transport); unlocked, ticks half a period off the
    # frames wait for the next frame about half the time (50 ms + transport)
    assert np.percentile(waits, 90) < 35 and np.percentile(waits0, 90) > 55


def test_phase_lock_is_validated():
    with pytest.raises(SpecError, match="runtime.phase_lock.*nearest"):
        make_spec(phase_lock="mic")
    with pytest.raises(SpecError, match="runtime.phase_lock.*no modality"):
        make_spec(phase_lock="nope")
    with pytest.raises(SpecError, match="tick_hz 20 is above"):
        make_spec(phase_lock="cam", tick_hz=20)


def test_replayed_samples_measure_sync_error_against_the_recorded_capture():
    spec = make_spec()
    sync = Synchronizer(spec)
    shift = 500 * NS  # a replay re-stamps samples on today's clock and keeps the recorded capture time
    sync.push(s("cam", 0, shift + NS, frame(1), t_true_ns=NS - 2 * MS, t_recorded_ns=NS))
    assert sync._assemble(shift + NS, shift + NS, [True] * 4).sync_err_ns["cam"] == 2 * MS


def test_a_source_far_faster_than_its_rate_keeps_its_own_stamps():
    """An unpaced 10 Hz sensor delivering a reading every 20 µs: its stamps are not continued on the 100 ms
    lattice (which would run into the future), each reading keeps its own."""
    sync = Synchronizer(make_spec())
    for k in range(50):
        assert sync.push(s("env", k, NS + k * 20_000, np.array([[k, -k]], np.float32)))
    ts = sync.tracks["env"].ring.view()[0]
    assert ts.tolist() == [NS + k * 20_000 for k in range(50)]


def test_held_frame_is_masked_after_three_frame_periods_by_default():
    spec = make_spec()
    spec.modalities["cam"].sync.policy = "hold"
    sync = Synchronizer(spec)
    for k in range(10):  # 10 Hz frames up to 0.9 s
        sync.push(s("cam", k, k * 100 * MS, frame(k)))
    cam = sync.tracks["cam"]
    assert 299 * MS <= cam.stale_ns <= 301 * MS  # 3 x the observed frame interval
    assert cam.take(1_150 * MS)[0] is not None and cam.take(1_250 * MS)[0] is None
