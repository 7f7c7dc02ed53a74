"""Signal helpers shared by the scenario generators: time grids, colored noise, filters, events, sensor noise.

Everything is vectorized over samples; Python loops run over events (a few dozen per episode), never over
audio samples. All randomness comes from the numpy Generator passed in, so a seed fixes every value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgefuse.spec import ModalitySpec

TAU = 2.0 * math.pi


# ---------------------------------------------------------------------------------------------------------------------
# time grids


def grid_range(m: ModalitySpec, t0: float, t1: float) -> tuple[int, int]:
    """Indices [k0, k1) of the samples of modality `m` an episode renders within [t0, t1].

    Row k of every stream is at t = k / rate_hz. Images include a frame at t1 when it falls on the grid (the frame
    at the tick); audio and series cover [t0, t1), so an episode of duration D has round(D * rate_hz) rows.
    """
    r = m.rate_hz
    k0 = max(0, math.ceil(t0 * r - 1e-6))
    k1 = math.floor(t1 * r + 1e-6) + 1 if m.kind == "image" else round(t1 * r)
    return k0, max(k0, k1)


def grid(m: ModalitySpec, t0: float, t1: float) -> np.ndarray:
    """Times (s, float64) of the samples of `m` within [t0, t1] (see grid_range)."""
    k0, k1 = grid_range(m, t0, t1)
    return np.arange(k0, k1, dtype=np.float64) / m.rate_hz


# ---------------------------------------------------------------------------------------------------------------------
# noise and filters


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """(n,) float32 noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit standard deviation."""
    if n < 2:
        return np.zeros(n, dtype=np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0  # the DC bin is zeroed below; avoid dividing by zero
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return (x / (x.std() + 1e-12)).astype(np.float32)


def spectral_filter(x: np.ndarray, rate_hz: float, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase FFT filter: multiply the spectrum of `x` (n,) by gain(frequencies_hz)."""
    n = x.shape[0]
    spec = np.fft.rfft(x)
    spec *= gain(np.fft.rfftfreq(n, 1.0 / rate_hz))
    return np.fft.irfft(spec, n).astype(np.float32)


def band_gain(lo: float, hi: float, order: float = 4.0) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth band-pass magnitude response (Butterworth-like) between lo and hi Hz."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = np.ones_like(f)
        if lo > 0:
            g /= np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
        if hi > 0:
            g /= np.sqrt(1.0 + (f / hi) ** (2 * order))
        return g

    return gain


def band_noise(rng: np.random.Generator, n: int, rate_hz: float, lo: float, hi: float) -> np.ndarray:
    """(n,) float32 noise band-limited to [lo, hi] Hz, unit standard deviation."""
    x = spectral_filter(rng.standard_normal(n), rate_hz, band_gain(lo, hi))
    return x / (x.std() + 1e-12)


def mains_hum(t: np.ndarray, f0: float, amp: float, phase: float) -> np.ndarray:
    """Mains hum at f0 (50 or 60 Hz) with its odd harmonics, as transformers and fluorescent ballasts make it."""
    s = np.sin(np.mod(TAU * f0 * t + phase, TAU).astype(np.float32))  # float32 sine: half the cost
    s3 = s * s * s
    # sin 3w and sin 5w as polynomials of sin w (Chebyshev identities): one sine per sample instead of three
    h3 = 3 * s - 4 * s3
    h5 = 5 * s - 20 * s3 + 16 * s3 * s * s
    return (amp * (s + 0.5 * h3 + 0.25 * h5)).astype(np.float32)


def smooth_walk(rng: np.random.Generator, n: int, step: float, pull: float = 0.02) -> np.ndarray:
    """(n,) mean-reverting random walk (a discrete Ornstein-Uhlenbeck process): sensor drift.

    Computed as a first-order IIR filter over white steps, in closed form with cumulative sums so there is no
    Python loop over samples: x_k = sum_j (1 - pull)^(k - j) * step * e_j.
    """
    a = 1.0 - pull
    e = rng.standard_normal(n) * step
    out = np.empty(n, dtype=np.float64)
    carry = 0.0
    # scale by a^-k so the recursion becomes a plain cumulative sum; chunks of 512 keep a^-k far from overflow
    for c in range(0, n, 512):
        seg = e[c : c + 512]
        w = a ** -np.arange(1, seg.size + 1, dtype=np.float64)
        out[c : c + seg.size] = (carry + np.cumsum(seg * w)) / w
        carry = out[c + seg.size - 1]
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# events


