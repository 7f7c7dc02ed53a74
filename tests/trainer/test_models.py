"""The model library: encoders, build_model's checks, normalization, modality dropout, budgets, the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_fusion import random_inputs, tiny_spec

from edgefuse.errors import InputError
from edgefuse.spec import FUSION_METHODS, SpecError, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.models import ENCODERS, build_model, count_params, modality_dropout
from edgefuse.trainer.models.onnx import to_onnx

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
PARAM_BUDGET = 500_000
# ONNX ops TensorRT's parser supports that these models may use; anything else would break engine builds
TRT_OPS = {
    "Add", "AveragePool", "BatchNormalization", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Equal", "Expand",
    "Flatten", "GRU", "Gather", "Gemm", "Greater", "GlobalAveragePool", "LayerNormalization", "Log", "MatMul", "Max",
    "Mul", "Not", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Slice", "Softmax", "Split",
    "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where", "Clip", "Erf", "Pow", "Range", "Tile", "Identity",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_fits_the_parameter_budget_with_every_fusion(path):
    spec = load_spec(path)
    for method in FUSION_METHODS:
        spec.model.fusion.method = method
        n = count_params(build_model(spec))
        assert 10_000 < n <= PARAM_BUDGET, f"{path.stem} with {method}: {n} parameters"


def test_count_params_counts_parameters_not_buffers():
    model = build_model(tiny_spec())
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    assert "encoders.mic.logmel.dft" in dict(model.named_buffers())  # the fixed DFT is a buffer


def test_encoders_project_to_dim():
    spec = tiny_spec(with_text=True)
    model = build_model(spec).eval()
    inputs = random_inputs(spec, 2, 0)
    for name in spec.modality_names:
        assert type(model.encoders[name]) is ENCODERS[spec.model.encoders[name].type]
        assert model.encoders[name](inputs[name]).shape == (2, spec.model.dim)


@pytest.mark.parametrize("stages", [1, 3])
def test_logmel_encoder_stages(stages):
    data = spec_to_dict(tiny_spec())
    data["model"]["encoders"]["mic"]["stages"] = stages
    spec = parse_spec(data, "tiny")
    encoder = build_model(spec).encoders["mic"].eval()
    assert encoder(random_inputs(spec, 2, 0)["mic"]).shape == (2, spec.model.dim)


def test_gru_pool_keeps_the_newest_samples():
    data = spec_to_dict(tiny_spec(with_text=True))  # "can": 3 channels x 20 steps
    data["model"]["encoders"]["can"]["pool"] = 3  # 20 = 2 oldest dropped + 6 bins of 3
    spec = parse_spec(data, "tiny")
    encoder = build_model(spec).encoders["can"].eval()
    x = random_inputs(spec, 1, 0)["can"]
    base = encoder(x)
    oldest, newest = x.clone(), x.clone()
    oldest[..., :2] += 10.0
    newest[..., -1] += 10.0
    torch.testing.assert_close(encoder(oldest), base)
    assert not torch.allclose(encoder(newest), base)


def test_text_encoder_means_over_real_tokens_only():
    spec = tiny_spec(with_text=True)
    encoder = build_model(spec).encoders["words"].eval()
    ids = torch.tensor([[5, 9, 0, 0, 0, 0], [5, 9, 0, 0, 0, 0]])
    padded_differently = torch.tensor([[5, 0, 9, 0, 0, 0], [0, 0, 0, 0, 9, 5]])
    torch.testing.assert_close(encoder(ids), encoder(padded_differently))
    assert torch.isfinite(encoder(torch.zeros(1, 6, dtype=torch.long))).all()  # an empty utterance


def test_set_normalization_makes_raw_units_equivalent():
    spec = tiny_spec(with_text=True)  # series "can" through a GRU
    torch.manual_seed(0)
    model = build_model(spec).eval()
    inputs, mask = random_inputs(spec, 3, 1), torch.ones(3, 4)
    before = model(inputs, mask)
    mean, std = np.array([100.0, -5.0, 0.5]), np.array([10.0, 0.1, 2.0])
    model.set_normalization({"can": (mean, std)})
    scale, shift = (torch.tensor(a, dtype=torch.float32)[:, None] for a in (std, mean))  # (C, 1) each
    raw = dict(inputs, can=inputs["can"] * scale + shift)  # the same signals in raw sensor units
    after_raw = model(raw, mask)
    after_same = model(inputs, mask)
    for head in before:
        torch.testing.assert_close(after_raw[head], before[head], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(after_same[head], before[head], atol=1e-3)  # the stats are really applied
    assert torch.equal(model.state_dict()["encoders.can.standardize.mean"], torch.tensor(mean, dtype=torch.float32))


def test_set_normalization_cnn1d_and_constant_channel():
    spec = tiny_spec()  # series "env" through the 1D CNN
    model = build_model(spec).eval()
    model.set_normalization({"env": (np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.0]))})
    std = model.encoders["env"].standardize.std
    assert std.tolist() == [2.0, 1.0, 1.0]  # a constant channel is centered, not divided by zero
    out = model(random_inputs(spec, 2, 2), torch.ones(2, 3))
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(
    ("stats", "match"),
    [
        ({"cam": (np.zeros(3), np.ones(3))}, "'cam': not a series modality"),
        ({"nope": (np.zeros(3), np.ones(3))}, "'nope': not a series modality"),
        ({"env": (np.zeros(2), np.ones(2))}, "'env': expected mean and std of shape"),
        ({"env": (np.array([0.0, np.nan, 0.0]), np.ones(3))}, "'env': mean and std must be finite"),
    ],
)
def test_set_normalization_rejects_bad_stats(stats, match):
    with pytest.raises(ValueError, match=match):
        build_model(tiny_spec()).set_normalization(stats)


def test_modality_dropout_keeps_one_and_matches_p():
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(20_000, 4)
    out = modality_dropout(mask, 0.25, gen)
    assert out.shape == mask.shape and out.dtype == mask.dtype
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert (out.sum(dim=1) >= 1).all()
    # each modality is dropped with p, except that rows losing all four get one back: p - p^4 / 4
    expected = 0.25 - 0.25**4 / 4
    assert abs(float(1 - out.mean()) - expected) < 0.01
    assert torch.allclose(1 - out.mean(dim=0), torch.full((4,), expected), atol=0.015)  # no modality favoured


def test_modality_dropout_never_adds_modalities():
    gen = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).repeat(500, 1)
    out = modality_dropout(mask, 0.9, gen)
    assert (out <= mask).all()
    assert (out.sum(dim=1) >= 1)[mask.sum(dim=1) > 0].all()
    assert (out[1::3] == 0).all()  # a row with nothing present stays empty
    assert (out[2::3, 1] == 1).all()  # the only present modality is always kept
    assert torch.equal(modality_dropout(mask, 0.0), mask)


def test_modality_dropout_is_reproducible_with_a_generator():
    mask = torch.ones(64, 3)
    a = modality_dropout(mask, 0.5, torch.Generator().manual_seed(3))
    b = modality_dropout(mask, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def _spec_with(**changes) -> dict:
    data = spec_to_dict(tiny_spec())
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"model__fusion__heads": 3}, "model.fusion.heads"),
        ({"model__encoders__mic__n_fft": 1024}, "model.encoders.mic.n_fft"),
        ({"model__encoders__mic__n_mels": 60}, "model.encoders.mic.n_mels"),
        ({"model__encoders__mic__f_max": 3000.0}, "model.encoders.mic.f_max"),
    ],
)
def test_build_model_names_the_bad_setting(changes, path):
    with pytest.raises(SpecError) as err:
        build_model(parse_spec(_spec_with(**changes), "tiny.yaml"))
    assert path in [p for p, _ in err.value.problems]


def test_build_model_names_a_gru_pool_longer_than_the_window():
    data = spec_to_dict(tiny_spec(with_text=True))
    data["model"]["encoders"]["can"]["pool"] = 21
    with pytest.raises(SpecError) as err:
        build_model(parse_spec(data, "tiny.yaml"))
    assert [p for p, _ in err.value.problems] == ["model.encoders.can.pool"]


def test_build_model_refuses_a_modality_named_mask():
    data = spec_to_dict(tiny_spec())
    data["modalities"]["mask"] = data["modalities"].pop("env")
    data["model"]["encoders"]["mask"] = data["model"]["encoders"].pop("env")
    with pytest.raises(SpecError, match="modalities.mask"):
        build_model(parse_spec(data, "tiny.yaml"))


def test_forward_names_a_missing_or_misshapen_input():
    spec = tiny_spec()
    model = build_model(spec)
    inputs = random_inputs(spec, 2, 0)
    with pytest.raises(InputError, match="env: missing"):
        model({k: v for k, v in inputs.items() if k != "env"}, torch.ones(2, 3))
    with pytest.raises(InputError, match=r"mic: expected shape \(2, 1, 500\)"):
        model(dict(inputs, mic=torch.zeros(2, 1, 400)), torch.ones(2, 3))
    with pytest.raises(InputError, match="mask"):
        model(inputs, torch.ones(2, 2))


def test_onnx_graph_description_and_tensorrt_friendly_ops(tmp_path):
    spec = tiny_spec("tensor", with_text=True)
    model = build_model(spec)
    model.train()
    desc = to_onnx(model, spec, tmp_path / "m.onnx")
    assert model.training  # the caller's mode is restored
    assert desc["inputs"][0] == {"name": "cam", "dtype": "float32", "shape": ["batch", 3, 12, 12]}
    assert desc["inputs"][3] == {"name": "words", "dtype": "int64", "shape": ["batch", 6]}
    assert desc["inputs"][4] == {"name": "mask", "dtype": "float32", "shape": ["batch", 4]}
    assert desc["outputs"][1] == {
        "name": "scores_urgent",
        "head": "urgent",
        "labels": ["no", "yes"],
        "shape": ["batch", 2],
    }
    graph = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 17
    for tensor in [*graph.graph.input, *graph.graph.output]:
        assert tensor.type.tensor_type.shape.dim[0].dim_param == "batch"
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= TRT_OPS, f"ops outside the TensorRT-safe set: {ops - TRT_OPS}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_exports_to_tensorrt_friendly_onnx_matching_torch(path, tmp_path):
    spec = load_spec(path)
    mask = torch.tensor([[1.0] * len(spec.modalities), [0.0] + [1.0] * (len(spec.modalities) - 1)])
    assert_exports_like_torch(build_model(spec).eval(), spec, mask, tmp_path / "m.onnx")


def assert_exports_like_torch(model, spec, mask, path) -> None:
    """Export `model` to `path`: only TensorRT-safe ops, and ONNX Runtime's scores equal torch's softmax on random
    inputs (token ids < 50: valid for any bucket count here) with the given (B, M) mask."""
    to_onnx(model, spec, path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops <= TRT_OPS, f"ops outside the TensorRT-safe set: {ops - TRT_OPS}"
    inputs = random_inputs(spec, len(mask), 0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()} | {"mask": mask.numpy()})
    with torch.inference_mode():
        want = model(inputs, mask)
    for head, scores in zip(spec.heads, got, strict=True):
        np.testing.assert_allclose(scores, want[head].softmax(dim=1).numpy(), atol=1e-4, rtol=0)


def test_cnn1d_segments_keep_coarse_time_order_and_export(tmp_path):
    data = spec_to_dict(tiny_spec())  # "env": a series, cnn1d
    data["model"]["encoders"]["env"] = {"type": "cnn1d", "layers": 1, "segments": 4}
    spec = parse_spec(data, "tiny")
    data["model"]["encoders"]["env"]["segments"] = 1
    plain = build_model(parse_spec(data, "tiny")).encoders["env"].eval()
    model = build_model(spec).eval()
    c, t = spec.modalities["env"].input_shape
    early, late = torch.zeros(1, c, t), torch.zeros(1, c, t)
    early[..., 2:5] = 5.0  # the same burst, at the start or at the end of the window
    late[..., t - 5 : t - 2] = 5.0
    with torch.inference_mode():
        torch.testing.assert_close(plain(early), plain(late))  # one mean over the window: the order is lost
        assert not torch.allclose(model.encoders["env"](early), model.encoders["env"](late), atol=1e-3)  # kept
    assert_exports_like_torch(model, spec, torch.ones(2, len(spec.modalities)), tmp_path / "m.onnx")
