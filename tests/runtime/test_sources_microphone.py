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


CAPTURE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from edgefuse.spec import parse_spec
    from edgefuse.runtime.sources import make_sources
    source = json.loads(sys.argv[1])
    spec = parse_spec({"name": "t", "labels": {"e": ["a", "b"]},
        "modalities": {"mic": {"kind": "audio", "rate_hz": 16000, "window_s": 1.0, "channels": 1,
                               "source": {"type": "microphone", "blocksize": 512, **source}}},
        "model": {"encoders": {"mic": {"type": "logmel_cnn"}}}})
    src = make_sources(spec)["mic"]
    src.open()
    got, per_read = [], []
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        new = src.read(0.05)
        got += new
        per_read.append((len(new), src.counters["unpaced"]))
    src.close()
    t = np.array([s.t_capture_ns for s in got], np.float64)
    n = np.array([len(s.data) for s in got])
    audio = np.concatenate([s.data for s in got]) if got else np.zeros((0, 1), np.float32)
    print(json.dumps({"n": len(got), "channels": int(audio.shape[1]), "dtype": str(audio.dtype),
                      "rows": int(audio.shape[0]), "rate": got[0].rate_hz if got else 0,
                      "contig_ns": np.abs(t[1:] - (t[:-1] + n[:-1] * 1e9 / 16000)).tolist(),
                      "block_rows": n.tolist(), "stamps_ns": t.tolist(),
                      "settled": int(np.searchsorted(t, t[0] + 2.1e9)) if got else 0,
                      "span_s": float((t[-1] - t[0]) / 1e9) if got else 0.0,
                      "causal": all(s.t_capture_ns <= s.t_arrival_ns for s in got),
                      "seq_ok": all(b.seq > a.seq for a, b in zip(got, got[1:])),
                      "audio": audio[:, 0].tolist(), "per_read": per_read, "stats": src.stats()}))
    """
)


def capture(env: dict[str, str], source: dict, seconds: float) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CAPTURE, json.dumps(source), str(seconds)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0 and "PortAudio" in r.stderr and "Error querying device" in r.stderr:
        pytest.skip(f"PortAudio has no input device here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["stderr"] = r.stderr
    return out


needs_portaudio = pytest.mark.skipif(
    not ctypes.util.find_library("portaudio"), reason="libportaudio2 is not installed (apt)"
)


@needs_portaudio
def test_paced_48k_stereo_int16_device_arrives_as_16k_mono_with_contiguous_stamps(tmp_path):
    from _virtual_mic import LEFT_AMP, LEFT_HZ, RIGHT_AMP, RIGHT_HZ, VirtualMic

    with VirtualMic(tmp_path) as mic:
        out = capture(mic.env, {"uri": "mic48", "device_rate_hz": 48000}, 3.5)
    st = out["stats"]
    assert st["device_rate_hz"] == 48000 and st["device_channels"] == 2  # opened as the device offers it
    assert out["channels"] == 1 and out["dtype"] == "float32" and out["rate"] == 16000
    # real-time pace: 16000 rows per second of stamps once settled (PulseAudio sends a burst at first), and the
    # pacing check agrees
    k = out["settled"]
    rows, t = np.array(out["block_rows"]), np.array(out["stamps_ns"])
    assert rows[k:-1].sum() / ((t[-1] - t[k]) / 1e9) == pytest.approx(16000, rel=0.01)
    assert 1 / 1.2 < st["pace_ratio"] < 1.2 and st["unpaced"] == 0 and st["problem"] is None
    # sample-contiguous once the clock fit has settled (2 s): each block starts one sample period after the
    # previous block's last sample, up to the slew toward the fitted drift (at most 500 ppm of a block: 16 us of a 32 ms
    # block, a quarter of a sample), and the stamps stay on the mapped clock
    slew_ppm = np.array(out["contig_ns"])[k:] / (np.array(out["block_rows"])[k + 1 :] * 1e9 / 16000) * 1e6
    assert len(slew_ppm) > 10 and slew_ppm.max() <= 501
    # the fit still moves in its first seconds on a loaded host; the stamps trail it by slewing, never by a step
    assert st["clock_steps"] == 0 and abs(st["clock_lag_ms"]) < 10.0
    assert out["causal"] and out["seq_ok"]
    # the mono mix holds both channels' tones at half their amplitude, at the right frequencies after resampling
    x = np.array(out["audio"][16000:32000])  # one second past the start
    spec = np.abs(np.fft.rfft(x)) / len(x) * 2  # 1 Hz bins
    assert int(np.argmax(spec)) == LEFT_HZ
    assert spec[int(LEFT_HZ)] == pytest.approx(LEFT_AMP / 32768 / 2, rel=0.05)
    assert spec[int(RIGHT_HZ)] == pytest.approx(RIGHT_AMP / 32768 / 2, rel=0.05)
    assert "opened 'mic48' at 48000 Hz x 2 ch" in out["stderr"] or st["samples"] > 0


@needs_portaudio
def test_default_rate_and_select_channels_keep_the_right_channel_only(tmp_path):
    from _virtual_mic import RIGHT_AMP, RIGHT_HZ, VirtualMic

    with VirtualMic(tmp_path) as mic:
        out = capture(mic.env, {"uri": "mic48", "select_channels": [1]}, 2.2)
    # no device_rate_hz: the device's default rate as PortAudio reports it (44.1 kHz for ALSA's pulse plugin,
    # which converts from the pipe's 48 kHz); 44.1 -> 16 kHz is not an integer ratio, soxr handles it
    assert out["stats"]["device_rate_hz"] == 44100 and out["rate"] == 16000
    x = np.array(out["audio"][8000:24000])
    assert len(x) == 16000
    spec = np.abs(np.fft.rfft(x)) / len(x) * 2
    assert int(np.argmax(spec)) == RIGHT_HZ
    assert spec[int(RIGHT_HZ)] == pytest.approx(RIGHT_AMP / 32768, rel=0.05)


@needs_portaudio
def test_unpaced_alsa_null_device_is_flagged_and_masked(tmp_path):
    # ALSA's null device: a real PortAudio input stream without hardware and without pacing (blocks come as fast
    # as the CPU allows). The pacing check flags it within half a second; from then on nothing is delivered.
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
    out = capture({"HOME": str(tmp_path)}, {}, 1.5)
    st = out["stats"]
    assert st["unpaced"] >= 1 and st["pace_ratio"] > 4.8
    assert "real time" in st["problem"] and "masked" in out["stderr"]
    assert st["connected"] is False
    reads = np.array(out["per_read"])  # (reads, [samples delivered, times flagged so far])
    flagged = int(np.argmax(reads[:, 1] > 0))
    assert reads[:flagged, 0].sum() > 0 and reads[flagged:, 0].sum() == 0  # nothing once flagged, reopened or not
    assert out["causal"] and out["seq_ok"]


@needs_portaudio
def test_missing_device_is_masked_with_its_name_and_retried(tmp_path):
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    out = capture({"HOME": str(tmp_path)}, {"uri": "no-such-microphone", "reconnect_s": 0.1}, 0.5)
    st = out["stats"]
    assert out["n"] == 0 and st["open_failures"] >= 2 and st["connected"] is False
    assert "no-such-microphone" in out["stderr"] and "masked" in out["stderr"]
    assert "cannot open" in st["problem"]


def test_missing_portaudio_names_the_package_and_masks_the_modality(monkeypatch):
    # Without libportaudio.so.2, `import sounddevice` raises OSError("PortAudio library not found"). The library is
    # installed here, so an import hook raises what sounddevice raises; the source must mask, not let it escape.
    import importlib.abc

    from edgefuse.runtime.sources import SourceUnavailable, make_sources
    from edgefuse.spec import parse_spec

    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    data = {"name": "t", "labels": {"e": ["a", "b"]},
            "modalities": {"mic": {"kind": "audio", "rate_hz": 16000, "window_s": 1.0,
                                   "source": {"type": "microphone"}}},
            "model": {"encoders": {"mic": {"type": "logmel_cnn"}}}}  # fmt: skip
    src = make_sources(parse_spec(data))["mic"]
    src.open()
    assert src.read(0.01) == [] and "apt-get install libportaudio2" in src.problem
    assert src.stats()["connected"] is False and src.counters["open_failures"] == 1
    data["modalities"]["mic"]["source"]["required"] = True
    src = make_sources(parse_spec(data))["mic"]
    with pytest.raises(SourceUnavailable, match="required source mic.*libportaudio2"):
        src.open()


def test_select_channels_must_match_the_modality():
    from edgefuse.runtime.sources import make_sources
    from edgefuse.spec import SpecError, parse_spec

    data = {"name": "t", "labels": {"e": ["a", "b"]},
            "modalities": {"mic": {"kind": "audio", "rate_hz": 16000, "window_s": 1.0, "channels": 1,
                                   "source": {"type": "microphone", "select_channels": [0, 1]}}},
            "model": {"encoders": {"mic": {"type": "logmel_cnn"}}}}  # fmt: skip
    with pytest.raises(SpecError, match=r"modalities.mic.source.select_channels: names 2 device channel"):
        make_sources(parse_spec(data))
    data["modalities"]["mic"]["source"]["select_channels"] = [-1]
    with pytest.raises(SpecError, match=r"modalities.mic.source.select_channels"):
        parse_spec(data)
