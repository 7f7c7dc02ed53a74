"""Microphone: the block timestamp logic on synthetic callback times, and a smoke test of the real PortAudio path."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgefuse.runtime.sources.microphone import AudioClock

RATE = 16000
BLOCK = 1024
BLOCK_NS = BLOCK * 1e9 / RATE  # 64 ms
LATENCY_S = 0.005  # ADC -> callback latency the driver reports
HOST0 = 1_000_000_000_000


def run_blocks(clock: AudioClock, n: int, adc=lambda k, true_s: true_s, seed: int = 0) -> np.ndarray:
    """Feed n blocks; block k's first sample is captured at HOST0 + k * BLOCK_NS. Returns stamp errors in ms.

    The callback fires after the block is complete plus 5 ms, with 0-8 ms of scheduling jitter; PortAudio's clock
    (currentTime, inputBufferAdcTime) is the host clock in seconds.
    """
    rng = np.random.default_rng(seed)
    errs = []
    for k in range(n):
        t_true = HOST0 + k * BLOCK_NS
        cb = t_true + BLOCK_NS + LATENCY_S * 1e9 + rng.uniform(0, 8e6)
        now_s = cb / 1e9
        errs.append((clock.stamp(BLOCK, int(cb), adc(k, t_true / 1e9), now_s) - t_true) / 1e6)
    return np.array(errs)


def test_sane_adc_time_removes_callback_jitter():
    clock = AudioClock(RATE)
    err = run_blocks(clock, 400)
    assert clock.adc_used == 399 and clock.adc_rejected == 1  # the first block has no previous one to compare
    assert np.abs(err[100:]).max() < 0.6  # vs up to 8 ms of callback jitter
    assert np.diff(err[100:]).std() < 0.3


def test_zero_adc_time_falls_back_to_the_sample_count():
    clock = AudioClock(RATE)
    err = run_blocks(clock, 400, adc=lambda k, t: 0.0)
    assert clock.adc_used == 0 and clock.adc_rejected == 400
    # once the fit has a few seconds, stamps are a block apart (+-0.1 ms as the envelope settles), late by about
    # the callback's minimum latency (5 ms): without the ADC time that part cannot be known
    assert np.abs(np.diff(err[100:])).max() < 0.1
    assert err[100:].min() >= LATENCY_S * 1e3 - 0.1 and err[100:].max() < LATENCY_S * 1e3 + 0.5


def test_frozen_adc_time_is_rejected():
    clock = AudioClock(RATE)
    err = run_blocks(clock, 200, adc=lambda k, t: 1234.5)
    assert clock.adc_used == 0 and np.abs(np.diff(err[100:])).max() < 0.1


def test_adc_jump_is_ignored_and_tracking_resumes():
    clock = AudioClock(RATE)
    err = run_blocks(clock, 300, adc=lambda k, t: t + (10.0 if k == 150 else 0.0))
    assert clock.adc_rejected == 3  # first block, the jump, and the block after it (its step looks wrong too)
    assert np.abs(err[100:]).max() < 0.6  # no 10 s spike in the stamps


def test_sound_card_drift_is_learned_from_callback_times():
    clock = AudioClock(RATE)
    # the card samples 100 ppm fast: block k is captured at k * BLOCK_NS / (1 + 1e-4) host time
    for k in range(1500):
        t_true = HOST0 + k * BLOCK_NS / 1.0001
        clock.stamp(BLOCK, int(t_true + BLOCK_NS / 1.0001 + 5e6), 0.0, 0.0)
    assert clock.fit.drift_ppm == pytest.approx(100, abs=5)


def test_overflow_discontinuity_keeps_stamps_ordered_and_recovers():
    clock = AudioClock(RATE)
    rng = np.random.default_rng(3)
    stamps, trues = [], []
    for k in range(300):
        if 150 <= k < 153:  # PortAudio lost three blocks: the count skips them, the host clock does not
            continue
        if k == 153:
            clock.discontinuity()
        t_true = HOST0 + k * BLOCK_NS
        cb = t_true + BLOCK_NS + 5e6 + rng.uniform(0, 8e6)
        stamps.append(clock.stamp(BLOCK, int(cb), 0.0, 0.0))
        trues.append(t_true)
    err = (np.array(stamps) - np.array(trues)) / 1e6
    assert np.all(np.diff(stamps) >= BLOCK_NS / 2 - 1)  # strictly ordered across the gap
    assert np.abs(err[160:]).max() < 14  # re-anchored on the host clock: the 192 ms gap is not carried over
    assert np.abs(err[250:] - 5).max() < 3


SMOKE = textwrap.dedent(
    """
    import json, time
    from edgefuse.spec import parse_spec
    from edgefuse.runtime.sources import make_sources
    spec = parse_spec({"name": "t", "labels": {"e": ["a", "b"]},
        "modalities": {"mic": {"kind": "audio", "rate_hz": 16000, "window_s": 1.0, "channels": 1,
                               "source": {"type": "microphone", "blocksize": 256}}},
        "model": {"encoders": {"mic": {"type": "logmel_cnn"}}}})
    src = make_sources(spec)["mic"]
    src.open()
    got = []
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        got += src.read(0.05)
    src.close()
    print(json.dumps({"n": len(got), "shape": list(got[0].data.shape), "dtype": str(got[0].data.dtype),
                      "causal": all(s.t_capture_ns <= s.t_arrival_ns for s in got),
                      "seq_ok": all(b.seq > a.seq for a, b in zip(got, got[1:])), "stats": src.stats()}))
    """
)


@pytest.mark.skipif(not ctypes.util.find_library("portaudio"), reason="libportaudio2 is not installed (apt)")
def test_real_portaudio_path_on_alsa_null_device(tmp_path):
    # ALSA's null device: a real PortAudio input stream without hardware. It is not paced in real time (blocks come
    # as fast as the CPU allows), so this checks the plumbing, not timing; the ring overflows and counts drops.
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", SMOKE], env=env, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "PortAudio" in r.stderr and "Error querying device" in r.stderr:
        pytest.skip(f"PortAudio has no input device here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] > 10 and out["shape"] == [256, 1] and out["dtype"] == "float32"
    assert out["causal"] and out["seq_ok"]  # no ordering check: an unpaced device has no meaningful timing
    assert out["stats"]["samples"] == out["n"] and out["stats"]["connected"] is False
