"""`edgefuse check-trt`: will TensorRT's ONNX parser take this bundle? A static check, no GPU or TensorRT needed.

    edgefuse check-trt --bundle bundles/home                 # TensorRT 10.x and 11.x, GPU
    edgefuse check-trt --bundle bundles/home --dla           # also: which layers would leave the DLA

Every node of every ONNX variant is checked against the operator table in deploy/trt_ops.py (from onnx-tensorrt's
operators.md) and the rules TensorRT states for explicit quantization:

- each operator is one the parser imports, in the standard domain, at an opset the TensorRT version reads;
- the data type of each node's first input is one the table lists for that operator; UINT8 appears only on network
  inputs/outputs (so an unsigned QuantizeLinear output fails);
- every QuantizeLinear/DequantizeLinear has a constant scale and a constant int8 zero point that is all zeros
  (TensorRT quantizes symmetrically only), and DequantizeLinear reads int8 (not an int32 bias);
- on network inputs and outputs only axis 0 (the batch) is dynamic;
- with --dla, operators with no DLA layer are listed (they run on the GPU with GPU fallback), and fp32 is refused.

The result is printed (each problem names the node and operator) and recorded in the bundle's manifest.json under
`trt_check`; `edgefuse export` runs it too. Passing it means the parser should accept the graph; only a build on a
GPU (`edgefuse build-engine`) proves it, and none has run in this repository (docs/tensorrt.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgefuse.deploy import trt_ops
from edgefuse.errors import BundleError
from edgefuse.manifest import (
    ENGINE_VARIANT,
    MANIFEST_NAME,
    TrtCheckSpec,
    TrtVariantCheck,
    save_manifest,
)

TENSORRT_VERSIONS = (10, 11)
TABLE_SOURCE = "onnx-tensorrt docs/operators.md (10.1 GA), deploy/trt_ops.py"
_NAMES = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.DOUBLE: "DOUBLE",
}
QDQ = ("QuantizeLinear", "DequantizeLinear")


def type_name(elem_type: int) -> str:
    """ONNX element type -> the operator table's name ("FP32", "INT8", ...; others by their ONNX name)."""
    return _NAMES.get(elem_type) or onnx.TensorProto.DataType.Name(elem_type)


