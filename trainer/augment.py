"""Training-only augmentation of a batch, per modality kind. Nothing here runs at eval, export or serving.

Each function takes a batch (B, *input_shape) in the units the model takes (docs in edgefuse/spec.py) and returns a
new tensor of the same shape and dtype; `strength` (model.augment in the spec) scales every magnitude, 0 = off.

  image   random shift by up to 1/8 of the size (zero fill: a crop that keeps the shape) + Gaussian noise 0.02
  audio   random circular time shift (up to 1/4 of the window), gain 0.7-1.4x, noise at 2% of the clip's peak
  series  per-channel scaling 1 +- 0.1, jitter of 0.05 channel std, random time shift (up to 1/8), zero fill
  text    token dropout: 10% of the non-padding tokens become padding

SpecAugment-style time and frequency masks on the log-mel (Park et al., 2019) live inside the audio encoder
(models/encoders.py, LogMelCNN), since the log-mel is computed in the model; they too run in training mode only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _uniform(b: int, lo: float, hi: float, g: torch.Generator | None, shape: tuple[int, ...] = ()) -> Tensor:
    return lo + (hi - lo) * torch.rand((b, *shape), generator=g)


def _shift(x: Tensor, max_frac: float, g: torch.Generator | None, dims: tuple[int, ...]) -> Tensor:
    """Shift each sample along each of `dims` by a random whole number of steps (up to max_frac of the size), zero
    fill: a random crop that keeps the shape. Vectorized: one gather per dim, no loop over samples."""
    b = x.shape[0]
    for d in dims:
        n, reach = x.shape[d], int(x.shape[d] * max_frac)
        if reach == 0:
            continue
        k = torch.randint(-reach, reach + 1, (b,), generator=g)  # (B,)
        idx = torch.arange(n).unsqueeze(0) - k.unsqueeze(1)  # (B, n): source position of each output step
        valid = (idx >= 0) & (idx < n)
        view = [b] + [1] * (x.dim() - 1)
        view[d] = n
        idx_full = idx.clamp(0, n - 1).reshape(view).expand_as(x)
        x = torch.gather(x, d, idx_full) * valid.reshape(view).to(x.dtype)
    return x


def augment_image(x: Tensor, s: float, g: torch.Generator | None = None) -> Tensor:
    x = _shift(x, 0.125 * min(1.0, s), g, (2, 3))  # (B, C, H, W)
    return (x + 0.02 * s * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)


def augment_audio(x: Tensor, s: float, g: torch.Generator | None = None) -> Tensor:
    b, _, t = x.shape  # (B, C, T)
    k = torch.randint(0, max(1, int(t * 0.25 * min(1.0, s))), (b,), generator=g)
    idx = (torch.arange(t).unsqueeze(0) - k.unsqueeze(1)) % t  # (B, T) circular shift
    x = torch.gather(x, 2, idx.unsqueeze(1).expand_as(x))
    gain = torch.exp(_uniform(b, -0.35 * s, 0.35 * s, g, (1, 1)))  # 0.7-1.4x at strength 1
    peak = x.abs().amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    return (x * gain + 0.02 * s * peak * torch.randn(x.shape, generator=g)).clamp(-1.0, 1.0)


def augment_series(x: Tensor, s: float, g: torch.Generator | None = None) -> Tensor:
    b, c, _ = x.shape  # (B, C, T), raw units
    std = x.std(dim=(0, 2), keepdim=True).clamp(min=1e-6)  # (1, C, 1) per-channel scale of this batch
    x = x * (1 + _uniform(b, -0.1 * s, 0.1 * s, g, (c, 1)))
    x = x + 0.05 * s * std * torch.randn(x.shape, generator=g)
    return _shift(x, 0.125 * min(1.0, s), g, (2,))


def augment_text(x: Tensor, s: float, g: torch.Generator | None = None) -> Tensor:
    drop = torch.rand(x.shape, generator=g) < 0.1 * min(1.0, s)
    return torch.where(drop, torch.zeros_like(x), x)


AUGMENTATIONS: dict[str, Callable[[Tensor, float, torch.Generator | None], Tensor]] = {
    "image": augment_image,
    "audio": augment_audio,
    "series": augment_series,
    "text": augment_text,
}


def augment_batch(
    inputs: dict[str, Tensor], kinds: dict[str, str], strength: float, g: torch.Generator | None = None
) -> dict[str, Tensor]:
    """modality -> augmented batch (a new dict; the inputs are not modified). strength 0 returns them as they are."""
    if strength <= 0:
        return dict(inputs)
    return {m: AUGMENTATIONS[kinds[m]](x, strength, g) for m, x in inputs.items()}
