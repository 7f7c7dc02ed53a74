"""The static TensorRT check (deploy/trt_check.py) on hand-built graphs and on every variant of every built-in
scenario and fusion method. No TensorRT here: these are the rules of onnx-tensorrt's operators.md, checked on the
graph; a GPU build is the only proof (docs/tensorrt.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from _tiny import TINY
from onnx import TensorProto, helper, numpy_helper

from edgefuse.deploy import quantize
from edgefuse.deploy.export import random_feeds
from edgefuse.deploy.trt_check import check_model
from edgefuse.spec import load_spec, parse_spec, spec_to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def graph(nodes, inits, inp=("x", [None, 4]), out=("y", [None, 4]), opset=17) -> onnx.ModelProto:
    def vi(name, dims, t=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, t, ["batch" if d is None else d for d in dims])

    g = helper.make_graph(nodes, "g", [vi(*inp)], [vi(*out)], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def qdq(zp: np.ndarray) -> onnx.ModelProto:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant_x"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dequant_x"),
    ]
    return graph(nodes, {"s": np.float32(0.1), "zp": zp})


def test_symmetric_int8_qdq_passes():
    rep = check_model(qdq(np.int8(0)))
    assert rep.ok and rep.ops == {"DequantizeLinear": 1, "QuantizeLinear": 1}


def test_asymmetric_uint8_qdq_is_refused_naming_the_node():
    rep = check_model(qdq(np.uint8(148)))
    assert not rep.ok
    assert any("'quant_x' (QuantizeLinear): zero point 'zp' is uint8" in e for e in rep.errors)
    assert any("'dequant_x' (DequantizeLinear): input 'q' is UINT8" in e for e in rep.errors)
    assert any("tensor 'q' is UINT8 inside the network" in e for e in rep.errors)


def test_nonzero_int8_zero_point_and_missing_zero_point_are_refused():
    rep = check_model(qdq(np.int8(3)))
    assert [e for e in rep.errors if "zero point" in e] == [
        "node 0 'quant_x' (QuantizeLinear): zero point 'zp' is 3 (asymmetric); TensorRT needs zero point 0",
        "node 1 'dequant_x' (DequantizeLinear): zero point 'zp' is 3 (asymmetric); TensorRT needs zero point 0",
    ]
    no_zp = graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s"], ["q"], name="q0"),
            helper.make_node("DequantizeLinear", ["q", "s"], ["y"], name="dq0"),
        ],
        {"s": np.float32(0.1)},
    )
    assert any("'q0' (QuantizeLinear): no zero point, so its output is UINT8" in e for e in check_model(no_zp).errors)


def test_unsupported_and_custom_domain_ops_are_named():
    nodes = [
        helper.make_node("Unique", ["x"], ["u"], name="find_unique"),
        helper.make_node("Gelu", ["x"], ["y"], name="msft_gelu", domain="com.microsoft"),
    ]
    rep = check_model(graph(nodes, {}))
    assert rep.errors[:2] == [
        "node 0 'find_unique' (Unique): not an operator TensorRT's ONNX parser imports (onnx-tensorrt operators.md)",
        "node 1 'msft_gelu' (Gelu): operator of domain 'com.microsoft'; TensorRT's parser has no such operator",
    ]


def test_operator_dtypes_opset_and_dynamic_axes():
    # MatMul on int32 is not in the table; only the batch axis may be dynamic; opset 21 is past 10.x's 20
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    m = graph(nodes, {"w": np.ones((4, 4), np.int32)}, inp=("x", [None, "T"]), out=("y", [None, 4]))
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT32
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT32
    m.opset_import[0].version = 21
    rep = check_model(m, versions=(10, 11))
    assert "opset 21: TensorRT 10.x's parser reads opsets 9 to 20" in rep.errors
    assert not any("11.x" in e for e in rep.errors)  # 11.x reads up to opset 25
    assert any("'mm' (MatMul): input 'x' is INT32; TensorRT takes FP32, FP16, BF16 here" in e for e in rep.errors)
    assert "input 'x': axis 1 is dynamic ('T'); only the batch axis 0 may be" in rep.errors


def test_dla_refuses_fp32_and_lists_gpu_fallback_layers():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Erf", ["r"], ["y"], name="erf"),
    ]
    m = graph(nodes, {})
    assert check_model(m, dla=True, precision="fp16").ok
    assert check_model(m, dla=True, precision="fp16").warnings == [
        "DLA: 1 nodes have no DLA layer and run on the GPU (fallback): Erf x1"
    ]
    assert "DLA runs fp16 and int8 only" in check_model(m, dla=True, precision="fp32").errors[0]


# -- every variant of every built-in scenario and fusion method -------------------------------------------------------


def _variants(spec, folder: Path) -> dict[str, Path]:
    """fp32, fp16, int8 (CPU) and int8-trt of an untrained model of `spec`, calibrated on random samples."""
    import torch

    from edgefuse.trainer.models import build_model
    from edgefuse.trainer.models.onnx import to_onnx

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    files = {p: folder / f"{p}.onnx" for p in ("fp32", "fp16", "int8", "int8-trt")}
    to_onnx(build_model(spec).eval(), spec, files["fp32"], opset=17)
    quantize.to_fp16(files["fp32"], files["fp16"])
    calib = [random_feeds(spec, 8, seed=1)]
    quantize.to_int8(files["fp32"], files["int8"], calib, None, "nothing")
    quantize.to_int8_trt(files["fp32"], files["int8-trt"], calib)
    return files


def _assert_engine_variants_pass(files: dict[str, Path]) -> None:
    for name in ("fp32", "fp16", "int8-trt"):
        rep = check_model(files[name])
        assert rep.ok, (name, rep.errors[:3])
    cpu = check_model(files["int8"])  # uint8 activations with zero points: ONNX Runtime only
    assert not cpu.ok and any("zero point" in e for e in cpu.errors)
    zps = {(d, int(np.abs(z).max())) for _, d, z in quantize.qdq_zero_points(files["int8-trt"])}
    assert zps == {("int8", 0)}


def _fusions() -> list[str]:
    from edgefuse.trainer.models.fusion import FUSIONS

    return list(FUSIONS)


@pytest.mark.parametrize("fusion", _fusions())
def test_every_fusion_method_passes_in_every_engine_variant(fusion: str, tmp_path: Path):
    data = {**TINY, "model": {**TINY["model"], "fusion": {"method": fusion}}}
    _assert_engine_variants_pass(_variants(parse_spec(data, fusion), tmp_path / fusion))


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_built_in_scenario_passes_in_every_engine_variant(config: str, tmp_path: Path):
    spec = load_spec(CONFIGS / config)
    d = spec_to_dict(spec)
    # the scenario's encoders and fusion at a small width: the same op types, built in a fraction of the time
    d["model"]["dim"] = 16
    _assert_engine_variants_pass(_variants(parse_spec(d, config), tmp_path / config))
