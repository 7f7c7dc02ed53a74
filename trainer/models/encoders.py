"""Compact per-modality encoders; each maps one modality's batch to a (B, dim) embedding.

Every encoder is built as `cls(modality_spec, encoder_spec, dim)` and registered in ENCODERS by the `type` name the
scenario YAML uses; `register_encoder` adds one (its config model goes into edgefuse.spec's registry, so a config can
select it without editing spec.py). The last layer of each is Linear + LayerNorm, so all modality tokens reach fusion on one scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor, nn

from edgefuse.spec import (
    CNN1DEncoder,
    DWCNNEncoder,
    GRUEncoder,
    HashedTextEncoder,
    LogMelEncoder,
    ModalitySpec,
    register_encoder_config,
)
from edgefuse.trainer.models.logmel import LogMel


def _projection(width: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _dw_separable_stages(width: int, stages: int) -> tuple[list[nn.Module], int]:
    """`stages` depthwise-separable blocks, each stride 2 and doubling the width; returns (layers, out width)."""
    layers: list[nn.Module] = []
    for _ in range(stages):
        layers += _conv_bn(width, width, 3, 2, groups=width)  # depthwise: spatial mixing per channel
        layers += _conv_bn(width, 2 * width, 1, 1)  # pointwise: channel mixing
        width *= 2
    return layers, width


class DWCNN(nn.Module):
    """Images (B, C, H, W) in [0, 1]: stride-2 stem, depthwise-separable stages, global average pool, projection."""

    def __init__(self, m: ModalitySpec, cfg: DWCNNEncoder, dim: int):
        super().__init__()
        stages, width = _dw_separable_stages(cfg.width, cfg.stages)
        self.features = nn.Sequential(*_conv_bn(m.n_channels, cfg.width, 3, 2), *stages)
        self.proj = _projection(width, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)  # (B, W, H', W')
        return self.proj(h.mean(dim=(2, 3)))  # (B, dim)


class LogMelCNN(nn.Module):
    """Audio (B, C, T) in [-1, 1]: in-model log-mel, input BatchNorm, a small 2D CNN over (mels, frames).

    The CNN output is averaged over time only; the remaining mel bands are flattened into the projection, so the
    embedding keeps where in frequency a pattern sits (a doorbell and an alarm differ mostly in pitch).
    """

    def __init__(self, m: ModalitySpec, cfg: LogMelEncoder, dim: int):
        super().__init__()
        self.logmel = LogMel(m.rate_hz, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.f_min, cfg.f_max)
        # log-mel values sit far from zero mean / unit variance; a learned input norm puts them there
        self.norm = nn.BatchNorm2d(m.n_channels)
        stages, width = _dw_separable_stages(cfg.width, cfg.stages)
        self.features = nn.Sequential(*_conv_bn(m.n_channels, cfg.width, 3, 2), *stages)
        bands = cfg.n_mels
        for _ in range(cfg.stages + 1):  # the stem and every stage halve the mel axis (3x3, stride 2, padding 1)
            bands = (bands + 1) // 2
        self.proj = _projection(width * bands, dim)
        self.spec_augment = 0.0  # mask strength in training (set by the trainer from model.augment); 0 = off

    def forward(self, x: Tensor) -> Tensor:
        spec = self.norm(self.logmel(x))  # (B, C, mels, frames)
        if self.training and self.spec_augment > 0:
            spec = spec_augment(spec, self.spec_augment)
        h = self.features(spec)  # (B, W, bands, frames')
        return self.proj(h.mean(dim=3).flatten(1))  # (B, dim)


def spec_augment(spec: Tensor, strength: float) -> Tensor:
    """SpecAugment-style masks (Park et al., 2019) on a normalized log-mel (B, C, mels, frames): per sample one
    band of up to 15% of the mels and one span of up to 15% of the frames (times `strength`) set to 0 (the mean)."""
    b, _, n_mels, n_frames = spec.shape
    keep = torch.ones(b, 1, n_mels, n_frames, device=spec.device, dtype=spec.dtype)
    for axis, n in ((2, n_mels), (3, n_frames)):
        width = (torch.rand(b, device=spec.device) * 0.15 * min(1.0, strength) * n).long()  # (B,)
        start = (torch.rand(b, device=spec.device) * (n - width + 1).to(spec.dtype)).long()  # (B,)
        pos = torch.arange(n, device=spec.device).unsqueeze(0)  # (1, n)
        band = (pos >= start.unsqueeze(1)) & (pos < (start + width).unsqueeze(1))  # (B, n)
        shape = (b, 1, n, 1) if axis == 2 else (b, 1, 1, n)
        keep = keep * (~band).reshape(shape).to(spec.dtype)
    return spec * keep


class Standardize(nn.Module):
    """Per-channel (x - mean) / std for series in raw units; the statistics are buffers saved with the model."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def set(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Load training-split statistics; a constant channel (std ~ 0) is only centered, never divided by ~0."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
        if mean_t.shape != self.mean.shape or std_t.shape != self.std.shape:
            raise ValueError(f"expected mean and std of shape {tuple(self.mean.shape)}")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
            raise ValueError("mean and std must be finite")
        self.mean.copy_(mean_t)
        self.std.copy_(torch.where(std_t > 1e-6, std_t, torch.ones_like(std_t)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean[:, None]) / self.std[:, None]  # (B, C, T)


class TemporalCNN(nn.Module):
    """Series (B, C, T) in raw units: standardize, `layers` Conv1d+BN+ReLU (stride 2 after the first), mean pool
    (over the whole window, or over `segments` equal stretches of it, concatenated)."""

    def __init__(self, m: ModalitySpec, cfg: CNN1DEncoder, dim: int):
        super().__init__()
        self.standardize = Standardize(m.n_channels)
        layers: list[nn.Module] = []
        c_in = m.n_channels
        for i in range(cfg.layers):
            stride = 1 if i == 0 else 2  # the first layer sees full resolution; later ones halve the length
            layers += [nn.Conv1d(c_in, cfg.width, cfg.kernel, stride, cfg.kernel // 2, bias=False)]
            layers += [nn.BatchNorm1d(cfg.width), nn.ReLU(inplace=True)]
            c_in = cfg.width
        self.features = nn.Sequential(*layers)
        n = m.n_steps  # the feature map's length, known from the spec: static stretch bounds (ONNX-friendly)
        for i in range(cfg.layers):
            n = (n + 2 * (cfg.kernel // 2) - cfg.kernel) // (1 if i == 0 else 2) + 1
        s = cfg.segments
        self.cuts = [min(i * n // s, max(n - 1, 0)) for i in range(s)] + [n]
        self.segments = s
        self.proj = _projection(cfg.width * cfg.segments, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(self.standardize(x))  # (B, width, T')
        if self.segments == 1:
            return self.proj(h.mean(dim=2))  # (B, dim)
        cuts = self.cuts
        parts = [h[:, :, a : max(b, a + 1)].mean(dim=2) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        return self.proj(torch.cat(parts, dim=1))  # (B, width * segments) -> (B, dim)


class SeriesGRU(nn.Module):
    """Series (B, C, T) in raw units: standardize, average-pool by `pool` in time, GRU, the last layer's final state."""

    def __init__(self, m: ModalitySpec, cfg: GRUEncoder, dim: int):
        super().__init__()
        self.standardize = Standardize(m.n_channels)
        self.pool = cfg.pool
        self.skip = m.n_steps % cfg.pool  # the oldest samples that do not fill a pooling bin; the newest are kept
        self.gru = nn.GRU(m.n_channels, cfg.hidden, cfg.layers, batch_first=True)
        self.proj = _projection(cfg.hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.standardize(x)  # (B, C, T)
        if self.pool > 1:
            x = nn.functional.avg_pool1d(x[:, :, self.skip :], self.pool)  # (B, C, T // pool)
        seq = x.transpose(1, 2)  # (B, T', C)
        _, h = self.gru(seq)  # (layers, B, hidden)
        return self.proj(h[-1])  # (B, dim)


class HashedBagOfTokens(nn.Module):
    """Hashed token ids (B, L) int64, 0 = padding: embedding, mean over real tokens, MLP.

    nn.Embedding + a masked mean rather than nn.EmbeddingBag: EmbeddingBag exports poorly to ONNX.
    """

    def __init__(self, m: ModalitySpec, cfg: HashedTextEncoder, dim: int):
        super().__init__()
        self.embed = nn.Embedding(cfg.buckets, cfg.width, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.ReLU(inplace=True), *_projection(cfg.width, dim))

    def forward(self, ids: Tensor) -> Tensor:
        real = (ids != 0).to(self.embed.weight.dtype).unsqueeze(2)  # (B, L, 1)
        summed = (self.embed(ids) * real).sum(dim=1)  # (B, width)
        return self.mlp(summed / real.sum(dim=1).clamp(min=1.0))  # (B, dim); an empty text gives a zero mean


ENCODERS: dict[str, type[nn.Module]] = {
    "dwcnn": DWCNN,
    "logmel_cnn": LogMelCNN,
    "cnn1d": TemporalCNN,
    "gru": SeriesGRU,
    "hashed_embedding": HashedBagOfTokens,
}


def register_encoder(config: type[BaseModel], kinds: tuple[str, ...]) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register an encoder module for modalities of `kinds`, configured by `config` (a pydantic model
    with `type: Literal["<name>"]` and the encoder's parameters). Built as cls(modality_spec, config, dim) and maps a
    modality's batch to (B, dim); `<name>` is then a valid model.encoders.<m>.type in any spec."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        ENCODERS[register_encoder_config(config, kinds)] = cls
        return cls

    return add
