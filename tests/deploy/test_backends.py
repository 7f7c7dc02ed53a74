"""Model selection: runtime.model (config and command line) -> backend, precision, device, and what auto picks.

`choose` takes the engine finder as an argument, so what `auto` does on a host with a fitting TensorRT engine (or a
DLA engine) is tested here without TensorRT; the real finder over engine tags is tested in test_engine.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from edgefuse.cli import build_parser
from edgefuse.deploy.backends import choose, ort_providers, parse_device
from edgefuse.deploy.backends.tensorrt import chunks, pad_rows
from edgefuse.deploy.engine import PARITY_LIMITS, DlaPlan, build_batches, profile_shapes, tf32_allowed
from edgefuse.errors import BundleError
from edgefuse.manifest import BatchProfile, InputSpec
from edgefuse.runtime.app import _apply_overrides, describe_model
from edgefuse.spec import SpecError, load_spec, parse_spec, spec_to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ENGINE = Path("b/engines/int8-orin-sm87-trt10.3.0-dla0-b1.engine")


def finder(found: dict):
    """An engine finder that knows the engines in `found`: (precision, dla_core) -> path."""
    calls = []

    def find(bundle_dir, precision, dla_core=None):
        calls.append((precision, dla_core))
        return found.get((precision, dla_core))

    find.calls = calls  # type: ignore[attr-defined]
    return find


def test_auto_takes_this_hosts_engine_at_the_asked_precision_else_onnxruntime():
    gpu = Path("b/engines/fp16-x.engine")
    c = choose("b", "auto", "fp16", "auto", find=finder({("fp16", None): gpu}))
    assert (c.backend, c.precision, c.kwargs) == ("tensorrt", "fp16", {"device": 0, "dla_core": None, "engine": gpu})
    assert "fp16-x.engine" in c.reason
    c = choose("b", "auto", "int8", "cuda:1", threads=2, find=finder({}))  # no int8 engine: ONNX Runtime on GPU
    assert (c.backend, c.kwargs) == ("onnxruntime", {"device": "cuda", "threads": 2})
    assert c.reason == "auto: no int8 TensorRT engine fits this host"
    f = finder({("fp32", None): gpu})
    c = choose("b", "auto", "fp32", "cpu", find=f)  # device cpu never looks for an engine
    assert (c.backend, c.kwargs, f.calls) == ("onnxruntime", {"device": "cpu"}, [])


def test_auto_on_dla_needs_that_cores_engine():
    c = choose("b", "auto", "int8", "dla:0", find=finder({("int8", 0): ENGINE}))
    assert c.kwargs == {"device": 0, "dla_core": 0, "engine": ENGINE}
    with pytest.raises(BundleError, match=r"no int8 engine for DLA core 1.*--precision int8 --dla 1"):
        choose("b", "auto", "int8", "dla:1", find=finder({("int8", 0): ENGINE}))


def test_explicit_backends_get_their_device_arguments():
    assert choose("b", "torch", "fp16", "cuda:1", cuda_graphs=True).kwargs == {"device": "cuda:1", "cuda_graphs": True}
    assert choose("b", "torch", "fp32", "auto", threads=3).kwargs == {
        "device": "auto",
        "cuda_graphs": False,
        "threads": 3,
    }
    assert choose("b", "tensorrt", "fp16", "cuda:2").kwargs == {"device": 2, "dla_core": None}
    assert choose("b", "tensorrt", "int8", "dla").kwargs == {"device": 0, "dla_core": 0}
    assert choose("b", "onnxruntime", "fp32", "auto").reason == "asked"
    with pytest.raises(BundleError, match="device 'gpu'"):
        parse_device("gpu")


def test_onnxruntime_providers_best_first():
    have = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert ort_providers(have, "auto") == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_providers(have, "cpu") == ["CPUExecutionProvider"]
    assert ort_providers(["CPUExecutionProvider"], "auto") == ["CPUExecutionProvider"]
    with pytest.raises(BundleError, match="no TensorRT or CUDA execution provider"):
        ort_providers(["CPUExecutionProvider"], "cuda")


def test_runtime_model_from_config_and_command_line():
    spec = load_spec(CONFIGS / "smart_home.yaml")
    assert spec.runtime.model.model_dump() == {
        "backend": "auto",
        "precision": "fp32",
        "device": "auto",
        "cuda_graphs": False,
        "threads": None,
    }
    d = spec_to_dict(spec)
    d["runtime"]["model"] = {"backend": "torch", "precision": "fp16", "device": "cuda:0", "cuda_graphs": True}
    from_yaml = parse_spec(d, "cfg").runtime.model
    assert (from_yaml.backend, from_yaml.precision, from_yaml.device, from_yaml.cuda_graphs) == (
        "torch",
        "fp16",
        "cuda:0",
        True,
    )
    args = build_parser().parse_args(
        ["run", "--config", "c", "--bundle", "b", "--precision", "int8", "--device", "dla:1", "--threads", "2"]
    )
    m = _apply_overrides(spec, args).runtime.model
    assert (m.backend, m.precision, m.device, m.threads, m.cuda_graphs) == ("auto", "int8", "dla:1", 2, False)
    for verb in (["replay", "--session", "s", "--bundle", "b"], ["demo"], ["bench", "--bundle", "b", "--data", "d"]):
        parsed = build_parser().parse_args([*verb, "--device", "cuda:1", "--cuda-graphs"])
        assert (parsed.device, parsed.cuda_graphs) == ("cuda:1", True)


def test_impossible_model_choices_are_spec_errors_with_paths():
    spec = load_spec(CONFIGS / "smart_home.yaml")
    ns = argparse.Namespace
    with pytest.raises(SpecError) as err:
        _apply_overrides(spec, ns(backend="onnxruntime", precision="fp32", device="dla:0", cuda_graphs=True))
    text = str(err.value)
    assert "runtime.model.device: 'dla:0' runs TensorRT engines only" in text
    assert "runtime.model.precision: DLA runs fp16 and int8 only" in text
    assert "runtime.model.cuda_graphs: CUDA graphs are a torch-backend feature" in text
    with pytest.raises(SpecError, match=r"runtime\.model\.device"):
        _apply_overrides(spec, ns(device="gpu0"))
    with pytest.raises(SpecError, match=r"runtime\.model\.device: TensorRT runs on a GPU or DLA"):
        _apply_overrides(spec, ns(backend="tensorrt", device="cpu"))


def test_start_up_line_says_exactly_what_runs():
    info = {
        "name": "tensorrt",
        "precision": "int8",
        "device": "dla:0 (GPU fallback)",
        "file": ENGINE.name,
        "engine_mb": 1.25,
        "detail": "TensorRT 10.3.0, fixed batch 1",
        "reason": "auto: a int8 engine built for this host",
    }
    assert describe_model(info) == (
        "edgefuse: model: tensorrt int8 on dla:0 (GPU fallback): int8-orin-sm87-trt10.3.0-dla0-b1.engine, 1.25 MB, "
        "TensorRT 10.3.0, fixed batch 1 (auto: a int8 engine built for this host)"
    )


# -- engine build plans: DLA static shapes, TF32 ---------------------------------------------------------------------


def test_dla_profiles_are_static_one_engine_per_batch_size():
    inputs = [InputSpec(name="cam", dtype="float32", shape=[-1, 3, 8, 8], kind="image")]
    assert profile_shapes(inputs, BatchProfile(), static_batch=8) == {"cam": ((8, 3, 8, 8),) * 3}
    assert profile_shapes(inputs, BatchProfile()) == {"cam": ((1, 3, 8, 8), (8, 3, 8, 8), (32, 3, 8, 8))}
    assert build_batches(DlaPlan(core=0), None) == [1]  # DLA without --batch: batch 1, never the dynamic range
    assert build_batches(DlaPlan(core=0), [1, 8, 8]) == [1, 8]
    assert build_batches(None, None) == [None]  # GPU: one engine over the manifest's range
    with pytest.raises(BundleError, match="at least 1"):
        profile_shapes(inputs, BatchProfile(), static_batch=0)


def test_tf32_off_for_fp32_unless_allowed_and_limits_per_precision():
    assert not tf32_allowed("fp32", False) and tf32_allowed("fp32", True) and tf32_allowed("fp16", False)
    assert PARITY_LIMITS["fp32"] == 1e-4 < PARITY_LIMITS["fp16"] < PARITY_LIMITS["int8"]


def test_fixed_batch_engines_get_padded_chunks():
    feeds = {"x": np.arange(5, dtype=np.float32)[:, None]}  # (5, 1)
    pieces = chunks(feeds, 2, static=True)
    assert [len(p["x"]) for p, _ in pieces] == [2, 2, 2] and [last for _, last in pieces] == [False, False, True]
    assert pieces[2][0]["x"][:, 0].tolist() == [4.0, 4.0] and len(pieces[2][0]["_rows"]) == 1
    assert "_rows" not in pieces[0][0]
    assert pad_rows(feeds, 5) is feeds