@dataclass
class Report:
    """What one graph would meet in TensorRT: errors stop the parse or the build, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class _Graph:
    """Lookups over one graph: element types (after shape inference) and constant values."""

    def __init__(self, model: onnx.ModelProto):
        # types of a graph ONNX cannot infer stay unknown; its ops are still checked
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model)
        g = model.graph
        self.model, self.graph = model, g
        self.types: dict[str, int] = {}
        for v in [*g.input, *g.output, *g.value_info]:
            self.types[v.name] = v.type.tensor_type.elem_type
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for i in g.initializer:
            self.types[i.name] = i.data_type
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
                        self.types[n.output[0]] = a.t.data_type
        self.io = {v.name for v in [*g.input, *g.output]}


def _where(node: onnx.NodeProto, i: int) -> str:
    return f"node {i} '{node.name or node.output[0]}' ({node.op_type})"


def _check_opset(g: _Graph, versions: tuple[int, ...], rep: Report) -> None:
    opset = max((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    for v in versions:
        lo, hi = trt_ops.OPSET_RANGE[v]
        if not lo <= opset <= hi:
            rep.errors.append(f"opset {opset}: TensorRT {v}.x's parser reads opsets {lo} to {hi}")


def _check_node(g: _Graph, i: int, node: onnx.NodeProto, rep: Report) -> None:
    where = _where(node, i)
    if node.domain not in ("", "ai.onnx"):
        rep.errors.append(f"{where}: operator of domain '{node.domain}'; TensorRT's parser has no such operator")
        return
    types = trt_ops.SUPPORTED_TYPES.get(node.op_type)
    if types is None:
        rep.errors.append(f"{where}: not an operator TensorRT's ONNX parser imports (onnx-tensorrt operators.md)")
        return
    first = node.input[0] if node.input and node.input[0] else None
    if first is not None and first in g.types:
        t = type_name(g.types[first])
        if t == "DOUBLE":
            rep.warnings.append(f"{where}: input '{first}' is DOUBLE; TensorRT casts it down to FP32")
        elif t not in types.split():
            rep.errors.append(f"{where}: input '{first}' is {t}; TensorRT takes {types.replace(' ', ', ')} here")
    if node.op_type in QDQ:
        _check_qdq(g, where, node, rep)


def _check_qdq(g: _Graph, where: str, node: onnx.NodeProto, rep: Report) -> None:
    """TensorRT quantizes symmetrically: constant scale, int8 zero point that is all zeros."""
    scale = node.input[1] if len(node.input) > 1 else ""
    if scale not in g.consts:
        rep.errors.append(f"{where}: scale '{scale}' is not a constant; TensorRT needs build-time Q/DQ scales")
    elif not (np.asarray(g.consts[scale]) > 0).all():
        rep.errors.append(f"{where}: scale '{scale}' has values <= 0")
    zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zp is None:
        if node.op_type == "QuantizeLinear":  # without a zero point the output is UINT8 by the ONNX definition
            rep.errors.append(f"{where}: no zero point, so its output is UINT8; TensorRT needs an INT8 zero point 0")
        return
    if zp not in g.consts:
        rep.errors.append(f"{where}: zero point '{zp}' is not a constant; TensorRT needs a constant zero point 0")
        return
    value = np.asarray(g.consts[zp])
    if value.dtype != np.int8:
        rep.errors.append(
            f"{where}: zero point '{zp}' is {value.dtype} (asymmetric {value.dtype} quantization); TensorRT "
            "quantizes to INT8 with zero point 0 only"
        )
    elif value.any():
        rep.errors.append(
            f"{where}: zero point '{zp}' is {int(np.abs(value).max())} (asymmetric); TensorRT needs zero point 0"
        )


def _check_io(g: _Graph, rep: Report) -> None:
    for kind, values in (("input", g.graph.input), ("output", g.graph.output)):
        for v in values:
            if v.name in g.consts:
                continue  # an initializer listed as input (old exporters): not a network input
            dims = v.type.tensor_type.shape.dim
            for axis, d in enumerate(dims[1:], start=1):
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    name = d.dim_param or "unknown"
                    rep.errors.append(
                        f"{kind} '{v.name}': axis {axis} is dynamic ('{name}'); only the batch axis 0 may be"
                    )


def _check_internal_types(g: _Graph, rep: Report) -> None:
    for name, t in g.types.items():
        if t == onnx.TensorProto.UINT8 and name not in g.io:
            rep.errors.append(f"tensor '{name}' is UINT8 inside the network; TensorRT takes UINT8 only as I/O")


def _check_dla(g: _Graph, precision: str | None, rep: Report) -> None:
    if precision == "fp32":
        rep.errors.append("DLA runs fp16 and int8 only; build the fp16 or int8 variant for DLA")
    off = Counter(n.op_type for n in g.graph.node if n.op_type not in trt_ops.DLA_OPS)
    if off:
        ops = ", ".join(f"{op} x{k}" for op, k in sorted(off.items()))
        rep.warnings.append(f"DLA: {sum(off.values())} nodes have no DLA layer and run on the GPU (fallback): {ops}")


def check_model(
    model: onnx.ModelProto | str | Path,
    versions: tuple[int, ...] = TENSORRT_VERSIONS,
    dla: bool = False,
    precision: str | None = None,
) -> Report:
    """Check one ONNX graph against what TensorRT `versions` parse and build (and DLA runs, with `dla`)."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        try:
            model = onnx.load(str(path))
        except Exception as err:  # noqa: BLE001 - protobuf and I/O errors alike mean an unreadable file
            raise BundleError(f"{path}: cannot read as ONNX: {err}") from None
    bad = [v for v in versions if v not in trt_ops.OPSET_RANGE]
    if bad:
        raise BundleError(f"TensorRT {bad[0]}.x is not one of the checked versions {sorted(trt_ops.OPSET_RANGE)}")
    g, rep = _Graph(model), Report()
    rep.ops = dict(sorted(Counter(n.op_type for n in g.graph.node).items()))
    _check_opset(g, versions, rep)
    for i, node in enumerate(g.graph.node):
        _check_node(g, i, node, rep)
    _check_io(g, rep)
    _check_internal_types(g, rep)
    if dla:
        _check_dla(g, precision, rep)
    return rep


