"""FusionModel: one encoder per modality, a learned "missing" token per modality, one fusion method, per-head logits.

    inputs  modality -> (B, *input_shape) float32 (text: int64), raw units as the spec's docstring describes
    mask    (B, M) float32, 1 = present, in spec order
    output  head -> class heads (B, n_classes) logits / temperature + class_bias; multilabel heads (B, K) logits;
            regression heads (B, 1) values in the head's unit (edgefuse/heads.py has the kinds); with a caption
            decoder also `last_context` (B, H), its conditioning

A masked modality never influences the output: its embedding is replaced by the learned missing token. In training
its input is also replaced by zeros before the encoder, so masked values do not reach BatchNorm's batch statistics
either. In eager mode an encoder whose modality is masked in every row of the batch is not run at all.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from edgefuse.errors import InputError
from edgefuse.heads import HEAD_KINDS
from edgefuse.spec import GRUEncoder, LogMelEncoder, ScenarioSpec, SpecError
from edgefuse.trainer.models.caption import CaptionDecoder
from edgefuse.trainer.models.encoders import ENCODERS, Standardize
from edgefuse.trainer.models.fusion import FUSIONS
from edgefuse.trainer.models.logmel import mel_filterbank, n_frames


class FusionModel(nn.Module):
    """The fused classifier a scenario spec describes; build it with build_model(spec)."""

    def __init__(self, spec: ScenarioSpec, caption_vocab: list[str] | None = None):
        super().__init__()
        self.modalities: list[str] = spec.modality_names
        self.kinds: dict[str, str] = spec.head_kinds  # head -> kind, class heads first
        self.heads: list[str] = list(self.kinds)
        self.class_heads: list[str] = spec.heads
        self.regression_heads: list[str] = list(spec.regression)
        self.input_shapes = {m: spec.modalities[m].input_shape for m in self.modalities}
        dim = spec.model.dim
        self.encoders = nn.ModuleDict(
            {
                m: ENCODERS[spec.model.encoders[m].type](spec.modalities[m], spec.model.encoders[m], dim)
                for m in self.modalities
            }
        )
        self.missing = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)  # (M, D)
        classes = {h: HEAD_KINDS[k].size(spec, h) for h, k in self.kinds.items()}
        # the caption head (trainer/caption.py): a "caption" entry of the fusion's heads gives the decoder's context
        self.caption_vocab: list[str] = list(caption_vocab or []) if spec.captions is not None else []
        self.caption_max_tokens = spec.captions.max_tokens if spec.captions is not None else 0
        self.caption: CaptionDecoder | None = None
        if self.caption_vocab:
            cap = spec.captions
            classes["caption"] = cap.hidden  # type: ignore[union-attr]
            self.caption = CaptionDecoder(len(self.caption_vocab), cap.hidden, cap.embed, spec.model.dropout)  # type: ignore[union-attr]
        self.last_context: Tensor | None = None  # (B, H) context of the last forward, when captioning
        fusion = spec.model.fusion
        self.fusion = FUSIONS[fusion.method](len(self.modalities), dim, classes, fusion, spec.model.dropout)
        # per class head, the softmax temperature fitted on the validation split after training (trainer/calibrate.py);
        # the logits are divided by it inside forward, so exported bundles publish calibrated scores
        self.register_buffer("temperature", torch.ones(len(self.class_heads)))
        # per class head, a bias added to the calibrated logits: 0 (scores follow the training split's class
        # frequencies), or minus the log of those frequencies with `train.balanced` (every class equally likely:
        # post-hoc logit adjustment, Menon et al., ICLR 2021); all class heads' classes concatenated
        self.class_slices: dict[str, tuple[int, int]] = {}
        for h in self.class_heads:
            start = sum(b - a for a, b in self.class_slices.values())
            self.class_slices[h] = (start, start + classes[h])
        self.register_buffer("class_bias", torch.zeros(sum(b - a for a, b in self.class_slices.values())))
        # regression heads learn standardized targets; the train split's mean/std turn them back into the unit
        self.register_buffer("target_mean", torch.zeros(len(self.regression_heads)))
        self.register_buffer("target_std", torch.ones(len(self.regression_heads)))
        # multilabel heads: per-label decision thresholds tuned on the validation split, all heads concatenated
        self.label_slices: dict[str, tuple[int, int]] = {}
        self.spec_labels = {h: HEAD_KINDS[k].labels(spec, h) for h, k in self.kinds.items()}  # output names
        for h in spec.multilabel:
            start = sum(b - a for a, b in self.label_slices.values())
            self.label_slices[h] = (start, start + classes[h])
        self.register_buffer("thresholds", torch.full((sum(b - a for a, b in self.label_slices.values()),), 0.5))
        self.last_tokens: Tensor | None = None  # (B, M, D) of the last training forward: the unimodal aux heads

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        # exporting or capturing a CUDA graph: no host reads of tensor values, no data-dependent branches
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        tracing = tracing or (mask.is_cuda and torch.cuda.is_current_stream_capturing())
        if not tracing:
            self._check(inputs, mask)
        present = mask > 0.5  # (B, M)
        tokens = []
        for i, m in enumerate(self.modalities):
            x, keep = inputs[m], present[:, i]  # (B, ...), (B,)
            if not tracing and not bool(keep.any()):  # nothing to encode (a graph must keep every branch)
                tokens.append(self.missing[i].expand(x.shape[0], -1))  # (B, D)
                continue
            if self.training:  # in eval mode the missing token alone hides the input; BatchNorm stats need this
                x = torch.where(keep.reshape((-1,) + (1,) * (x.dim() - 1)), x, torch.zeros_like(x))
            tokens.append(torch.where(keep.unsqueeze(1), self.encoders[m](x), self.missing[i]))  # (B, D)
        z = torch.stack(tokens, dim=1)  # (B, M, D)
        self.last_tokens = z if self.training else None
        logits = self.fusion(z, present.to(z.dtype))
        context = logits.pop("caption", None)  # (B, H): the caption decoder's context, not a classifier
        self.last_context = torch.tanh(context) if context is not None else None
        out = {}
        for k, h in enumerate(self.class_heads):
            a, b = self.class_slices[h]
            out[h] = logits[h] / self.temperature[k] + self.class_bias[a:b]  # (B, n_classes)
        for h in self.label_slices:
            out[h] = logits[h]  # (B, K) logits; sigmoid outside (loss, export)
        for k, h in enumerate(self.regression_heads):
            out[h] = logits[h] * self.target_std[k] + self.target_mean[k]  # (B, 1) in the head's unit
        return {h: out[h] for h in self.heads}

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # checkpoints and bundles written before temperature scaling have no temperature: they load uncalibrated (1);
        # those from before train.balanced have no class bias (0); those from before multilabel/regression heads have
        # none of their (then empty) buffers
        defaults = {"temperature": 1.0, "class_bias": 0.0, "target_mean": 0.0, "target_std": 1.0, "thresholds": 0.5}
        for name, value in defaults.items():
            state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def bundle_outputs(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """forward's outputs -> what a bundle outputs, by output name: "scores_<head>" softmax (class) or sigmoid
        (multilabel) probabilities, "value_<head>" (B, 1) values (regression); float32."""
        return {
            HEAD_KINDS[k].output_prefix + h: HEAD_KINDS[k].activation(out[h].float()) for h, k in self.kinds.items()
        }

    def head_thresholds(self, head: str) -> list[float]:
        """The tuned per-label thresholds of a multilabel head."""
        a, b = self.label_slices[head]
        return [float(t) for t in self.thresholds[a:b]]

    def set_targets_normalization(self, stats: dict[str, tuple[float, float]]) -> None:
        """Per regression head, (mean, std) of its training targets (std <= 0 or NaN is replaced by 1)."""
        for k, h in enumerate(self.regression_heads):
            mean, std = stats.get(h, (0.0, 1.0))
            self.target_mean[k] = float(mean) if np.isfinite(mean) else 0.0
            self.target_std[k] = float(std) if np.isfinite(std) and std > 1e-6 else 1.0

    def aux_loss(self) -> Tensor:
        """The fusion's extra training loss of the last forward (already weighted); a zero tensor if none."""
        aux = self.fusion.aux_loss()
        return aux if aux is not None else torch.zeros((), device=self.missing.device)

    def set_normalization(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Per-channel (mean (C,), std (C,)) of each series modality, from the training split.

        Stored as buffers and applied inside forward, so checkpoints and bundles take raw sensor units.
        """
        for m, (mean, std) in stats.items():
            standardize = getattr(getattr(self.encoders, m, None), "standardize", None)
            if not isinstance(standardize, Standardize):
                raise ValueError(f"normalization stats for '{m}': not a series modality of this model")
            try:
                standardize.set(mean, std)
            except ValueError as err:
                raise ValueError(f"normalization stats for '{m}': {err}") from None

    def _check(self, inputs: dict[str, Tensor], mask: Tensor) -> None:
        batch = mask.shape[0]
        if tuple(mask.shape) != (batch, len(self.modalities)):
            raise InputError(f"mask: expected shape (B, {len(self.modalities)}), got {tuple(mask.shape)}")
        for m in self.modalities:
            x = inputs.get(m)
            if x is None:
                raise InputError(f"{m}: missing from the inputs (every modality needs a tensor; mask absent ones)")
            if tuple(x.shape) != (batch, *self.input_shapes[m]):
                raise InputError(f"{m}: expected shape {(batch, *self.input_shapes[m])}, got {tuple(x.shape)}")


def spec_problems(spec: ScenarioSpec) -> list[tuple[str, str]]:
    """What in a (schema-valid) spec would make an unusable model, as (dotted path, message) pairs."""
    problems: list[tuple[str, str]] = []
    sections = [(k, list(getattr(spec, k))) for k in ("labels", "multilabel", "regression")]
    for kind, names in (("modalities", spec.modality_names), *sections):
        for name in names:
            if "." in name or not name or name == "mask":
                problems.append((f"{kind}.{name}", "name must be non-empty, without '.', and not 'mask'"))
    fusion = spec.model.fusion
    if fusion.method in ("attention", "attention_pool") and spec.model.dim % fusion.heads:
        problems.append(("model.fusion.heads", f"{fusion.heads} heads do not divide model.dim {spec.model.dim}"))
    for m, enc in spec.model.encoders.items():
        if isinstance(enc, GRUEncoder) and m in spec.modalities and enc.pool > spec.modalities[m].n_steps:
            problems.append(
                (f"model.encoders.{m}.pool", f"{enc.pool} exceeds the window's {spec.modalities[m].n_steps} steps")
            )
        if isinstance(enc, LogMelEncoder) and m in spec.modalities:
            problems += _logmel_problems(
                f"model.encoders.{m}", enc, spec.modalities[m].rate_hz, spec.modalities[m].n_steps
            )
    return problems


def _logmel_problems(path: str, enc: LogMelEncoder, rate_hz: float, n_samples: int) -> list[tuple[str, str]]:
    nyquist = rate_hz / 2
    if enc.n_fft > n_samples:
        return [(f"{path}.n_fft", f"{enc.n_fft} is longer than the audio window ({n_samples} samples)")]
    if enc.f_max is not None and enc.f_max > nyquist:
        return [(f"{path}.f_max", f"{enc.f_max} Hz is above the Nyquist frequency {nyquist} Hz")]
    if enc.f_min >= (enc.f_max or nyquist):
        return [(f"{path}.f_min", "must be below f_max")]
    frames = n_frames(n_samples, enc.n_fft, enc.hop)
    mel = mel_filterbank(rate_hz, enc.n_fft, enc.n_mels, enc.f_min, enc.f_max)
    empty = int((mel.max(axis=0) == 0).sum())
    if empty:
        return [
            (
                f"{path}.n_mels",
                f"{empty} of {enc.n_mels} mel filters fall between FFT bins; lower n_mels or raise n_fft",
            )
        ]
    if frames < 2:
        return [(f"{path}.hop", f"the window gives {frames} frame(s); lower hop or n_fft")]
    return []


def build_model(spec: ScenarioSpec, caption_vocab: list[str] | None = None) -> FusionModel:
    """The FusionModel for `spec` (with a caption decoder over `caption_vocab` when the spec has `captions:`);
    raises SpecError naming every setting that cannot make a working model."""
    problems = spec_problems(spec)
    if problems:
        raise SpecError(spec.name, problems)
    return FusionModel(spec, caption_vocab)


def modality_dropout(mask: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero each present modality with probability p, then restore one random originally present modality in any
    row left empty, so every row that had a modality keeps at least one. Returns a new mask."""
    if p <= 0:
        return mask.clone()
    present = mask > 0.5  # (B, M)
    kept = present & (torch.rand(mask.shape, generator=generator, device=mask.device) >= p)  # (B, M)
    emptied = present.any(dim=1) & ~kept.any(dim=1)  # (B,)
    # a uniform pick among the present modalities: the argmax of random scores, masked to present ones
    scores = torch.rand(mask.shape, generator=generator, device=mask.device) + present.to(mask.dtype)  # (B, M)
    pick = nn.functional.one_hot(scores.argmax(dim=1), mask.shape[1]).bool()  # (B, M)
    kept = torch.where(emptied.unsqueeze(1), pick, kept)
    return kept.to(mask.dtype)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as the log-mel transforms and normalization stats not counted)."""
    return sum(p.numel() for p in model.parameters())
