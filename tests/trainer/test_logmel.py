"""The in-model log-mel front end against a NumPy reference (np.fft.rfft STFT + the same mel matrix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefuse.trainer.models.logmel import LogMel, dft_kernels, hz_to_mel, mel_filterbank, mel_to_hz, n_frames

RATE, N_FFT, HOP, N_MELS, EPS = 8000, 256, 128, 24, 1e-6


def reference_logmel(wave: np.ndarray, rate: float, n_fft: int, hop: int, mel: np.ndarray, eps: float) -> np.ndarray:
    """(T,) float64 -> (n_mels, frames): Hann-windowed frames without center padding, |2 rfft / sum(w)|^2, mel, log."""
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    starts = range(0, len(wave) - n_fft + 1, hop)
    frames = np.stack([wave[s : s + n_fft] * window for s in starts])  # (frames, n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1) * 2 / window.sum()) ** 2  # (frames, F)
    return np.log(power @ mel + eps).T  # (n_mels, frames)


def _test_signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    tones = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)
    return np.clip(tones + 0.1 * rng.standard_normal(n), -1, 1)


def test_mel_filterbank_is_htk_triangles():
    mel = mel_filterbank(RATE, N_FFT, N_MELS)  # (F, n_mels)
    assert mel.shape == (N_FFT // 2 + 1, N_MELS)
    assert mel.min() >= 0 and mel.max() <= 1
    centers_hz = mel.argmax(axis=0) * RATE / N_FFT
    assert np.all(np.diff(centers_hz) > 0)  # one increasing center per filter
    # centers equally spaced in HTK mel (up to one FFT bin of rounding)
    expected = mel_to_hz(np.linspace(0, hz_to_mel(RATE / 2), N_MELS + 2))[1:-1]
    np.testing.assert_allclose(centers_hz, expected, atol=RATE / N_FFT)
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.5)  # the HTK scale's anchor


def test_logmel_matches_numpy_reference_float32():
    wave = _test_signal(RATE // 2)  # 0.5 s
    module = LogMel(RATE, N_FFT, HOP, N_MELS, eps=EPS)
    got = module(torch.tensor(wave, dtype=torch.float32)[None, None]).numpy()[0, 0]  # (n_mels, frames)
    want = reference_logmel(wave, RATE, N_FFT, HOP, mel_filterbank(RATE, N_FFT, N_MELS), EPS)
    assert got.shape == want.shape == (N_MELS, n_frames(len(wave), N_FFT, HOP))
    assert module.n_freqs == N_FFT // 2 - 1  # DC and Nyquist lie outside every filter
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_logmel_matches_numpy_reference_float64_exactly():
    # in double precision the conv/matmul formulation is the same math as the FFT, to rounding
    wave = _test_signal(RATE // 4, seed=1)
    module = LogMel(RATE, N_FFT, HOP, N_MELS, f_min=100.0, f_max=3000.0, eps=EPS, dtype=torch.float64)
    assert module.n_freqs < 0.8 * (N_FFT // 2 + 1)  # bins outside 100-3000 Hz are not computed at all
    got = module(torch.tensor(wave)[None, None]).numpy()[0, 0]
    want = reference_logmel(wave, RATE, N_FFT, HOP, mel_filterbank(RATE, N_FFT, N_MELS, 100.0, 3000.0), EPS)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_logmel_batches_and_channels_independently():
    rng = np.random.default_rng(2)
    waves = rng.uniform(-1, 1, size=(3, 2, 1000)).astype(np.float32)  # (B, C, T)
    module = LogMel(RATE, N_FFT, HOP, N_MELS)
    out = module(torch.tensor(waves)).numpy()
    assert out.shape == (3, 2, N_MELS, n_frames(1000, N_FFT, HOP))
    single = module(torch.tensor(waves[2, 1])[None, None]).numpy()[0, 0]
    np.testing.assert_allclose(out[2, 1], single, rtol=1e-5, atol=1e-5)


def test_full_scale_sine_has_unit_magnitude_and_fits_float16():
    n_fft = 512
    t = np.arange(4 * n_fft) / RATE
    bin_hz = 32 * RATE / n_fft  # exactly on bin 32
    wave = torch.tensor(np.sin(2 * np.pi * bin_hz * t), dtype=torch.float32)[None, None]
    spec = torch.nn.functional.conv1d(wave, torch.tensor(dft_kernels(n_fft), dtype=torch.float32), stride=n_fft)
    power = spec[0, :257] ** 2 + spec[0, 257:] ** 2  # (F, frames)
    np.testing.assert_allclose(power[32].numpy(), 1.0, rtol=1e-4)
    assert float(power.sum(dim=0).max()) < 2.0  # far below float16's 65504


def test_silence_gives_log_eps():
    out = LogMel(RATE, N_FFT, HOP, N_MELS, eps=EPS)(torch.zeros(1, 1, 512))
    np.testing.assert_allclose(out.numpy(), np.log(EPS), rtol=1e-6)


@pytest.mark.parametrize("hop", [64, 100])  # 100: hop does not divide n_fft, frames come from the conv path
def test_logmel_matches_reference_for_other_hops(hop):
    wave = _test_signal(RATE // 4, seed=3)
    module = LogMel(RATE, N_FFT, hop, N_MELS, eps=EPS, dtype=torch.float64)
    got = module(torch.tensor(wave)[None, None]).numpy()[0, 0]
    want = reference_logmel(wave, RATE, N_FFT, hop, mel_filterbank(RATE, N_FFT, N_MELS), EPS)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_quiet_and_silent_frames_keep_the_reference_value():
    # the per-frame gain must not change the function: a -80 dB passage and digital silence included
    wave = _test_signal(RATE // 4, seed=4)
    wave[: RATE // 8] *= 1e-4
    wave[RATE // 8 : RATE // 8 + 2 * N_FFT] = 0.0
    module = LogMel(RATE, N_FFT, HOP, N_MELS, eps=EPS)
    got = module(torch.tensor(wave, dtype=torch.float32)[None, None]).numpy()[0, 0]
    want = reference_logmel(wave, RATE, N_FFT, HOP, mel_filterbank(RATE, N_FFT, N_MELS), EPS)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got.min() == pytest.approx(np.log(EPS), abs=1e-4)  # silent frames sit exactly on the floor
