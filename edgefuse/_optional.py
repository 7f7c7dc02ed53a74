"""Lazy imports of heavy optional dependencies, with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "torch": "train",
    "tensorboard": "train",
    "tensorrt": "trt",
    "pycuda": "trt",
    "sounddevice": "audio",
    "soxr": "audio",
    "soundfile": "train",
    "cv2": "opencv",
    "prometheus_client": "monitor",
    "aiohttp": "monitor",
    "cryptography": "sign",
    "sacrebleu": "train",
    "rouge_score": "train",
}


class MissingDependency(ImportError):
    pass


def require(module: str, purpose: str = "") -> ModuleType:
    """Import `module` or raise MissingDependency naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        root = module.split(".")[0]
        extra = EXTRAS.get(root)
        hint = f"pip install 'edgefuse[{extra}]'" if extra else f"pip install {root}"
        why = f" for {purpose}" if purpose else ""
        raise MissingDependency(
            f"{root} is needed{why} but cannot be imported ({err}); install it with: {hint}"
        ) from err


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install (e.g. CUDA libs missing) counts as unavailable
        return False
    return True
