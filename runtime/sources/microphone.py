"""Microphone source: a sounddevice (PortAudio) InputStream whose callback copies blocks into a preallocated ring.

Timestamps come from AudioClock (pure, tested without hardware): the running sample count, mapped onto the host
clock by a lower-envelope fit of the callback times (runtime/clockfit.py; this also learns the sound card's drift),
corrected by PortAudio's inputBufferAdcTime only while that advances sanely: on some hosts it is 0, frozen, or
jumps, and then the count alone is used.

The callback does no allocation: one copy into the ring and four scalar stores. Everything else (stamping,
building Samples) runs in read(), on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.clockfit import ClockFit
from edgefuse.runtime.sources import Backoff, Source
from edgefuse.spec import ModalitySpec

log = logging.getLogger(__name__)
RING_BLOCKS = 256  # blocks the reader may fall behind before the oldest are overwritten (counted as drops)
STALL_S = 2.0  # no callback for this long (plus a block) = the device is gone: reopen


class AudioClock:
    """Host capture time of each audio block from its sample count, callback time and PortAudio's ADC time."""

    def __init__(self, rate_hz: float, ema: float = 0.1):
        self.rate_hz = rate_hz
        self.ema = ema
        self.count = 0  # samples stamped so far
        self.fit = ClockFit(window_s=30.0, bucket_s=0.5, jump_ms=200.0)
        self.correction_ns: float | None = None  # smoothed (ADC time - count time) while the ADC time is sane
        self.adc_used = 0
        self.adc_rejected = 0
        self._prev_adc: float | None = None
        self._prev_frames = 0
        self._next_ns = 0  # earliest start of the next block

    def stamp(self, frames: int, cb_host_ns: int, adc_s: float, now_s: float) -> int:
        """Host monotonic ns of the first sample of a block of `frames` samples delivered at cb_host_ns."""
        ns_per = 1e9 / self.rate_hz
        # count path: the block's last sample is in hand at the callback; fit count time -> host time
        self.fit.update(round((self.count + frames) * ns_per), cb_host_ns)
        t_count = self.fit.to_host(round(self.count * ns_per))
        if self._adc_sane(frames, adc_s, now_s):
            t_adc = cb_host_ns - (now_s - adc_s) * 1e9
            diff = t_adc - t_count
            c = self.correction_ns
            self.correction_ns = diff if c is None else c + self.ema * (diff - c)
            self.adc_used += 1
        else:
            self.adc_rejected += 1
        self.count += frames
        t = int(t_count + (self.correction_ns or 0.0))
        # stamps only move forward (a correction may pull a block back by up to half a block, never behind the
        # previous one), and no sample is captured after the callback that delivers it
        t = min(max(t, self._next_ns), cb_host_ns - round(frames * ns_per))
        self._next_ns = t + round(frames * ns_per / 2)
        return t

    def discontinuity(self) -> None:
        """Samples were lost (input overflow): the count no longer lines up with the old callback times."""
        self.fit.reset()
        self._prev_adc = None

    def _adc_sane(self, frames: int, adc_s: float, now_s: float) -> bool:
        """ADC time is usable when set, not ahead of now, under a second old, and advancing by a block per block."""
        prev, prev_frames = self._prev_adc, self._prev_frames
        self._prev_adc, self._prev_frames = adc_s, frames
        if adc_s <= 0 or now_s <= 0 or not 0 <= now_s - adc_s < 1.0 or prev is None:
            return False
        expected = prev_frames / self.rate_hz
        return abs((adc_s - prev) - expected) <= max(0.002, 0.25 * expected)

    def stats(self) -> dict[str, Any]:
        return {**self.fit.stats(), "adc_used": self.adc_used, "adc_rejected": self.adc_rejected}


