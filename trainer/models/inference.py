"""The inference form of a trained model: BatchNorm folded into the convolution before it, channels-last weights.

    from edgefuse.trainer.models.inference import for_inference
    fast = for_inference(model)      # same outputs (within float rounding), fewer and faster ops

What torch runs at batch 1 on a CPU is dominated by per-op overhead and the depthwise convolutions, so:
  - a BatchNorm right after a Conv1d/Conv2d in a Sequential is folded into that convolution's weight and bias
    (w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta) and replaced by Identity;
  - 4-D weights go channels-last, the layout oneDNN's depthwise kernels are fastest in (about 1.5-2x per layer).
Measured on the three scenarios' trained models, 1 thread, interleaved: 0.86-0.90x the eager latency
(benchmarks/bench_torch_form.py, BENCHMARKS.md).
Used by the torch backend and by the latency numbers of `edgefuse eval`; training and ONNX export use the model as
trained (ONNX Runtime does its own folding).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every Conv -> BatchNorm pair inside a Sequential, in place; returns how many were folded.

    Only valid for inference: it bakes in the running statistics, so the model must be in eval mode.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode: it bakes in the running statistics")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a_name, b_name in zip(names, names[1:], strict=False):
            conv, norm = seq._modules[a_name], seq._modules[b_name]
            if not (isinstance(conv, _CONV) and isinstance(norm, _NORM) and norm.track_running_stats):
                continue
            if norm.num_features != conv.out_channels:
                continue
            with torch.no_grad():
                scale = norm.running_var.add(norm.eps).rsqrt()
                if norm.affine:
                    scale = scale * norm.weight
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                shift = (bias - norm.running_mean) * scale + (norm.bias if norm.affine else 0.0)
                conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
                conv.bias = nn.Parameter(shift)
            seq._modules[b_name] = nn.Identity()
            folded += 1
    return folded


def for_inference(model: nn.Module, copy_model: bool = True) -> nn.Module:
    """An eval-mode copy (or `model` itself with copy_model=False) with BatchNorm folded and channels-last weights."""
    out = copy.deepcopy(model) if copy_model else model
    out.eval()
    fold_batchnorm(out)
    return out.to(memory_format=torch.channels_last)
