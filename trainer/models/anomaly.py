"""AnomalyModel: a multimodal autoencoder that scores how unlike normal data each modality of a sample is.

    inputs  modality -> (B, *input_shape), raw units (the FusionModel's inputs)
    mask    (B, M) float32, 1 = present, in spec order
    output  (scores (B, M), fused (B,)): per-modality scores and the fused score, in validation-normal units

Encoders come from the same ENCODERS registry as the classifier's (their own weights); the modality tokens (a
learned missing token for a masked modality) are flattened into one fused bottleneck of `anomaly.latent` values, and
one small MLP decoder per modality reconstructs a FIXED compact view of that modality from the bottleneck alone:

    image   average-pooled to target.image_size^2 pixels per channel
    audio   log-mel energies, target.audio_bands bands x target.audio_frames frames (absolute level: clipping and
            dropouts change it)
    series  per channel on the standardized series: the window mean, the shape (target.series_steps bin means
            minus the window mean) and the log noise level in target.series_noise_bins bins (RMS of first
            differences: none when stuck)
    text    histogram of token ids folded into target.text_bins bins

The targets are computed inside the graph (no learned layer: a learned target could collapse to a constant and
reconstruct perfectly), then standardized per element with training-split statistics. The model trains on the mean
squared error of the standardized targets; a modality's scored error divides each element's residual by its typical
size on the normal training samples and takes the mean of the largest 1/32 of their squares (a fault often shows
in a few elements only); its score is (log error - mean) / std over the validation split, so
a normal sample scores about 0 and a score of 3 is three validation standard deviations above normal. A masked
modality scores 0 and is left out of the fused score (the max or the mean of the present modalities' scores).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgefuse.spec import AnomalySpec, ModalitySpec, ScenarioSpec
from edgefuse.trainer.models.encoders import ENCODERS, Standardize
from edgefuse.trainer.models.logmel import LogMel, n_frames

NOISE_EPS = 1e-4  # floor of a series channel's noise level (RMS of its standardized first differences)
TAIL = 32  # the scored error is the mean of the largest 1/TAIL of a modality's squared residuals
LOG_EPS = 1e-10  # floor of the audio target's power: digital silence (a dropout) sits far below any room noise


def _pool_kernel(n: int, out: int) -> int:
    return max(1, n // max(1, out))


class ImageTarget(nn.Module):
    """(B, C, H, W) -> (B, C * h * w): non-overlapping average pooling to about image_size^2 pixels."""

    def __init__(self, m: ModalitySpec, cfg: AnomalySpec):
        super().__init__()
        h, w = m.shape  # type: ignore[misc]
        self.kernel = (_pool_kernel(h, cfg.target.image_size), _pool_kernel(w, cfg.target.image_size))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(x, self.kernel, self.kernel).flatten(1)


class AudioTarget(nn.Module):
    """(B, C, T) -> (B, C * bands * frames): log-mel band energies averaged over groups of frames."""

    def __init__(self, m: ModalitySpec, cfg: AnomalySpec, n_fft: int, hop: int, n_mels: int):
        super().__init__()
        self.logmel = LogMel(m.rate_hz, n_fft, hop, min(n_mels, cfg.target.audio_bands), eps=LOG_EPS)  # type: ignore[arg-type]
        self.kernel = _pool_kernel(n_frames(m.n_steps, n_fft, hop), cfg.target.audio_frames)

    def forward(self, x: Tensor) -> Tensor:
        spec = self.logmel(x)  # (B, C, bands, frames)
        return nn.functional.avg_pool2d(spec, (1, self.kernel), (1, self.kernel)).flatten(1)


class SeriesTarget(nn.Module):
    """(B, C, T) raw units -> (B, C * (1 + steps + noise bins)), all on the standardized series: each channel's
    window mean, its shape (bin means minus the window mean: drift and dropouts stand out against the small normal
    movement within a window), and its log noise level per noise bin (RMS of first differences: a stuck sensor has
    none)."""

    def __init__(self, m: ModalitySpec, cfg: AnomalySpec):
        super().__init__()
        self.standardize = Standardize(m.n_channels)
        self.kernel = _pool_kernel(m.n_steps, cfg.target.series_steps)
        self.skip = m.n_steps % self.kernel  # the oldest samples that do not fill a bin; the newest are kept
        # the noise level needs several differences per bin to be a steady estimate: fewer, longer bins
        self.noise_kernel = _pool_kernel(m.n_steps - self.skip, cfg.target.series_noise_bins)

    def forward(self, x: Tensor) -> Tensor:
        z = self.standardize(x)[:, :, self.skip :]  # (B, C, T')
        bins = nn.functional.avg_pool1d(z, self.kernel)  # (B, C, S)
        mean = bins.mean(dim=2, keepdim=True)  # (B, C, 1)
        parts = [mean.flatten(1), (bins - mean).flatten(1)]
        if z.shape[2] >= 2:
            d = z[:, :, 1:] - z[:, :, :-1]  # (B, C, T' - 1)
            d = torch.cat([d, d[:, :, -1:]], dim=2)  # (B, C, T'): one difference per sample, bins line up
            rms = torch.sqrt(nn.functional.avg_pool1d(d * d, self.noise_kernel))  # (B, C, noise bins)
            parts.append(torch.log(rms + NOISE_EPS).flatten(1))
        return torch.cat(parts, dim=1)


class TextTarget(nn.Module):
    """(B, L) int64 ids -> (B, bins): the share of real tokens whose id falls in each bin (id mod bins)."""

    def __init__(self, m: ModalitySpec, cfg: AnomalySpec):
        super().__init__()
        self.register_buffer("bins", torch.arange(cfg.target.text_bins))

    def forward(self, ids: Tensor) -> Tensor:
        real = (ids != 0).to(torch.float32).unsqueeze(2)  # (B, L, 1)
        hits = ((ids % self.bins.shape[0]).unsqueeze(2) == self.bins).to(torch.float32) * real  # (B, L, bins)
        return hits.sum(dim=1) / real.sum(dim=1).clamp(min=1.0)  # (B, bins)


def make_target(m: ModalitySpec, enc: object, cfg: AnomalySpec) -> nn.Module:
    """The fixed target of one modality (audio reuses its encoder's FFT size and hop, whose frames are valid)."""
    if m.kind == "image":
        return ImageTarget(m, cfg)
    if m.kind == "audio":
        return AudioTarget(m, cfg, enc.n_fft, enc.hop, enc.n_mels)  # type: ignore[attr-defined]
    if m.kind == "series":
        return SeriesTarget(m, cfg)
    return TextTarget(m, cfg)


class AnomalyModel(nn.Module):
    """The anomaly autoencoder of a spec with an `anomaly` section; build it with build_anomaly_model(spec)."""

    def __init__(self, spec: ScenarioSpec):
        super().__init__()
        cfg = spec.anomaly
        if cfg is None:
            raise ValueError(f"{spec.name}: the spec has no `anomaly` section")
        self.modalities: list[str] = spec.modality_names
        self.fuse = cfg.fuse
        dim, n = spec.model.dim, len(self.modalities)
        encs = spec.model.encoders
        self.encoders = nn.ModuleDict(
            {m: ENCODERS[encs[m].type](spec.modalities[m], encs[m], dim) for m in self.modalities}
        )
        self.missing = nn.Parameter(torch.randn(n, dim) * 0.02)  # (M, D)
        self.targets = nn.ModuleDict({m: make_target(spec.modalities[m], encs[m], cfg) for m in self.modalities})
        sizes = self._target_sizes(spec)
        self.bottleneck = nn.Sequential(
            nn.Linear(n * dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.latent), nn.LayerNorm(cfg.latent)
        )
        self.decoders = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(cfg.latent, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, sizes[m]))
                for m in self.modalities
            }
        )
        for m in self.modalities:  # per-element standardization of each target (training-split statistics)
            self.register_buffer(f"t_mean_{m}", torch.zeros(sizes[m]))
            self.register_buffer(f"t_std_{m}", torch.ones(sizes[m]))
            self.register_buffer(f"r_std_{m}", torch.ones(sizes[m]))  # residual std per element: the score's scale
        # validation statistics of log error per modality, and the alert thresholds (in score units)
        self.register_buffer("err_mean", torch.zeros(n))
        self.register_buffer("err_std", torch.ones(n))
        self.register_buffer("thresholds", torch.full((n,), float("inf")))
        self.register_buffer("fused_threshold", torch.tensor(float("inf")))

    def _target_sizes(self, spec: ScenarioSpec) -> dict[str, int]:
        with torch.no_grad():
            return {
                m: int(
                    self.targets[m](torch.zeros((2, *spec.modalities[m].input_shape), dtype=_dtype(spec, m))).shape[1]
                )
                for m in self.modalities
            }

    # -- pieces -------------------------------------------------------------------------------------------------------
    def target(self, m: str, x: Tensor) -> Tensor:
        """The standardized fixed target of modality m: (B, K)."""
        return (self.targets[m](x) - getattr(self, f"t_mean_{m}")) / getattr(self, f"t_std_{m}")

    def reconstruct(self, inputs: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """Decoded targets from the fused bottleneck: modality -> (B, K) in standardized target units."""
        present = mask > 0.5  # (B, M)
        tokens = []
        for i, m in enumerate(self.modalities):
            x, keep = inputs[m], present[:, i]
            if self.training:  # masked values must not reach BatchNorm's batch statistics
                x = torch.where(keep.reshape((-1,) + (1,) * (x.dim() - 1)), x, torch.zeros_like(x))
            tokens.append(torch.where(keep.unsqueeze(1), self.encoders[m](x), self.missing[i]))  # (B, D)
        z = self.bottleneck(torch.stack(tokens, dim=1).flatten(1))  # (B, latent)
        return {m: self.decoders[m](z) for m in self.modalities}

    def errors(self, inputs: dict[str, Tensor], mask: Tensor, seen: Tensor | None = None, tail: bool = False) -> Tensor:
        """Reconstruction error per modality (B, M): the mean squared error over the target's elements (the training
        loss), or with `tail` the score's error: each element's residual in units of its typical size on normal
        training samples, and the mean of the largest 1/TAIL (at least one) of their squares (a fault often shows in
        a few elements only, a stuck channel's noise bins, which a mean over all would dilute). The encoders see
        `seen` (default `mask`). Masked modalities' errors are computed too: the caller masks them."""
        recon = self.reconstruct(inputs, mask if seen is None else seen)
        cols = []
        for m in self.modalities:
            res = recon[m] - self.target(m, inputs[m])  # (B, K)
            if tail:  # in units of each element's typical (training) residual: what the model usually misses
                sq = (res / getattr(self, f"r_std_{m}")) ** 2
                cols.append(sq.topk(max(1, sq.shape[1] // TAIL), dim=1).values.mean(dim=1))
            else:
                cols.append((res * res).mean(dim=1))
        return torch.stack(cols, dim=1)  # (B, M)

    def residuals(self, inputs: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """Reconstruction minus target, modality -> (B, K), in standardized target units."""
        recon = self.reconstruct(inputs, mask)
        return {m: recon[m] - self.target(m, inputs[m]) for m in self.modalities}

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        present = mask > 0.5  # (B, M)
        err = self.errors(inputs, mask, tail=True)  # (B, M)
        scores = (torch.log(err + 1e-8) - self.err_mean) / self.err_std  # (B, M)
        scores = torch.where(present, scores, torch.zeros_like(scores))
        if self.fuse == "max":
            fused = torch.where(present, scores, torch.full_like(scores, -1e4)).max(dim=1).values  # (B,)
        else:
            fused = scores.sum(dim=1) / present.to(scores.dtype).sum(dim=1).clamp(min=1.0)  # (B,)
        fused = torch.where(present.any(dim=1), fused, torch.zeros_like(fused))
        return scores, fused

    # -- statistics set by the trainer ----------------------------------------------------------------------------------
    def set_normalization(self, stats: dict[str, tuple]) -> None:
        """Series (mean (C,), std (C,)) from the training split, for the encoders and the series targets alike."""
        for m, (mean, std) in stats.items():
            for module in (
                getattr(self.encoders[m], "standardize", None),
                getattr(self.targets[m], "standardize", None),
            ):
                if isinstance(module, Standardize):
                    module.set(mean, std)

    def set_residual_scale(self, scale: dict[str, Tensor]) -> None:
        """Per-element std (K,) of each modality's residual over the normal training samples."""
        for m, std in scale.items():
            getattr(self, f"r_std_{m}").copy_(std)

    def set_target_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Per-element (mean (K,), std (K,)) of each modality's raw target over the normal training samples."""
        for m, (mean, std) in stats.items():
            getattr(self, f"t_mean_{m}").copy_(mean)
            getattr(self, f"t_std_{m}").copy_(std)


def _dtype(spec: ScenarioSpec, m: str) -> torch.dtype:
    return torch.int64 if spec.modalities[m].kind == "text" else torch.float32


def build_anomaly_model(spec: ScenarioSpec) -> AnomalyModel:
    """The AnomalyModel for a spec with an `anomaly` section (same encoder checks as build_model)."""
    from edgefuse.spec import SpecError
    from edgefuse.trainer.models.model import spec_problems

    problems = spec_problems(spec)
    if problems:
        raise SpecError(spec.name, problems)
    return AnomalyModel(spec)
