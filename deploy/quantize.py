"""Precision variants of an exported ONNX model: FP16 (float16 weights and compute) and INT8 (static QDQ).

Both keep float32 inputs and outputs, so a runtime feeds every variant the same arrays.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx

from edgefuse._optional import require

Feeds = dict[str, np.ndarray]

# INT8 attempts, in order, until one stays within the accuracy budget (export measures it):
#   1. every op ONNX Runtime can quantize: the fastest when it holds;
#   2. the same with the in-model log-mel front end in float: its DFT output spans far more than the 48 dB an
#      8-bit tensor holds, so quiet bands vanish before the log (measured on smart_home: -8.3 points with it
#      quantized, -0.6 without), and with first convolutions of 1-3 input channels in float (int8 kernels gain
#      nothing there: 2.6x slower than fp32 in an ORT profile);
#   3. only the weight-heavy ops (Conv, MatMul, Gemm) with the same exclusions.
# (label, op types to quantize or None for all, keep the front end and thin convolutions in float)
INT8_ATTEMPTS: list[tuple[str, list[str] | None, bool]] = [
    ("all quantizable ops", None, False),
    ("all but the log-mel front end and 1-3 channel convs", None, True),
    ("Conv/MatMul/Gemm only, log-mel front end and 1-3 channel convs in float", ["Conv", "MatMul", "Gemm"], True),
]
FRONT_END = "/logmel/"  # exported node names carry the module path: /model/<modality>/logmel/...


def to_fp16(src: str | Path, dst: str | Path) -> None:
    """FP16 weights and compute, float32 inputs/outputs (Cast nodes at the edges)."""
    float16 = require("onnxconverter_common.float16", "the FP16 variant")
    model = onnx.load(str(src))
    # keep_io_types: the runtime feeds float32 to every variant; int64 token ids stay int64 either way
    with warnings.catch_warnings():
        # "the float32 number 1e-20 will be truncated to 1e-07": expected for epsilons; the accuracy check decides
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    _retarget_casts(half.graph)
    onnx.save(half, str(dst))


def _retarget_casts(graph: onnx.GraphProto) -> None:
    """Casts to float32 whose output the converter retyped to float16 (bool mask -> float) now cast to float16.

    The converter rewrites tensor types but not a Cast's `to` attribute, and ONNX Runtime refuses the mismatch.
    (Blocking Cast instead makes the converter loop forever wrapping its own Cast nodes.)"""
    fp16 = {v.name for v in graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16


class FeedsReader:
    """A CalibrationDataReader over a list of feed batches (ONNX Runtime asks for get_next until None)."""

    def __init__(self, batches: Iterable[Feeds]):
        self._batches = list(batches)
        self._it: Iterator[Feeds] = iter(self._batches)

    def get_next(self) -> Feeds | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Per-channel quantization of rank-1 weights (LayerNorm scales) falls back to per-tensor, and the quantizer
    warns on the root logger once per weight: expected, so hidden for the duration."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def keep_float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes INT8 should leave in float: the log-mel front end and convolutions with 1-3 input channels."""
    weights = {w.name: w for w in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if FRONT_END in n.name:
            out.append(n.name)
        elif n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if group == 1 and weights[n.input[1]].dims[1] <= 3:  # weight (C_out, C_in, k...)
                out.append(n.name)
    return out


def to_int8(
    src: str | Path,
    dst: str | Path,
    calibration: list[Feeds],
    op_types: list[str] | None = None,
    keep_float: bool = False,
) -> None:
    """Static INT8 in QDQ format: per-channel int8 weights, uint8 activations calibrated (MinMax) on `calibration`;
    `keep_float` leaves keep_float_nodes() unquantized."""
    q = require("onnxruntime.quantization", "the INT8 variant")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        # shape inference + graph cleanup first, as ONNX Runtime recommends, so more ops get quantized
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=False)
        reader = FeedsReader(calibration)
        exclude = keep_float_nodes(onnx.load(str(prepped))) if keep_float else []
        # U8S8 (uint8 activations, int8 weights) is the fast path of x86 CPUs; ActivationSymmetric off keeps
        # the full uint8 range for post-ReLU activations
        with _quiet_root_logger():
            q.quantize_static(
                str(prepped),
                str(dst),
                reader,
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax,
                op_types_to_quantize=op_types,
                nodes_to_exclude=exclude,
            )


def quantized_op_types(path: str | Path) -> dict[str, int]:
    """How many nodes of each op type take a dequantized input: which ops the INT8 model runs on int8 data."""
    model = onnx.load(str(path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    counts: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(producers.get(i) == "DequantizeLinear" for i in n.input):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))
