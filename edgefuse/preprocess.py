"""Preprocessing shared by the trainer (dataset loader) and the runtime (live frames), so both see the same tensors.

The bundle manifest records these steps by name; a runtime in another language can reproduce them from it.
"""

from __future__ import annotations

import numpy as np

from edgefuse.spec import ModalitySpec
from edgefuse.text import hash_tokens

# What the manifest says about image preprocessing; prepare_image() does exactly this.
IMAGE_STEPS = {
    "input": "uint8 HxWx3 BGR (OpenCV order) or HxW gray",
    "resize": "cv2.resize to (W, H) with INTER_AREA",
    "color": "BGR -> RGB (or gray)",
    "scale": "x / 255.0 -> float32 in [0, 1]",
    "layout": "HWC -> CHW",
}


def prepare_image(frame: np.ndarray, m: ModalitySpec) -> np.ndarray:
    """A raw OpenCV frame -> the model's (C, H, W) float32 tensor for modality `m`."""
    import cv2  # imported here: the runtime installs without OpenCV (the `opencv` extra, or a system cv2)

    h, w = m.shape  # type: ignore[misc]
    if frame.shape[0] != h or frame.shape[1] != w:
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    if m.n_channels == 3:
        rgb = frame[..., ::-1] if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[..., None] if frame.ndim == 3 else frame[..., None]
    x = rgb.astype(np.float32)  # (H, W, C): converting and scaling before the transpose is 2x faster, same values
    x /= np.float32(255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # (C, H, W)


def mix_matrix(device_channels: int, channels: int, select: list[int] | None) -> np.ndarray:
    """(device_channels, channels) float32: x @ M keeps `select` (in order), or mixes all down to mono, or keeps
    the first `channels` (a missing one stays zero)."""
    m = np.zeros((device_channels, channels), np.float32)
    if select:
        for j, c in enumerate(select[:channels]):
            m[c, j] = 1.0
    elif channels == 1:
        m[:, 0] = 1.0 / device_channels
    else:
        for j in range(min(channels, device_channels)):
            m[j, j] = 1.0
    return m


def prepare_audio(x: np.ndarray, rate_hz: float, m: ModalitySpec) -> np.ndarray:
    """A recording (n, channels) float32 at `rate_hz` -> (n', C) float32 at the modality's rate and channels: the
    channels mixed as the runtime's microphone mixes a device's (mix_matrix, with source.select_channels), then
    resampled with soxr at its HQ quality, the resampler the microphone streams through."""
    src = m.source.select_channels
    if src and max(src) >= x.shape[1]:
        raise ValueError(f"source.select_channels {src} needs {max(src) + 1} channels, the recording has {x.shape[1]}")
    if x.shape[1] != m.n_channels or src:
        x = x @ mix_matrix(x.shape[1], m.n_channels, src)
    if rate_hz != m.rate_hz:
        from edgefuse._optional import require

        soxr = require("soxr", "resampling audio to the modality's rate")
        x = soxr.resample(x, rate_hz, m.rate_hz, quality="HQ")
    return np.ascontiguousarray(x, np.float32)


def prepare_text(text: str, m: ModalitySpec, buckets: int, ngrams: int) -> np.ndarray:
    """Text -> (max_tokens,) int64 hashed token ids (see edgefuse.text)."""
    return hash_tokens(text, m.shape[0], buckets, ngrams)  # type: ignore[index]
