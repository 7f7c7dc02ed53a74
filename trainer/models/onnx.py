"""Export a FusionModel to ONNX for deploy/: one input per modality plus "mask", one output per head (class heads:
softmax "scores_<head>"; multilabel heads: sigmoid "scores_<head>"; regression heads: "value_<head>" (B, 1) in the
head's unit; edgefuse/heads.py).

Exporter: the TorchScript-based tracer (`torch.onnx.export(..., dynamo=False)`). In torch 2.13 it still ships
(with a deprecation warning, silenced here), exports these small static graphs in about a second, emits opset 17
directly, and gives the GRU as the single ONNX GRU op that TensorRT parses. The dynamo exporter also produced a
numerically identical graph of the driving model, but took ~56 s on a busy 2-core machine and could not convert
its opset-18 graph down to 17 (the version converter failed and left opset 18).

The graph uses Conv, BatchNormalization, MatMul, Gemm, Softmax, LayerNormalization, GRU, Gather, Where and
elementwise ops only, all of which TensorRT's ONNX parser supports.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from edgefuse.heads import HEAD_KINDS
from edgefuse.spec import ScenarioSpec
from edgefuse.trainer.models.model import FusionModel


class _ScoresGraph(nn.Module):
    """Positional inputs in spec order, one output per head (FusionModel.bundle_outputs): the exported graph."""

    def __init__(self, model: FusionModel):
        super().__init__()
        self.model = model

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        inputs = dict(zip(self.model.modalities, tensors[:-1], strict=True))
        outputs = self.model.bundle_outputs(self.model(inputs, tensors[-1]))
        scores = tuple(outputs.values())  # each (B, C); spec head order
        if self.model.caption is not None:  # the caption decoder's context, for the step model (deploy/caption.py)
            return (*scores, self.model.last_context)  # (B, H)
        return scores


CONTEXT_OUTPUT = "caption_context"  # the main graph's extra output when the model has a caption decoder


def describe(spec: ScenarioSpec, caption: bool = False) -> dict:
    """The exported graph's interface: {inputs: [{name, dtype, shape}], outputs: [{name, head, labels, shape}]};
    with `caption`, a last output CONTEXT_OUTPUT (B, captions.hidden) feeds the caption step model."""
    inputs = [
        {"name": name, "dtype": m.input_dtype, "shape": ["batch", *m.input_shape]}
        for name, m in spec.modalities.items()
    ]
    inputs.append({"name": "mask", "dtype": "float32", "shape": ["batch", len(spec.modalities)]})
    outputs = []
    for head, k in spec.head_kinds.items():
        kind = HEAD_KINDS[k]
        labels = kind.labels(spec, head)
        outputs.append(
            {"name": f"{kind.output_prefix}{head}", "head": head, "labels": labels, "shape": ["batch", len(labels)]}
        )
    if caption and spec.captions is not None:
        outputs.append(
            {"name": CONTEXT_OUTPUT, "head": "caption", "labels": [], "shape": ["batch", spec.captions.hidden]}
        )
    return {"inputs": inputs, "outputs": outputs}


def example_inputs(spec: ScenarioSpec, batch: int = 2, seed: int = 0) -> tuple[Tensor, ...]:
    """Random tensors of the model's input shapes in spec order, mask last (all present)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for m in spec.modalities.values():
        if m.kind == "text":
            tensors.append(torch.randint(0, 2, (batch, *m.input_shape), generator=gen))  # ids valid for any buckets
        else:
            tensors.append(torch.rand((batch, *m.input_shape), generator=gen))
    tensors.append(torch.ones(batch, len(spec.modalities)))
    return tuple(tensors)


def to_onnx(model: FusionModel, spec: ScenarioSpec, path: Path, opset: int = 17) -> dict:
    """Write `model` (evaluated in eval mode) as an ONNX graph at `path`; returns describe(spec).

    Inputs are named after the modalities (spec order) plus "mask"; outputs one per head (see the module
    docstring); every input and output has the dynamic batch axis "batch".
    """
    desc = describe(spec, caption=model.caption is not None)
    names_in = [t["name"] for t in desc["inputs"]]
    names_out = [t["name"] for t in desc["outputs"]]
    was_training = model.training
    model.eval()
    try:
        export_traced(_ScoresGraph(model), example_inputs(spec), path, names_in, names_out, opset)
    finally:
        model.train(was_training)
    return desc


def export_traced(
    module: nn.Module, example: tuple, path: Path, names_in: list[str], names_out: list[str], opset: int
) -> None:
    """torch.onnx.export with the settings every edgefuse graph uses (the main model, the anomaly model, the caption
    step): the legacy tracer (module docstring), a dynamic "batch" axis on every input and output, constant folding.
    """
    with warnings.catch_warnings():
        # the legacy exporter's deprecation notice and tracer notes about shape checks are expected here, and so is
        # the note that an RNN (GRU encoder, LSTM caption decoder) exported with batch > 1 may differ by batch size
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*(GRU|LSTM)")
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes={name: {0: "batch"} for name in names_in + names_out},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
