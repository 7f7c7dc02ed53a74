"""Log-mel spectrogram inside the model, built from Slice, Concat and MatMul, so it exports to ONNX and TensorRT.

The audio bundle therefore takes raw samples in [-1, 1]; no runtime needs an FFT library. The steps:

  frames   no center padding: frame t covers samples [t * hop, t * hop + n_fft); n_frames = 1 + (T - n_fft) // hop.
           When hop divides n_fft: a Reshape to (frames + n_fft / hop - 1, hop) blocks and a Concat of n_fft / hop
           shifted Slices; otherwise a Conv1d with identity kernels (stride hop) copies the frames out
  gain     r^2 = mean(frame^2) + eps per frame; the DFT sees frame / r, whose RMS is ~1 whatever the loudness
  window   periodic Hann, w[n] = 0.5 - 0.5 cos(2 pi n / n_fft) (torch.hann_window's default, scipy's "hann")
  DFT      one fixed MatMul (frames, n_fft) @ (n_fft, 2 * n_freqs) whose columns are s w[n] cos(2 pi k n / n_fft) and
           -s w[n] sin(2 pi k n / n_fft): the real and imaginary parts of s * np.fft.rfft(w * frame), where
           s = 2 / sum(w) = 4 / n_fft gives a full-scale sine magnitude ~1 in its bin, so power stays far below the
           float16 maximum (65504) in half-precision engines; unscaled, a loud tone at n_fft = 512 would overflow
  power    re^2 + im^2, summed inside the mel MatMul: spec^2 @ [mel; mel]
  mel      a fixed (n_freqs, n_mels) MatMul with HTK-scale triangles (mel = 2595 log10(1 + f / 700)), peak 1, no
           area normalization: librosa.filters.mel(htk=True, norm=None)
  log      log(mel + eps); eps = 1e-6 puts the floor 60 dB below a full-scale sine. With the gain the graph computes
           log(mel' + eps / r^2) + log(r^2), mel' = mel / r^2: the same value in exact arithmetic for any r > 0.

Why the gain: INT8 needs the DFT's input on one fixed 8-bit scale, and raw audio spans far more than the
~48 dB that holds (quiet frames vanish). Normalized frames are O(1), so the DFT MatMul (the front end's cost) can
run in int8 while the gain and the log stay float (deploy/quantize.py).

Only the FFT bins some mel filter weighs are computed: the DFT costs about 2 * n_bins * n_fft * T / hop
multiply-adds (it dominates), so n_fft, hop and a lower f_max are the knobs for latency.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float64 triangular filters, equally spaced on the HTK mel scale, peak 1."""
    f_max = sample_rate / 2 if f_max is None else f_max
    bin_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # (F,)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    rising = (bin_hz[None] - lo) / (mid - lo)  # (n_mels, F)
    falling = (hi - bin_hz[None]) / (hi - mid)  # (n_mels, F)
    return np.maximum(0.0, np.minimum(rising, falling)).T  # (F, n_mels)


