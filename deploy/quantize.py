"""Precision variants of an exported ONNX model: FP16 (float16 weights and compute) and INT8 (static QDQ).

INT8 comes in two variants, one per target:
  model.int8.onnx      ONNX Runtime on CPUs: uint8 activations with zero points (U8S8, x86's fast path), int8 where
                       it pays (INT8_ATTEMPTS);
  model.int8-trt.onnx  TensorRT: symmetric signed int8 Q/DQ (zero point 0, which TensorRT requires) on the inputs of
                       Conv/MatMul/Gemm, where TensorRT fuses DQ -> op into an int8 kernel; per-channel weights, bias
                       left in float (TensorRT dequantizes int8 only, not an int32 bias) (to_int8_trt).
All keep float32 inputs and outputs, so a runtime feeds every variant the same arrays.
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
from onnx import numpy_helper

from edgefuse._optional import require

Feeds = dict[str, np.ndarray]

# INT8 attempts, in order, until one stays within the accuracy budget (export measures it):
#   1. only the log-mel front end's DFT MatMul in int8, everything else float. The DFT is ~40% of the fp32 time at
#      batch 32 and its input, frames divided by their RMS, is O(1) whatever the loudness, so one 8-bit scale fits
#      it (trainer/models/logmel.py); int8 elsewhere costs more in Q/DQ than it saves on these small layers (ORT
#      profile on smart_home, 1 thread: camera/mic/fusion layers 1.3-2.8x slower in QDQ int8 than fp32). Without a
#      log-mel front end this is attempt 5;
#   2. every op ONNX Runtime can quantize;
#   3. the front end's MatMuls (DFT and mel) in int8, its gain, power and log in float, the rest int8 but first
#      convolutions of 1-3 input channels (int8 kernels gain nothing there: 2.6x slower than fp32 in an ORT profile
#      for the camera's, 6x for the microphone's);
#   4. the same with only the DFT MatMul in int8 in the front end: the power spectrum feeding the mel MatMul still
#      spans a frame's full spectral range (smart_home: -21 points with it quantized);
#   5. the whole front end in float: raw spectra span far more than the 48 dB an 8-bit tensor holds, so quiet bands
#      vanish before the log (measured on smart_home before the per-frame gain: -8.3 points quantized, -0.6 not);
#   6. only the weight-heavy ops (Conv, MatMul, Gemm) with the same exclusions.
# (label, op types to quantize or None for all, what stays float: one of KEEP_FLOAT)
INT8_ATTEMPTS: list[tuple[str, list[str] | None, str]] = [
    ("log-mel DFT MatMul only, the rest float", None, "all_but_dft"),
    ("all quantizable ops", None, "nothing"),
    ("log-mel DFT/mel MatMuls int8, rest of the front end and 1-3 channel convs float", None, "front_end_but_matmuls"),
    ("log-mel DFT MatMul int8, rest of the front end and 1-3 channel convs float", None, "front_end_but_dft"),
    ("all but the log-mel front end and 1-3 channel convs", None, "front_end"),
    (
        "Conv/MatMul/Gemm only, log-mel front end and 1-3 channel convs in float",
        ["Conv", "MatMul", "Gemm"],
        "front_end",
    ),
]
KEEP_FLOAT = ("nothing", "all_but_dft", "front_end_but_matmuls", "front_end_but_dft", "front_end")
# policies with int8 MatMuls feeding a float front end
FRONT_END_INT8 = ("all_but_dft", "front_end_but_matmuls", "front_end_but_dft")
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


def dft_matmuls(model: onnx.ModelProto) -> list[str]:
    """The DFT of each log-mel front end: its first MatMul (nodes are in topological order; the mel MatMul follows)."""
    seen: dict[str, str] = {}
    for n in model.graph.node:
        if FRONT_END in n.name and n.op_type == "MatMul":
            seen.setdefault(n.name.split(FRONT_END)[0], n.name)
    return list(seen.values())


def keep_float_nodes(model: onnx.ModelProto, keep: str = "front_end") -> list[str]:
    """Nodes INT8 should leave in float, by policy (one of KEEP_FLOAT):
    "nothing"; "all_but_dft": every node but the front ends' DFT MatMuls ("front_end" when there is none);
    "front_end", "front_end_but_matmuls", "front_end_but_dft": the log-mel front end, all of it, all but its
    MatMuls or all but its DFT, plus convolutions with 1-3 input channels and the node feeding each (else ONNX
    Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into an int8 QLinearConv anyway)."""
    if keep not in KEEP_FLOAT:
        raise ValueError(f"keep must be one of {KEEP_FLOAT}, got {keep!r}")
    if keep == "nothing":
        return []
    dfts = set(dft_matmuls(model))
    if keep == "all_but_dft":
        if dfts:
            return [n.name for n in model.graph.node if n.name not in dfts]
        keep = "front_end"
    weights = {w.name: w for w in model.graph.initializer}
    producers = {o: n.name for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if FRONT_END in n.name:
            matmul_int8 = keep == "front_end_but_matmuls" and n.op_type == "MatMul"
            if not (matmul_int8 or keep == "front_end_but_dft" and n.name in dfts):
                out.append(n.name)
        elif n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if group == 1 and weights[n.input[1]].dims[1] <= 3:  # weight (C_out, C_in, k...)
                out += [n.name] + ([producers[n.input[0]]] if n.input[0] in producers else [])
    return list(dict.fromkeys(out))


def to_int8(
    src: str | Path,
    dst: str | Path,
    calibration: list[Feeds],
    op_types: list[str] | None = None,
    keep_float: str | bool = "nothing",
) -> None:
    """Static INT8 in QDQ format: per-channel int8 weights, uint8 activations calibrated (MinMax) on `calibration`;
    `keep_float` (one of KEEP_FLOAT; True means "front_end") leaves keep_float_nodes() unquantized."""
    q = require("onnxruntime.quantization", "the INT8 variant")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        # shape inference + graph cleanup first, as ONNX Runtime recommends, so more ops get quantized
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=False)
        reader = FeedsReader(calibration)
        keep = {True: "front_end", False: "nothing"}.get(keep_float, keep_float)  # type: ignore[call-overload]
        exclude = keep_float_nodes(onnx.load(str(prepped)), keep)
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
                # the front end's int8 MatMuls hand float to its float power/log: no 8-bit rounding of the spectrum,
                # and ONNX Runtime runs DQ -> MatMul as one MatMulIntegerToFloat instead of QLinearMatMul + Q + DQ
                extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]} if keep in FRONT_END_INT8 else {},
            )


# TensorRT INT8 attempts, in order, until one stays within the accuracy budget (measured in ONNX Runtime, which
# runs symmetric Q/DQ too): (label, what stays float: one of KEEP_FLOAT)
TRT_INT8_OPS = ["Conv", "MatMul", "Gemm"]
TRT_INT8_ATTEMPTS: list[tuple[str, str]] = [
    ("Conv/MatMul/Gemm inputs int8 (symmetric)", "nothing"),
    ("Conv/MatMul/Gemm inputs int8 (symmetric), log-mel front end and 1-3 channel convs float", "front_end"),
]


def to_int8_trt(src: str | Path, dst: str | Path, calibration: list[Feeds], keep_float: str = "nothing") -> None:
    """Static INT8 for TensorRT: QDQ, int8 activations and weights, both symmetric (zero point 0), per-channel
    weights, MinMax on `calibration`; Q/DQ only on the inputs of TRT_INT8_OPS (not their outputs: TensorRT places
    the requantization itself), bias unquantized."""
    q = require("onnxruntime.quantization", "the INT8 variant")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=False)
        exclude = keep_float_nodes(onnx.load(str(prepped)), keep_float)
        with _quiet_root_logger():
            q.quantize_static(
                str(prepped),
                str(dst),
                FeedsReader(calibration),
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=q.CalibrationMethod.MinMax,
                op_types_to_quantize=TRT_INT8_OPS,
                nodes_to_exclude=exclude,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "OpTypesToExcludeOutputQuantization": TRT_INT8_OPS,
                },
            )


def qdq_zero_points(path: str | Path) -> list[tuple[str, str, np.ndarray]]:
    """(node name, zero point dtype name, zero point values) of every Q/DQ node: what TensorRT checks."""
    model = onnx.load(str(path))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = consts[n.input[2]]
            out.append((n.name, zp.dtype.name, zp))
    return out


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
