"""A tick's tensors are its own: nothing the synchronizer writes later may change a tick already emitted."""

from __future__ import annotations

import numpy as np

from edgefuse.runtime.clock import Sample
from edgefuse.runtime.sync import NS, Synchronizer, drive
from edgefuse.spec import parse_spec

MS = 1_000_000


def mono_spec() -> object:
    data = {
        "name": "mono",
        "modalities": {
            "mic": {"kind": "audio", "rate_hz": 1000, "window_s": 0.5, "channels": 1, "sync": {"policy": "window"}},
            "env": {"kind": "series", "rate_hz": 10, "window_s": 1.0, "channels": ["a"], "sync": {"policy": "window"}},
        },
        "labels": {"event": ["quiet", "loud"]},
        "model": {"encoders": {"mic": {"type": "logmel_cnn", "n_fft": 64, "hop": 32}, "env": {"type": "cnn1d"}}},
        "runtime": {"tick_hz": 2, "latency_budget_ms": 50},
    }
    return parse_spec(data)


def test_one_channel_windows_do_not_alias_the_history_ring():
    # one channel is the case where the transposed window slice is already contiguous, i.e. could be a ring view
    samples = []
    for i in range(200):  # 20 s: the ring (window + 2 s slack) wraps several times
        t = i * 100 * MS
        samples.append(Sample("mic", i, t, t + 99 * MS, np.full((100, 1), i, np.float32), 1000.0))
        samples.append(Sample("env", i, t, t, np.array([[float(i)]], np.float32)))
    sync = Synchronizer(mono_spec())
    ticks, at_emit = [], []
    for tick in drive(sync, samples):
        ticks.append(tick)
        at_emit.append({m: x.copy() for m, x in tick.inputs.items()})
    assert len(ticks) >= 38
    assert ticks[10].inputs["mic"].shape == (1, 500) and ticks[10].inputs["mic"].max() > 0
    for tick, before in zip(ticks, at_emit, strict=True):
        for m, x in tick.inputs.items():
            assert np.array_equal(x, before[m]), (m, tick.t_tick_ns / NS)
            assert not np.shares_memory(x, sync.tracks[m].ring.x)
