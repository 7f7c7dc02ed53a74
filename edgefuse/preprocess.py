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


def prepare_text(text: str, m: ModalitySpec, buckets: int, ngrams: int) -> np.ndarray:
    """Text -> (max_tokens,) int64 hashed token ids (see edgefuse.text)."""
    return hash_tokens(text, m.shape[0], buckets, ngrams)  # type: ignore[index]
