"""torch backend: the bundle's model.pt rebuilt as a FusionModel, eager or replayed from CUDA graphs.

    backend = load_backend("bundles/home", backend="torch")                                 # CPU, eager
    backend = load_backend("bundles/home", backend="torch", device="cuda:0", cuda_graphs=True)

Outputs match the ONNX graph's: softmax probabilities named "scores_<head>". model.pt holds the scenario spec and
the state dict (series normalization statistics are buffers in it), so build_model(spec) + load_state_dict gives
back exactly the exported model. This backend needs torch (the `train` extra); the edge runtime does not.

CUDA graphs: one graph per batch size, captured on first use with static input and output tensors after a warm-up
on a side stream; a call copies the feeds into the static inputs, replays the graph and copies the outputs back.
Capture runs every encoder (FusionModel.forward keeps every branch while a stream is capturing), so the warm-up
runs with every modality marked present (warm_up): an encoder whose modality is absent in all rows of the first
batch would otherwise meet its first run (lazy init, cuDNN autotuning) inside the capture.
That removes per-kernel launch overhead, which dominates for these small models at small batches.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.deploy.backends import Backend, Feeds, register_backend
from edgefuse.deploy.bundle import Bundle
from edgefuse.errors import BundleError
from edgefuse.spec import parse_spec

torch = require("torch", "the torch backend")

WARMUP_ITERS = 3  # eager runs on a side stream before capture: lazy init and cuDNN autotuning stay out of the graph


def load_torch_model(bundle: Bundle) -> Any:
    """FusionModel from BUNDLE/model.pt (spec + state dict) in its inference form (BatchNorm folded, channels-last
    weights: trainer/models/inference.py), on the CPU."""
    from edgefuse.trainer.models import build_model
    from edgefuse.trainer.models.inference import for_inference

    path = bundle.dir / (bundle.manifest.torch_file or "model.pt")
    if not path.is_file():
        raise BundleError(f"{path}: missing; the torch backend needs the bundle's model.pt")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        spec = parse_spec(record["spec"], f"{path}:spec")
        model = build_model(spec, record.get("caption_vocab"))
        model.load_state_dict(record["state_dict"])
    except BundleError:
        raise
    except Exception as err:  # noqa: BLE001 - unpickling, spec and state-dict errors all mean a bad model.pt
        raise BundleError(f"{path}: cannot rebuild the model from it: {str(err)[:300]}") from None
    return for_inference(model.eval(), copy_model=False)


def _device(device: str) -> Any:
    """auto | cpu | cuda | cuda:N -> a torch.device; a BundleError when CUDA is asked and absent."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BundleError(f"device {device!r} asked but torch sees no CUDA device (torch {torch.__version__})")
    if not (device == "cpu" or device.startswith("cuda")):
        raise BundleError(f"device {device!r}: the torch backend runs on cpu or cuda[:N]")
    return torch.device(device)


def warm_up(forward: Any, inputs: dict[str, Any], iters: int = WARMUP_ITERS) -> None:
    """Run `forward` `iters` times on copies of `inputs` with every modality marked present, so every encoder (all
    of which a CUDA graph capture runs) has run before the capture, whatever the example batch's mask says."""
    every = {k: v.clone() for k, v in inputs.items()}
    every["mask"].fill_(1.0)  # (B, M): all present
    for _ in range(iters):
        forward(every)


@register_backend("torch")
class TorchBackend(Backend):
    """FusionModel from model.pt; device cpu | cuda | auto; CUDA graphs per batch size with `cuda_graphs=True`."""

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        device: str = "cpu",
        cuda_graphs: bool = False,
        threads: int | None = None,
    ):
        self.device = _device(device)
        cuda = self.device.type == "cuda"
        if precision == "int8" or (precision == "fp16" and not cuda):
            raise BundleError(
                f"the torch backend runs fp32 (and fp16 autocast on CUDA), not {precision} on {self.device.type}; "
                f"use --backend onnxruntime or tensorrt for the {precision} variant"
            )
        if cuda_graphs and not cuda:
            raise BundleError("cuda_graphs needs device='cuda' (CUDA graphs are a CUDA feature)")
        if threads:
            torch.set_num_threads(threads)
        self.precision = precision
        self.inputs = list(bundle.manifest.inputs)
        self.outputs = list(bundle.manifest.outputs)
        self.model = load_torch_model(bundle).to(self.device)
        self.modalities: list[str] = self.model.modalities
        self.max_batch = bundle.manifest.batch.max
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, _Graph] = {}

    def _forward(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """The bundle's outputs ("scores_<head>" probabilities, "value_<head>" values) from input tensors."""
        fp16 = self.precision == "fp16"
        # autocast's weight cache must stay off: cached casts made during capture would be freed under the graph
        amp = torch.autocast("cuda", dtype=torch.float16, cache_enabled=False) if fp16 else contextlib.nullcontext()
        with amp:
            logits = self.model({m: tensors[m] for m in self.modalities}, tensors["mask"])  # head -> (B, C)
        out = self.model.bundle_outputs(logits)
        if self.model.last_context is not None:  # the caption decoder's context (deploy/caption.py)
            out["caption_context"] = self.model.last_context.float()
        return out

    def execute(self, prepared: Feeds) -> Feeds:
        n = len(prepared["mask"])
        if n == 0:
            return {t.name: np.zeros((0, *t.shape[1:]), np.float32) for t in self.outputs}
        with torch.inference_mode():
            if not self.cuda_graphs:
                return self._eager(prepared)
            # one graph per batch size up to the manifest's max; larger batches run in chunks of max
            parts = [
                self._replay({k: v[i : i + self.max_batch] for k, v in prepared.items()})
                for i in range(0, n, self.max_batch)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _eager(self, prepared: Feeds) -> Feeds:
        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in prepared.items()}
        return {k: v.cpu().numpy() for k, v in self._forward(tensors).items()}

    def _replay(self, prepared: Feeds) -> Feeds:
        n = len(prepared["mask"])
        graph = self._graphs.get(n)
        if graph is None:
            graph = self._graphs[n] = _Graph(self._forward, prepared, self.device)
        return graph.replay(prepared)

    def describe(self) -> dict[str, Any]:
        graphs = "CUDA graphs" if self.cuda_graphs else "eager"
        return {**super().describe(), "device": str(self.device), "file": "model.pt", "detail": graphs}

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _Graph:
    """One captured CUDA graph for one batch size: static inputs in, static outputs out."""

    def __init__(self, forward: Any, example: Feeds, device: Any):
        self.inputs = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in example.items()}
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            warm_up(forward, self.inputs)
            forward(self.inputs)  # and the example itself, mask as given
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.outputs = forward(self.inputs)  # static output tensors, rewritten by every replay
        except RuntimeError as err:
            # a forward that reads tensor values on the host (bool(t.any()), .item()) cannot be captured
            raise BundleError(
                f"CUDA graph capture failed: {str(err)[:200]}; the model's forward must not synchronize with the "
                "host while a stream is capturing (run with cuda_graphs=False)"
            ) from None

    def replay(self, feeds: Feeds) -> Feeds:
        for k, v in feeds.items():
            self.inputs[k].copy_(torch.from_numpy(v), non_blocking=False)
        self.graph.replay()
        return {k: v.cpu().numpy() for k, v in self.outputs.items()}  # .cpu() synchronizes and copies
