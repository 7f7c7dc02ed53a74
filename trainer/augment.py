"""Training-only augmentation of a batch, per modality kind. Nothing here runs at eval, export or serving.

Each function takes a batch (B, *input_shape) in the units the model takes (docs in edgefuse/spec.py) and returns a
new tensor of the same shape and dtype; `strength` (model.augment in the spec) scales every magnitude, 0 = off.

  image   random shift by up to 1/8 of the size (zero fill: a crop that keeps the shape) + Gaussian noise 0.02
  audio   random circular time shift (up to 1/4 of the window), gain 0.7-1.4x, noise at 2% of the clip's peak
  series  per-channel scaling 1 +- 0.1, jitter of 0.05 channel std, random time shift (up to 1/8), zero fill
  text    token dropout: 10% of the non-padding tokens become padding
  series  with model.rotate_deg > 0: each 3-axis vector (channels <stem>x/y/z) turned by a random rotation of up to
          that many degrees about a random axis, one rotation per sample and rigid group (modalities.<m>.rigid_groups:
          the acc/gyro/magnetometer of one strapped-on unit turn together); cf. Um et al., "Data augmentation of
          wearable sensor data for Parkinson's disease monitoring using convolutional neural networks", ICMI 2017.
          Off by default: it helps where sensors sit differently on the people or rigs seen at test time (UTD-MHAD,
          DSADS) and costs accuracy where the orientation itself is the signal (a sign-language letter; a vehicle's
          fixed IMU), BENCHMARKS.md "Real data"
  series  with model.heading_deg > 0: the wearer turned to a random compass heading (up to that many degrees), one
          angle per sample: each magnetometer vector ('mag' x/y/z channels) turns about its unit's gravity direction
          (the window mean of the unit's 'acc' vector); accelerometers and gyroscopes are kept. Off by default: it
          helps where the magnetometer records which way people faced in each recording place (DSADS: in training,
          the arm magnetometer told standing from standing in the elevator, and it did not hold for new people)

SpecAugment-style time and frequency masks on the log-mel (Park et al., 2019) live inside the audio encoder
(models/encoders.py, LogMelCNN), since the log-mel is computed in the model; they too run in training mode only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from edgefuse.spec import ScenarioSpec, Triplet, compass_units, rigid_group_of, xyz_triplets


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


def axis_angle(u: Tensor, theta: Tensor) -> Tensor:
    """(B, 3, 3) rotations about the unit axes `u` (B, 3) by `theta` (B,) radians (Rodrigues)."""
    b = u.shape[0]
    k = torch.zeros((b, 3, 3), dtype=u.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -u[:, 2], u[:, 1], -u[:, 0]
    k = k - k.transpose(1, 2)  # the cross-product matrix [u]x
    sin, cos = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    return torch.eye(3, dtype=u.dtype).expand(b, 3, 3) + sin * k + (1 - cos) * (k @ k)


def random_rotations(b: int, max_deg: float, g: torch.Generator | None = None) -> Tensor:
    """(B, 3, 3) rotations about a uniformly random axis by an angle uniform in [-max_deg, max_deg]."""
    u = torch.randn((b, 3), generator=g)
    u = u / u.norm(dim=1, keepdim=True).clamp(min=1e-8)  # (B, 3)
    return axis_angle(u, torch.deg2rad(_uniform(b, -max_deg, max_deg, g)))


def rotate_triplets(
    x: Tensor,
    triplets: list[Triplet],
    max_deg: float,
    g: torch.Generator | None = None,
    groups: list[int] | None = None,
) -> Tensor:
    """Rotate every 3-axis vector of a series batch (B, C, T): one random rotation per sample and group (default:
    one group, the modality is one rigid body); the other channels are kept."""
    if not triplets or max_deg <= 0:
        return x
    groups = groups or [0] * len(triplets)
    n = max(groups) + 1
    rot = random_rotations(x.shape[0] * n, max_deg, g).reshape(x.shape[0], n, 3, 3)  # (B, G, 3, 3)
    idx = torch.tensor(triplets)  # (K, 3)
    v = x[:, idx]  # (B, K, 3, T)
    r = rot[:, torch.tensor(groups)]  # (B, K, 3, 3)
    out = x.clone()
    out[:, idx] = torch.einsum("bkij,bkjt->bkit", r, v)
    return out


def turn_heading(x: Tensor, units: list[tuple[Triplet, list[Triplet]]], theta: Tensor) -> Tensor:
    """The wearer facing another compass heading: each magnetometer vector of a series batch (B, C, T) turned by
    `theta` (B,) radians about its unit's gravity direction, the window mean of the unit's accelerometer vector
    (Rodrigues). In the sensor's frame a turn about the vertical moves only the magnetic field: accelerometer and
    gyroscope channels are kept. A unit whose accelerometer window averages to zero (no gravity to turn about, e.g.
    zero-filled) is left as it is. `units`: compass_units() of the modality."""
    if not units:
        return x
    out = x.clone()
    for acc, mags in units:
        k = x[:, list(acc)].mean(dim=2)  # (B, 3) gravity (and the window's mean linear acceleration, ~0)
        norm = k.norm(dim=1, keepdim=True)  # (B, 1)
        angle = torch.where(norm[:, 0] > 1e-6, theta, torch.zeros_like(theta))
        rot = axis_angle(k / norm.clamp(min=1e-8), angle)  # (B, 3, 3)
        for mag in mags:
            out[:, list(mag)] = rot @ x[:, list(mag)]  # (B, 3, T)
    return out


def augment_text(x: Tensor, s: float, g: torch.Generator | None = None) -> Tensor:
    drop = torch.rand(x.shape, generator=g) < 0.1 * min(1.0, s)
    return torch.where(drop, torch.zeros_like(x), x)


AUGMENTATIONS: dict[str, Callable[[Tensor, float, torch.Generator | None], Tensor]] = {
    "image": augment_image,
    "audio": augment_audio,
    "series": augment_series,
    "text": augment_text,
}


def rotation_plan(spec: ScenarioSpec) -> dict[str, tuple[float, list, list]]:
    """modality -> (max degrees, its x/y/z triplets, each triplet's rigid group) for the series modalities that
    model.rotate_deg turns and that have 3-axis channels."""
    plan = {}
    for m, ms in spec.modalities.items():
        deg = spec.rotation_deg(m)
        triplets = xyz_triplets(list(ms.channels)) if deg > 0 else []  # type: ignore[arg-type]
        if triplets:
            plan[m] = (deg, triplets, rigid_group_of(list(ms.channels), ms.rigid_groups))  # type: ignore[arg-type]
    return plan


def heading_plan(spec: ScenarioSpec) -> tuple[float, dict[str, list]] | None:
    """(model.heading_deg, modality -> compass_units) for the series modalities with magnetometer vectors; None when
    off."""
    if spec.model.heading_deg <= 0:
        return None
    plan = {}
    for m, ms in spec.modalities.items():
        if ms.kind == "series":
            units = compass_units(list(ms.channels), ms.rigid_groups)  # type: ignore[arg-type]
            if units:
                plan[m] = units
    return (spec.model.heading_deg, plan) if plan else None


def augment_batch(
    inputs: dict[str, Tensor],
    kinds: dict[str, str],
    strength: float,
    g: torch.Generator | None = None,
    rotate: dict[str, tuple[float, list, list]] | None = None,
    heading: tuple[float, dict[str, list]] | None = None,
) -> dict[str, Tensor]:
    """modality -> augmented batch (a new dict; the inputs are not modified). strength 0 returns them as they are.
    `rotate`: rotation_plan(); `heading`: heading_plan(), one heading turn per sample shared by its modalities."""
    if strength <= 0:
        return dict(inputs)
    out = {m: AUGMENTATIONS[kinds[m]](x, strength, g) for m, x in inputs.items()}
    for m, (deg, triplets, groups) in (rotate or {}).items():
        if m in out:
            out[m] = rotate_triplets(out[m], triplets, deg * min(1.0, strength), g, groups)
    if heading is not None:
        deg, plan = heading
        b = next(iter(out.values())).shape[0]
        theta = torch.deg2rad(_uniform(b, -deg * min(1.0, strength), deg * min(1.0, strength), g))  # (B,)
        for m, units in plan.items():
            if m in out:
                out[m] = turn_heading(out[m], units, theta)
    return out
