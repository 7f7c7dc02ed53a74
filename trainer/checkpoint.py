"""Run folders: RUN/checkpoint.pt (everything needed to rebuild the model) and RUN/metrics.json (the same metrics).

A checkpoint holds plain values only (the spec as a dict, tensors, numbers, strings), so it loads with
`torch.load(weights_only=True)` and never executes pickled code from a file someone handed you.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse import __version__
from edgefuse._optional import require
from edgefuse.errors import DataError
from edgefuse.spec import ScenarioSpec, SpecError, parse_spec, spec_to_dict

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FORMAT = 1  # bumped when the checkpoint layout changes


class CheckpointError(DataError):
    """A run folder or checkpoint that is missing, unreadable, or does not describe a model edgefuse can build."""


Normalization = dict[str, tuple[np.ndarray, np.ndarray]]  # series modality -> (mean (C,), std (C,))


def library_versions() -> dict[str, str]:
    torch = require("torch", "training")
    return {
        "edgefuse": __version__,
        "torch": str(torch.__version__),  # a TorchVersion object would need a pickle global
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_run(
    out_dir: str | Path,
    spec: ScenarioSpec,
    model: Any,
    normalization: Normalization,
    metrics: dict[str, Any],
    *,
    data_dir: str | Path,
    n_samples: int,
    masked: list[str],
) -> Path:
    """Write RUN/checkpoint.pt and RUN/metrics.json; `masked` are the modalities the model never sees (baselines)."""
    ckpt = {
        **checkpoint_fields(spec, model, normalization, metrics),
        "masked": list(masked),
        "data": {"path": str(Path(data_dir).resolve()), "samples": int(n_samples)},
        "versions": library_versions(),
    }
    if getattr(model, "caption_vocab", None):
        ckpt["caption_vocab"] = list(model.caption_vocab)  # the caption decoder's words (trainer/caption.py)
    return write_checkpoint(out_dir, CHECKPOINT, ckpt, METRICS, metrics)


def checkpoint_fields(
    spec: ScenarioSpec, model: Any, normalization: Normalization, metrics: dict[str, Any], fmt: int = FORMAT
) -> dict[str, Any]:
    """What every checkpoint holds (the run's and the anomaly model's): format, spec, weights, normalization,
    metrics; plain types only, so weights_only loading accepts them."""
    return {
        "format": fmt,
        "spec": spec_to_dict(spec),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalization": {m: {"mean": mean.tolist(), "std": std.tolist()} for m, (mean, std) in normalization.items()},
        "metrics": json.loads(json.dumps(metrics)),
    }


def write_checkpoint(out_dir: str | Path, name: str, ckpt: dict[str, Any], metrics_name: str, metrics: dict) -> Path:
    """Write out_dir/name (through a temporary file, so a crash mid-save never leaves a truncated checkpoint behind)
    and out_dir/metrics_name; returns the checkpoint's path."""
    torch = require("torch", "training")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    tmp = path.with_suffix(".pt.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    (out / metrics_name).write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def normalization_of(ckpt: dict[str, Any]) -> Normalization:
    """The checkpoint's series normalization stats as float32 arrays."""
    return {
        m: (np.asarray(s["mean"], dtype=np.float32), np.asarray(s["std"], dtype=np.float32))
        for m, s in ckpt.get("normalization", {}).items()
    }


def _read(path: Path) -> dict[str, Any]:
    torch = require("torch", "loading a run")
    if not path.parent.is_dir():
        raise CheckpointError(path.parent, "run folder not found (write one with `edgefuse train`)")
    if not path.is_file():
        raise CheckpointError(
            path,
            f"no checkpoint in this run folder: train first (`edgefuse train --out {path.parent}`), or was "
            "training interrupted?",
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for truncated or foreign files
        raise CheckpointError(path, f"unreadable checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"not an edgefuse checkpoint (a {type(ckpt).__name__}, expected a dict)")
    missing = [k for k in ("spec", "state_dict", "normalization", "metrics") if k not in ckpt]
    if missing:
        raise CheckpointError(path, f"not an edgefuse checkpoint: missing {', '.join(missing)}")
    if ckpt.get("format", FORMAT) > FORMAT:
        raise CheckpointError(path, f"checkpoint format {ckpt['format']} is newer than this edgefuse ({FORMAT})")
    return ckpt


def load_run(run_dir: str | Path) -> tuple[ScenarioSpec, Any, dict[str, Any]]:
    """Rebuild a trained model from a run folder: (spec, model in eval mode, the raw checkpoint dict).

    Raises CheckpointError (an edgefuse DataError) naming the file when the folder or checkpoint is missing or
    unreadable, its stored spec fails validation, or the weights do not fit the model the spec describes.
    """
    from edgefuse.trainer.models import build_model

    path = Path(run_dir) / CHECKPOINT
    ckpt = _read(path)
    try:
        spec = parse_spec(ckpt["spec"], f"{path}:spec")
    except SpecError as err:
        raise CheckpointError(path, f"stored spec fails validation:\n{err}") from None
    try:
        model = build_model(spec, ckpt.get("caption_vocab"))
    except SpecError as err:
        raise CheckpointError(path, f"stored spec cannot build a model:\n{err}") from None
    try:
        model.set_normalization(normalization_of(ckpt))
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"weights do not fit the model its spec builds: {str(err)[:300]}") from None
    model.eval()
    return spec, model, ckpt