def dft_kernels(n_fft: int) -> np.ndarray:
    """(2 * F, 1, n_fft) float64 Conv1d weights: scaled Hann-windowed cos rows, then -sin rows (rfft's real, imag)."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    scaled = window * (2.0 / window.sum())  # see the module docstring: full-scale sine -> magnitude ~1
    k = np.arange(n_fft // 2 + 1)[:, None]  # (F, 1)
    phase = 2 * np.pi * k * n[None] / n_fft  # (F, n_fft)
    return np.concatenate([scaled * np.cos(phase), -scaled * np.sin(phase)])[:, None, :]


def n_frames(n_samples: int, n_fft: int, hop: int) -> int:
    """Frames the front end produces for a window of `n_samples` (no center padding)."""
    return 1 + (n_samples - n_fft) // hop


class LogMel(nn.Module):
    """(B, C, T) waveform -> (B, C, n_mels, n_frames) log-mel power; channels are transformed independently."""

    def __init__(
        self,
        sample_rate: float,
        n_fft: int,
        hop: int,
        n_mels: int,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        mel = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)  # (F, n_mels)
        used = np.flatnonzero(mel.any(axis=1))  # bins outside every filter need no DFT row
        lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        kernels = dft_kernels(n_fft)  # (2F, 1, n_fft): cos rows, then sin rows
        n_all = n_fft // 2 + 1
        self.n_fft, self.hop, self.n_freqs, self.eps = n_fft, hop, hi - lo, eps
        # fixed transforms: buffers, not parameters, so the optimizer and weight decay leave them alone
        dft = np.concatenate([kernels[lo:hi], kernels[n_all + lo : n_all + hi]])  # (2 * n_freqs, 1, n_fft)
        self.register_buffer("dft", torch.tensor(dft, dtype=dtype))
        self.register_buffer("mel", torch.tensor(mel[lo:hi], dtype=dtype))  # (n_freqs, n_mels)

    def frames(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """(N, T) waveform -> (N, n_frames, n_fft) frames and (N, n_frames, 1) gains r^2 = mean(frame^2) + eps, from
        ONNX/TensorRT-friendly Slice/Reshape/Concat ops."""
        count = n_frames(wave.shape[1], self.n_fft, self.hop)
        if self.n_fft % self.hop:
            # no whole blocks: identity kernels copy each frame out (costs as much as the DFT; no config needs it)
            eye = torch.eye(self.n_fft, dtype=wave.dtype, device=wave.device)[:, None]  # (n_fft, 1, n_fft)
            frames = nn.functional.conv1d(wave[:, None], eye, stride=self.hop).transpose(1, 2)  # (N, frames, n_fft)
            return frames, (frames * frames).mean(dim=2, keepdim=True) + self.eps
        shifts = self.n_fft // self.hop
        blocks = wave[:, : (count + shifts - 1) * self.hop].reshape(wave.shape[0], -1, self.hop)  # (N, count+s-1, hop)
        frames = torch.cat([blocks[:, i : i + count] for i in range(shifts)], dim=2)  # (N, frames, n_fft)
        # energy per hop block, summed over a frame's blocks: half the work of squaring the frames themselves
        energy = (blocks * blocks).sum(dim=2, keepdim=True)  # (N, count+s-1, 1)
        gain = energy[:, :count]  # (N, frames, 1)
        for i in range(1, shifts):
            gain = gain + energy[:, i : i + count]  # (N, frames, 1)
        gain = gain / self.n_fft + self.eps  # (N, frames, 1)
        return frames, gain

    def forward(self, wave: Tensor) -> Tensor:
        channels = wave.shape[1]
        # -1 keeps the batch axis symbolic in the exported graph
        frames, gain = self.frames(wave.reshape(-1, wave.shape[2]))  # (B*C, frames, n_fft), (B*C, frames, 1): r^2
        one = torch.ones((), dtype=gain.dtype, device=gain.device)  # a tensor: python 1 / x exports as Reciprocal,
        # outside the TensorRT-safe op set
        frames = frames * (one / torch.sqrt(gain))  # (B*C, frames, n_fft), RMS ~1: one int8 scale fits every frame
        basis = self.dft.reshape(self.dft.shape[0], self.n_fft).t()  # (n_fft, 2F); folded to a constant on export
        spec = torch.matmul(frames, basis)  # (B*C, frames, 2F): re, then im
        # re^2 + im^2 then the mel MatMul, as one MatMul of spec^2 with the filterbank stacked twice (no Split/Add)
        mel = torch.matmul(spec * spec, torch.cat([self.mel, self.mel]))  # (B*C, frames, n_mels)
        # log(mel r^2 + eps) without forming mel r^2, which would bring the dynamic range back
        logmel = (torch.log(mel + self.eps * one / gain) + torch.log(gain)).transpose(1, 2)  # (B*C, n_mels, frames)
        return logmel.reshape(-1, channels, logmel.shape[1], logmel.shape[2])  # (B, C, n_mels, frames)
