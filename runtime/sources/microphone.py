"""Microphone source: a sounddevice (PortAudio) InputStream whose callback copies blocks into a preallocated ring.

The device is opened at its own rate and channel count (USB microphones and ALSA `hw:` devices often offer only
44.1 or 48 kHz, often stereo), in whatever sample format PortAudio finds (int16, int24, float; PortAudio converts
to float32). read() then selects or mixes down the channels and resamples to the modality's rate with soxr (a
streaming, band-limited resampler), so the runtime always sees `rate_hz` x `channels` float32.

Stamps are sample-contiguous: block k+1's first sample is stamped exactly one output sample period after block
k's last, and the stamps follow the device's sample clock as mapped onto the host clock (AudioClock below) only by
a slew of at most SLEW_PPM, the fit's slow drift correction. Only a jump beyond STEP_MS (samples lost, a device
reopened) restarts the stamps on the mapped clock, and for the first WARMUP_S after opening, while the fit finds
its line, stamps follow the fit directly. A device whose sample clock runs beyond 1.2x (or below 1/1.2)
real time (e.g. ALSA's `file` plugin over `null`) is flagged, masked and reopened later (Pacing).

The mapped clock is AudioClock's fit (runtime/clockfit.py): the running device sample count mapped onto the host
clock by the lower envelope of the callback times, which also learns the sound card's drift. AudioClock's own
per-block stamp (corrected by PortAudio's inputBufferAdcTime while that advances sanely) is not used for the
blocks: on PulseAudio the ADC time is sane only part of the time and each switch moved the stamps by
milliseconds, and the per-block clamp snaps to bursty callbacks. The stamps therefore trail the true capture time
by about the minimum callback latency (a few ms), steadily.

The callback does no allocation: one copy into the ring and four scalar stores. Everything else (stamping,
building Samples) runs in read(), on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from edgefuse._optional import MissingDependency, require
from edgefuse.preprocess import mix_matrix
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.clockfit import ClockFit
from edgefuse.runtime.sources import Backoff, Pacing, Source, Throttle
from edgefuse.spec import ModalitySpec, SpecError

log = logging.getLogger(__name__)
RING_BLOCKS = 256  # blocks the reader may fall behind before the oldest are overwritten (counted as drops)
STALL_S = 2.0  # no callback for this long (plus a block) = the device is gone: reopen
SLEW_PPM = 500.0  # how fast block stamps may follow the mapped device clock (a sound card drifts < 100 ppm)
STEP_MS = 20.0  # a mapped-clock jump beyond this restarts the stamps there (samples were lost)
WARMUP_S = 2.0  # device seconds after opening during which stamps follow the clock fit as it settles
PORTAUDIO_FIX = "install PortAudio: apt-get install libportaudio2 (Debian, Ubuntu, JetPack)"


def load_sounddevice() -> tuple[Any, str | None]:
    """(sounddevice, None), or (None, why it cannot be used and how to fix it): the pip extra or PortAudio itself."""
    try:
        return require("sounddevice", "the microphone source"), None
    except MissingDependency as err:
        return None, str(err)
    except OSError as err:  # the module is there but libportaudio.so.2 is not ("PortAudio library not found")
        return None, f"{err}; {PORTAUDIO_FIX}"


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
    """Audio blocks (~blocksize, channels) float32 at the modality's rate from a PortAudio input device opened at its
    own rate and channel count; reopens a device that goes away, masks one that is missing or unpaced."""

    def __init__(
        self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True, seed: int = 0, context=None
    ):
        super().__init__(source_id, modality, spec, realtime)
        sel = spec.source.select_channels
        if sel is not None and len(sel) != spec.n_channels:
            where = f"modalities.{modality}.source.select_channels"
            raise SpecError(
                "<spec>", [(where, f"names {len(sel)} device channel(s); the modality has {spec.n_channels}")]
            )
        uri = spec.source.uri
        self.device_arg: int | str | None = int(uri) if uri and uri.isdigit() else uri
        self.blocksize = spec.source.blocksize
        self.channels = spec.n_channels
        self.backoff = Backoff(spec.source.reconnect_s, spec.source.reconnect_max_s)
        self.throttle = Throttle(log)
        self.counters.update(open_failures=0, stalls=0, unpaced=0, clock_steps=0)
        self.device_rate_hz = 0.0  # what the device was opened at (0 until it is)
        self.device_channels = 0
        self.device_name = ""
        self.clock = AudioClock(spec.rate_hz)
        self.pacing = Pacing(spec.rate_hz)
        self._ring = np.zeros((0, 0, 0), np.float32)  # (K, device block, device channels), allocated per open
        self._frames = np.zeros(RING_BLOCKS, np.int64)
        self._host_ns = np.zeros(RING_BLOCKS, np.int64)
        self._adc = np.zeros(RING_BLOCKS, np.float64)
        self._now = np.zeros(RING_BLOCKS, np.float64)
        self._overflow = np.zeros(RING_BLOCKS, np.bool_)
        self._written = 0  # blocks written by the callback (only the callback thread increments it)
        self._frames_total = 0  # device frames delivered since open, lost ones included (pacing)
        self._read = 0
        self._ready = threading.Event()
        self._stream: Any = None
        self._resampler: Any = None
        self._mix = np.ones((1, 1), np.float32)
        self._opened_once = False
        self._last_cb = 0.0
        self._in_count = 0  # device frames stamped since open
        self._out_count = 0  # output frames emitted since open
        self._next_ns: float | None = None  # stamp of the next output sample (contiguity)
        self._warmup_frames = 0
        self.clock_lag_ms = 0.0  # mapped clock minus the contiguous stamps, at the last block
        self._last_ratio: float | None = None  # the pace that got the device flagged
        self._probation = False  # reopened after being flagged: hold output until the pace is confirmed

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

    def device(self) -> str:
        return self.spec.source.uri or "default input"

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            **self.clock.stats(),
            "connected": self._stream is not None,
            "device_rate_hz": self.device_rate_hz,
            "device_channels": self.device_channels,
            "clock_lag_ms": round(self.clock_lag_ms, 3),
            "pace_ratio": None if (r := self.pacing.ratio or self._last_ratio) is None else round(r, 3),
            "problem": self.problem,
        }

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
        out = self._drain()
        if not self.pacing.update(self._frames_total, monotonic_ns()):
            self._unpaced(len(out))
            return []
        if self._probation:  # reopened after running off real time: deliver only once the pace is confirmed
            if self.pacing.ratio is None:
                self.counters["drops"] += len(out)
                return []
            self._probation, self.problem = False, None
            log.warning("microphone %r: back at real-time pace (%.3gx)", self.device(), self.pacing.ratio)
        return out

    # internals ------------------------------------------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy the block and its times; nothing else."""
        i = self._written % RING_BLOCKS
        self._host_ns[i] = monotonic_ns()
        n = min(frames, self._ring.shape[1])
        self._ring[i, :n] = indata[:n]
        self._frames[i] = n
        self._adc[i] = time_info.inputBufferAdcTime
        self._now[i] = time_info.currentTime
        self._overflow[i] = bool(status.input_overflow)
        self._frames_total += frames
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
            self.clock.stamp(n, int(self._host_ns[i]), float(self._adc[i]), float(self._now[i]))
            # the fitted line, not the per-block stamp (which snaps to bursty callback times: PulseAudio delivers
            # blocks in pairs) nor the ADC-time correction (on PulseAudio it comes and goes, moving the stamps by ms)
            t_dev = self.clock.fit.to_host(round(self._in_count * 1e9 / self.device_rate_hz))
            s = self._block(self._ring[i, :n], t_dev, t_arrival)
            if s is not None:
                out.append(s)
        self._read = written
        return out

    def _block(self, x: np.ndarray, t_dev_ns: int, t_arrival_ns: int) -> Sample | None:
        """One device block (n, device channels) -> a Sample at the modality's rate and channels, stamped."""
        y = x @ self._mix  # (n, C)
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y)  # (m, C), m ~ n * rate / device rate
        rate = self.spec.rate_hz
        # the mapped host time of output sample `_out_count`: the block's first device sample is at t_dev_ns
        target = t_dev_ns + (self._out_count / rate - self._in_count / self.device_rate_hz) * 1e9
        self._in_count += x.shape[0]
        self.clock_lag_ms = 0.0 if self._next_ns is None else (target - self._next_ns) / 1e6
        m = y.shape[0]
        if m == 0:  # the resampler is still filling
            return None
        ns_per = 1e9 / rate
        nxt = self._next_ns
        if self._in_count <= self._warmup_frames:  # the fit is still finding its line: follow it
            t = target
        elif nxt is None or abs(target - nxt) > STEP_MS * 1e6:
            self.counters["clock_steps"] += 1
            t = target
        else:  # contiguous with the previous block, slewed toward the mapped clock by at most SLEW_PPM
            slew = m * ns_per * SLEW_PPM * 1e-6
            t = nxt + min(slew, max(-slew, target - nxt))
        self._next_ns = t + m * ns_per
        self._out_count += m
        return self._sample(round(t), max(t_arrival_ns, round(t)), np.ascontiguousarray(y, np.float32), rate)

    def _connect(self) -> bool:
        sd, why = load_sounddevice()
        if sd is None:
            self.counters["open_failures"] += 1
            self.backoff.delay_s = self.backoff.max_s  # a library does not appear by itself: retry rarely
            self.backoff.failed()
            self.unavailable(why or "sounddevice cannot be loaded")
            return False
        try:
            soxr = require("soxr", "resampling the microphone to the modality's rate")
        except MissingDependency as err:
            self.counters["open_failures"] += 1
            self.backoff.delay_s = self.backoff.max_s
            self.backoff.failed()
            self.unavailable(str(err))
            return False
        try:
            info = sd.query_devices(self.device_arg, "input")
            src = self.spec.source
            rate = float(src.device_rate_hz or info["default_samplerate"])
            ch = src.device_channels or min(int(info["max_input_channels"]), max(self.channels, 2))
            if src.select_channels:
                ch = max(ch, max(src.select_channels) + 1)
            dev_block = max(1, round(self.blocksize * rate / self.spec.rate_hz))
            self._ring = np.zeros((RING_BLOCKS, dev_block, ch), np.float32)  # (K, block, device channels)
            stream = sd.InputStream(
                device=self.device_arg,
                channels=ch,
                samplerate=rate,
                blocksize=dev_block,
                dtype="float32",  # PortAudio converts from the device's own format
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as err:  # no such device, unsupported rate or channel count
            self.counters["open_failures"] += 1
            self.backoff.failed()
            if not self._opened_once:
                self.unavailable(f"cannot open ({err})")
            self.throttle.warning("microphone %r: cannot open (%s); retrying", self.device(), err)
            return False
        if not self._probation:
            self.problem = None
        self.device_rate_hz, self.device_channels, self.device_name = rate, ch, str(info["name"])
        self._mix = mix_matrix(ch, self.channels, self.spec.source.select_channels)
        self._resampler = (
            soxr.ResampleStream(rate, self.spec.rate_hz, self.channels, dtype="float32", quality="HQ")
            if rate != self.spec.rate_hz
            else None
        )
        self._stream = stream
        self.backoff.succeeded()
        self.counters["reconnects"] += int(self._opened_once)
        if self._opened_once:
            log.warning("microphone %r: reopened", self.device())
        else:
            log.info(
                "microphone %r: opened %r at %g Hz x %d ch (PortAudio %s), delivered as %g Hz x %d ch",
                self.device(), self.device_name, rate, ch, sd.get_portaudio_version()[1], self.spec.rate_hz,
                self.channels,
            )  # fmt: skip
        self._opened_once = True
        self._read = self._written
        self._last_cb = time.monotonic()
        self._in_count = self._out_count = self._frames_total = 0
        self._next_ns = None
        self._warmup_frames = round(WARMUP_S * rate)
        self.clock = AudioClock(rate)
        self.pacing = Pacing(rate)
        self.pacing.update(0, monotonic_ns())
        return True

    def _unpaced(self, dropped: int) -> None:
        """The device clock is off real time: mask (drop what came), say so, and try again later."""
        r = self._last_ratio = self.pacing.ratio or 0.0
        self._probation = True
        self.counters["unpaced"] += 1
        self.counters["drops"] += dropped
        self.problem = f"device delivers {r:.3g}x real time (its clock is not paced)"
        log.warning("microphone %r: %s; masked, reopening in %.1f s", self.device(), self.problem, self.backoff.delay_s)
        self.close()
        self.backoff.failed()

    def _stalled(self) -> None:
        log.warning("microphone %r: no audio for %.1f s; reopening", self.device(), STALL_S)
        self.counters["stalls"] += 1
        self.close()
        self.backoff.failed()