def overlay(buf: np.ndarray, k0: int, rate_hz: float, onset_s: float, event: np.ndarray) -> None:
    """Add `event` (n,) into `buf`, whose row 0 is sample index k0, starting at time onset_s; clipped to buf."""
    start = round(onset_s * rate_hz) - k0
    a, b = max(0, start), min(buf.shape[0], start + event.shape[0])
    if a < b:
        buf[a:b] += event[a - start : b - start]


def decaying_tone(rate_hz: float, dur_s: float, freqs: list[float], amps: list[float], tau_s: float) -> np.ndarray:
    """Struck resonances (bells, chimes, thuds): sum of sines at `freqs` with an exponential decay.

    Each partial is the imaginary part of z^k with z = exp(i w - 1 / (tau rate)), computed as a cumulative product
    (far cheaper than a sine and an exponential per sample; the rounding drift over a second is ~1e-12).
    """
    n = round(dur_s * rate_hz)
    x = np.zeros(n, dtype=np.float32)
    for f, a in zip(freqs, amps, strict=True):
        if f < rate_hz / 2:
            z = np.complex64(np.exp(complex(-1.0 / (tau_s * rate_hz), TAU * f / rate_hz)))
            x += a * (np.cumprod(np.full(n, z)) / z).imag  # z^0 .. z^(n-1)
    k = min(n, round(0.002 * rate_hz))  # 2 ms attack: no click from a step onset
    x[:k] *= np.arange(k, dtype=np.float32) / max(k, 1)
    return x


def onsets(rng: np.random.Generator, t0: float, t1: float, mean_gap_s: float, min_gap_s: float) -> np.ndarray:
    """Event times in [t0, t1): gaps of min_gap_s plus an exponential part (a Poisson process with dead time)."""
    n = int((t1 - t0) / max(min_gap_s, 1e-3)) + 2
    gaps = min_gap_s + rng.exponential(max(mean_gap_s - min_gap_s, 1e-6), size=n)
    t = t0 + rng.uniform(0, mean_gap_s) + np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
    return t[t < t1]


def hump(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """Raised-cosine pulse of height 1 on [t0, t0 + dur]: a smooth manoeuvre profile (lateral acceleration)."""
    u = np.clip((t - t0) / dur, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(TAU * u)).astype(np.float64)


def hump_integral(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """Closed-form integral of hump() from -inf to t (velocity from acceleration)."""
    u = np.clip((t - t0) / dur, 0.0, 1.0)
    return dur * (0.5 * u - np.sin(TAU * u) / (2 * TAU))


def hump_integral2(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """Closed-form double integral of hump() (displacement from acceleration); linear after the pulse ends."""
    u = np.clip((t - t0) / dur, 0.0, 1.0)
    inside = dur * dur * (0.25 * u * u + (np.cos(TAU * u) - 1.0) / (TAU * TAU))
    after = np.maximum(t - (t0 + dur), 0.0) * dur * 0.5
    return inside + after


# ---------------------------------------------------------------------------------------------------------------------
# sensor output


def pcm_clip(x: np.ndarray) -> np.ndarray:
    """Soft-limit to [-1, 1] like a recorder's limiter (tanh above 0.8), float32."""
    x = np.asarray(x, dtype=np.float32)
    over = np.abs(x) > 0.8
    if over.any():
        x = x.copy()
        s = np.sign(x[over])
        x[over] = s * (0.8 + 0.2 * np.tanh((np.abs(x[over]) - 0.8) / 0.2))
    return x


def camera_finish(img: np.ndarray, rng: np.random.Generator, exposure: float, noise: float) -> np.ndarray:
    """A rendered float BGR image in [0, 255] -> uint8 frame with exposure, shot noise and read noise.

    Darker scenes get more noise, as a camera raises its gain at night.
    """
    x = img.astype(np.float32) * np.float32(exposure)
    sigma = noise * (2.0 + 6.0 / max(exposure, 0.15))
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