class MicrophoneSource(Source):
    """Audio blocks (blocksize, channels) float32 from a PortAudio input device; reopens a device that goes away."""

    def __init__(
        self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True, seed: int = 0, context=None
    ):
        super().__init__(source_id, modality, spec, realtime)
        uri = spec.source.uri
        self.device: int | str | None = int(uri) if uri and uri.isdigit() else uri
        self.blocksize = spec.source.blocksize
        self.channels = spec.n_channels
        self.backoff = Backoff(spec.source.reconnect_s, spec.source.reconnect_max_s)
        self.counters.update(open_failures=0, stalls=0)
        self.clock = AudioClock(spec.rate_hz)
        # the ring the callback writes into: data and per-block callback facts, allocated once
        self._ring = np.zeros((RING_BLOCKS, self.blocksize, self.channels), np.float32)  # (K, blocksize, C)
        self._frames = np.zeros(RING_BLOCKS, np.int64)
        self._host_ns = np.zeros(RING_BLOCKS, np.int64)
        self._adc = np.zeros(RING_BLOCKS, np.float64)
        self._now = np.zeros(RING_BLOCKS, np.float64)
        self._overflow = np.zeros(RING_BLOCKS, np.bool_)
        self._written = 0  # blocks written by the callback (only the callback thread increments it)
        self._read = 0
        self._ready = threading.Event()
        self._stream: Any = None
        self._opened_once = False
        self._last_cb = 0.0

    # lifecycle ------------------------------------------------------------------------------------------------------
    def open(self) -> None:
        self._connect()

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except Exception as err:  # noqa: BLE001 - a vanished device may fail to close; it is released anyway
                log.debug("microphone close: %s", err)
            self._stream = None

    def stats(self) -> dict[str, Any]:
        return {**self.counters, **self.clock.stats(), "connected": self._stream is not None}

    def read(self, timeout_s: float) -> list[Sample]:
        if self._stream is None:
            self.backoff.wait(timeout_s)
            if not self.backoff.due() or not self._connect():
                return []
        if self._read == self._written:
            self._ready.wait(timeout_s)
            self._ready.clear()
        if time.monotonic() - self._last_cb > STALL_S + self.blocksize / self.spec.rate_hz:
            self._stalled()
            return []
        return self._drain()

    # internals ------------------------------------------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy the block and its times; nothing else."""
        i = self._written % RING_BLOCKS
        self._host_ns[i] = monotonic_ns()
        n = min(frames, self.blocksize)
        self._ring[i, :n] = indata[:n]
        self._frames[i] = n
        self._adc[i] = time_info.inputBufferAdcTime
        self._now[i] = time_info.currentTime
        self._overflow[i] = bool(status.input_overflow)
        self._written += 1
        self._ready.set()

    def _drain(self) -> list[Sample]:
        written = self._written
        if written - self._read > RING_BLOCKS - 1:  # the reader fell behind: the oldest blocks were overwritten
            lost = written - self._read - (RING_BLOCKS - 1)
            self.counters["drops"] += lost
            self._seq += lost
            self._read += lost
            self.clock.discontinuity()
        out = []
        t_arrival = monotonic_ns()
        self._last_cb = time.monotonic() if written > self._read else self._last_cb
        for k in range(self._read, written):
            i = k % RING_BLOCKS
            if self._overflow[i]:
                self.counters["overflows"] += 1
                self.clock.discontinuity()
            n = int(self._frames[i])
            t = self.clock.stamp(n, int(self._host_ns[i]), float(self._adc[i]), float(self._now[i]))
            out.append(self._sample(t, t_arrival, self._ring[i, :n].copy(), self.spec.rate_hz))
        self._read = written
        return out

    def _connect(self) -> bool:
        sd = require("sounddevice", "the microphone source")
        try:
            self._stream = sd.InputStream(
                device=self.device,
                channels=self.channels,
                samplerate=self.spec.rate_hz,
                blocksize=self.blocksize,
                dtype="float32",
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as err:  # no such device, unsupported rate or channel count
            log.warning("microphone %s: cannot open (%s); retrying", self.device, err)
            self._stream = None
            self.counters["open_failures"] += 1
            self.backoff.failed()
            return False
        self.backoff.succeeded()
        self.counters["reconnects"] += int(self._opened_once)
        self._opened_once = True
        self._read = self._written
        self._last_cb = time.monotonic()
        self.clock.discontinuity()
        return True

    def _stalled(self) -> None:
        log.warning("microphone %s: no audio for %.1f s; reopening", self.device, STALL_S)
        self.counters["stalls"] += 1
        self.close()
        self.backoff.failed()