MAX_RECORDED = 50  # problems recorded per variant (the CPU int8 variant has one per Q/DQ node)


def check_variants(
    folder: Path, variants: dict[str, Any], versions: tuple[int, ...] = TENSORRT_VERSIONS, dla: bool = False
) -> TrtCheckSpec:
    """Check the ONNX files of `variants` (name -> VariantSpec) in `folder`; the result as the manifest records it."""
    sources = {v: p for p, v in ENGINE_VARIANT.items()}  # variant -> the engine precision built from it
    checked = {}
    for name, v in variants.items():
        precision = sources.get(name)
        rep = check_model(Path(folder) / v.file, versions, dla, precision)
        errors = rep.errors[:MAX_RECORDED]
        if len(rep.errors) > MAX_RECORDED:
            errors.append(f"... and {len(rep.errors) - MAX_RECORDED} more of the same kinds")
        checked[name] = TrtVariantCheck(
            file=v.file, engine_precision=precision, ok=rep.ok, errors=errors, warnings=rep.warnings, ops=rep.ops
        )
    return TrtCheckSpec(
        checked=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        tensorrt=[f"{v}.x" for v in versions],
        dla=dla,
        table=TABLE_SOURCE,
        variants=checked,
    )


def check_bundle(
    bundle_dir: str | Path, versions: tuple[int, ...] = TENSORRT_VERSIONS, dla: bool = False, record: bool = True
) -> TrtCheckSpec:
    """Check every ONNX variant of a bundle; with `record`, store the result in its manifest.json."""
    from edgefuse.deploy.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    result = check_variants(bundle.dir, bundle.manifest.variants, versions, dla)
    if record:
        bundle.manifest.trt_check = result
        save_manifest(bundle.manifest, Path(bundle_dir) / MANIFEST_NAME)
    return result


def engine_variants_ok(result: TrtCheckSpec) -> bool:
    """Whether every variant TensorRT builds an engine from passed (for DLA: the fp16 and int8 ones, as DLA
    builds no fp32 engine)."""
    skip = ("fp32",) if result.dla else ()
    return all(v.ok for v in result.variants.values() if v.engine_precision and v.engine_precision not in skip)


def format_check(result: TrtCheckSpec) -> str:
    """The check as lines: one verdict per variant, then its problems."""
    lines = [f"TensorRT {', '.join(result.tensorrt)} static check{' (DLA)' if result.dla else ''}: {result.table}"]
    for name, v in result.variants.items():
        target = f"engine {v.engine_precision}" if v.engine_precision else "ONNX Runtime only, not built by TensorRT"
        verdict = "ok" if v.ok else f"{len(v.errors)} problem(s)"
        lines.append(f"  {name:9s} {v.file:22s} {verdict}  ({target})")
        lines += [f"    error: {e}" for e in v.errors[:10]]
        if len(v.errors) > 10:
            lines.append(f"    ... {len(v.errors) - 10} more lines in manifest.json trt_check")
        lines += [f"    warning: {w}" for w in v.warnings]
    return "\n".join(lines)


def parse_versions(text: str) -> tuple[int, ...]:
    """ "10,11" -> (10, 11); a BundleError names an unknown version."""
    out = []
    for part in text.split(","):
        part = part.strip().removesuffix(".x")
        if not part.isdigit() or int(part) not in trt_ops.OPSET_RANGE:
            raise BundleError(f"--tensorrt: unknown version {part!r}; choose from {sorted(trt_ops.OPSET_RANGE)}")
        out.append(int(part))
    return tuple(out)


def cli_check_trt(args: argparse.Namespace) -> int:
    """Handler of `edgefuse check-trt`: exit 1 when a variant TensorRT would build has a problem (with --dla: a
    variant a DLA engine would be built from)."""
    result = check_bundle(args.bundle, parse_versions(args.tensorrt), args.dla, record=not args.no_record)
    print(format_check(result))
    if not args.no_record:
        print(f"recorded in {Path(args.bundle) / MANIFEST_NAME} (trt_check)")
    return 0 if engine_variants_ok(result) else 1
