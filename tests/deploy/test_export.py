"""`edgefuse export`: a real (tiny, briefly trained) run -> a bundle checked by real ONNX Runtime sessions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _tiny import make_run, write_dataset

from edgefuse.cli import main
from edgefuse.deploy import export
from edgefuse.deploy.export import export_bundle, parse_precisions, random_feeds
from edgefuse.errors import BundleError
from edgefuse.trainer.checkpoint import CheckpointError, load_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    make_run(run_dir, steps=30)
    return run_dir


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bundle"
    manifest = export_bundle(run, out, None, ["fp32", "fp16"])
    return out, manifest


def test_bundle_files_and_manifest(bundle):
    out, m = bundle
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.fp16.onnx",
        "model.onnx",
        "model.pt",
    ]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["schema_version"] == 1 and saved["spec"]["name"] == "tiny"
    assert [(i["name"], i["dtype"], i["shape"]) for i in saved["inputs"]] == [
        ("cam", "float32", [-1, 3, 16, 16]),
        ("mic", "float32", [-1, 1, 1000]),
        ("env", "float32", [-1, 2, 20]),
        ("text", "int64", [-1, 8]),
        ("mask", "float32", [-1, 4]),
    ]
    mic = saved["inputs"][1]
    assert (mic["modality"], mic["kind"], mic["window_s"], mic["rate_hz"]) == ("mic", "audio", 0.25, 4000.0)
    assert saved["mask"]["modalities"] == ["cam", "mic", "env", "text"]
    assert [(o["name"], o["labels"]) for o in saved["outputs"]] == [
        ("scores_event", ["x", "y", "z"]),
        ("scores_urgent", ["no", "yes"]),
    ]
    pre = saved["preprocess"]
    assert pre["text"]["tokenizer"] == {**pre["text"]["tokenizer"], "buckets": 64, "ngrams": 2, "max_tokens": 8}
    assert pre["cam"]["steps"]["resize"].startswith("cv2.resize") and pre["env"]["units"] == "raw"
    assert pre["mic"]["window_rows"] == 1000 and pre["env"]["channels"] == ["a", "b"]
    assert saved["batch"] == {"min": 1, "opt": 8, "max": 32}
    assert set(saved["metrics"]) == {"train_accuracy_event", "train_accuracy_urgent"}
    assert saved["normalization"]["env"]["mean"][0] > 15  # raw-unit statistics recorded
    assert {"torch", "onnx", "onnxruntime", "onnxconverter-common"} <= set(saved["versions"])
    # without --data the parity samples are random and the manifest says so; accuracy is unknown
    assert "random samples" in m.parity.source and m.parity.max_abs_diff <= 1e-4
    assert m.variants["fp32"].accuracy is None
    assert set(saved["files"]) == {"model.onnx", "model.fp16.onnx", "model.pt"}


def test_onnx_is_opset17_with_dynamic_batch_and_matches_torch(run, bundle):
    out, _ = bundle
    model = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in model.graph.input)
    spec, torch_model, _ = load_run(run)
    feeds = random_feeds(spec, 5, seed=3)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (p_event, p_urgent) = sess.run(["scores_event", "scores_urgent"], feeds)
    with torch.inference_mode():
        logits = torch_model(
            {m: torch.from_numpy(feeds[m]) for m in spec.modality_names}, torch.from_numpy(feeds["mask"])
        )
    np.testing.assert_allclose(p_event, logits["event"].softmax(1).numpy(), atol=1e-4)
    np.testing.assert_allclose(p_urgent, logits["urgent"].softmax(1).numpy(), atol=1e-4)


def test_fp16_variant_keeps_float32_io_and_close_probabilities(run, bundle):
    out, m = bundle
    spec = load_run(run)[0]
    feeds = random_feeds(spec, 8, seed=4)
    s32 = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(str(out / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in s16.get_inputs()] == [i.type for i in s32.get_inputs()]
    (p32,), (p16,) = s32.run(["scores_event"], feeds), s16.run(["scores_event"], feeds)
    assert p16.dtype == np.float32
    assert np.abs(p16 - p32).max() < 1e-2
    assert "max |p - p_fp32|" in m.variants["fp16"].notes


@pytest.fixture(scope="module")
def data_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("d")
    data = write_dataset(root / "data", n=200)
    make_run(root / "run", steps=40, data_dir=data)
    manifest = export_bundle(root / "run", root / "bundle", data, ["fp32", "fp16", "int8"])
    return root / "bundle", manifest


def test_with_data_every_variant_records_held_out_accuracy(data_bundle):
    out, m = data_bundle
    assert m.parity.source.startswith("test split of") and m.parity.samples == 64
    assert m.parity.max_abs_diff <= 1e-4
    for p in ("fp32", "fp16", "int8"):
        v = m.variants[p]
        assert (out / v.file).is_file() and v.accuracy_source == "test split of " + str(
            out.parent / "data"
        ) + " (80 samples)"
        assert set(v.accuracy) == {"event", "urgent"}
    acc32, acc8 = m.variants["fp32"].accuracy, m.variants["int8"].accuracy
    assert acc32["event"] > 0.6  # the run learned something, so the comparison means something
    assert all(acc32[h] - acc8[h] <= 0.01 for h in acc32)


def test_int8_is_static_qdq_with_per_channel_weights(data_bundle):
    out, m = data_bundle
    model = onnx.load(str(out / "model.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ format, not QOperator
    assert not {"QLinearConv", "QLinearMatMul"} & set(ops)
    weights = {i.name: i for i in model.graph.initializer}
    conv_scales = [
        weights[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and weights.get(n.input[0]) is not None
        and weights[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert any(len(s.dims) == 1 and s.dims[0] > 1 for s in conv_scales)  # one scale per output channel
    # the first attempt holds on the tiny run: only the log-mel DFT MatMul runs int8 (deploy/quantize.py)
    assert "int8 ops {'MatMul': 1}" in m.variants["int8"].notes and "per-channel" in m.variants["int8"].notes


def test_int8_float_policies_pick_the_log_mel_nodes(bundle):
    from edgefuse.deploy.quantize import keep_float_nodes

    out, _ = bundle
    model = onnx.load(str(out / "model.onnx"))
    front = [n for n in model.graph.node if "/logmel/" in n.name]
    matmuls = {n.name for n in front if n.op_type == "MatMul"}
    assert len(matmuls) == 2  # the DFT and the mel filterbank
    whole = set(keep_float_nodes(model, "front_end"))
    assert {n.name for n in front} <= whole
    assert whole - set(keep_float_nodes(model, "front_end_but_matmuls")) == matmuls
    dft = whole - set(keep_float_nodes(model, "front_end_but_dft"))
    assert len(dft) == 1 and dft <= matmuls  # the first MatMul of the front end: its DFT
    assert keep_float_nodes(model, "nothing") == []
    with pytest.raises(ValueError, match="keep must be one of"):
        keep_float_nodes(model, "everything")


def test_missing_checkpoint_names_the_file(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"run/checkpoint.pt: no checkpoint .* train first \(`edgefuse train"):
        export_bundle(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_parity_leaves_nothing_behind(run, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # no difference can pass: the gate must refuse
    with pytest.raises(BundleError, match="differs from torch"):
        export_bundle(run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor its temporary folder


def test_int8_without_data_is_refused(run, tmp_path):
    with pytest.raises(BundleError, match="int8 needs --data"):
        export_bundle(run, tmp_path / "out", None, ["fp32", "int8"])
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_a_folder_that_is_not_a_bundle(run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not a bundle; refusing"):
        export_bundle(run, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_cli_export_replaces_an_old_bundle(run, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    first = json.loads((out / "manifest.json").read_text())["created"]
    assert main(["export", "--run", str(run), "--out", str(out), "--precision", "fp16"]) == 0
    assert "fp16" in json.loads((out / "manifest.json").read_text())["variants"]
    assert first and "bundle written" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_parse_precisions():
    assert parse_precisions("int8, fp16") == ["fp32", "fp16", "int8"]
    with pytest.raises(BundleError, match="unknown 'bf16'"):
        parse_precisions("bf16")


def test_int8_trt_variant_is_symmetric_signed_qdq_on_conv_matmul_gemm_inputs(data_bundle):
    out, m = data_bundle
    model = onnx.load(str(out / "model.int8-trt.onnx"))
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 20
    for n in qdq:  # every zero point present, int8 and 0: what TensorRT requires
        zp = consts[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    # int8 tensors (quantized weights) only, never uint8; DQ reads int8 (no int32 bias: TensorRT dequantizes int8)
    assert {i.data_type for i in model.graph.initializer if i.name in {n.input[0] for n in qdq}} == {
        onnx.TensorProto.INT8
    }
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    fed = {n.op_type for n in model.graph.node if any(producers.get(i) == "DequantizeLinear" for i in n.input)}
    assert fed == {"Conv", "MatMul", "Gemm"}  # Q/DQ on the inputs of the ops TensorRT fuses into int8 kernels
    weights_dq = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in consts]
    assert any(consts[n.input[1]].size > 1 for n in weights_dq)  # per-channel weight scales
    # accuracy in ONNX Runtime within 1 point of fp32, recorded
    v, acc32 = m.variants["int8-trt"], m.variants["fp32"].accuracy
    assert all(acc32[h] - v.accuracy[h] <= 0.01 for h in acc32) and "symmetric" in v.notes
    # the static TensorRT check ran at export: engine variants pass, the CPU's uint8 variant does not
    check = m.trt_check
    assert check is not None and check.tensorrt == ["10.x", "11.x"]
    assert {n: (c.engine_precision, c.ok) for n, c in check.variants.items()} == {
        "fp32": ("fp32", True),
        "fp16": ("fp16", True),
        "int8": (None, False),
        "int8-trt": ("int8", True),
    }
    assert any("zero point" in e and "DequantizeLinear" in e for e in check.variants["int8"].errors)


def test_check_trt_cli_reports_and_records(data_bundle, capsys):
    out, _ = data_bundle
    manifest = out / "manifest.json"
    before = json.loads(manifest.read_text())["trt_check"]["checked"]
    assert main(["check-trt", "--bundle", str(out), "--dla", "--tensorrt", "10"]) == 0
    printed = capsys.readouterr().out
    assert "int8-trt" in printed and "ONNX Runtime only" in printed and "DLA:" in printed
    saved = json.loads(manifest.read_text())["trt_check"]
    assert saved["tensorrt"] == ["10.x"] and saved["dla"] is True and saved["checked"] >= before
    # DLA runs no fp32: the fp32 variant is refused for DLA, and LayerNormalization etc. fall back to the GPU
    assert not saved["variants"]["fp32"]["ok"] and saved["variants"]["fp16"]["ok"]
    assert "LayerNormalization" in saved["variants"]["fp16"]["warnings"][0]
    from edgefuse.deploy.bundle import load_bundle

    load_bundle(out)  # the rewritten manifest still loads and every listed file still verifies
    assert main(["check-trt", "--bundle", str(out), "--tensorrt", "9"]) == 1
    assert "unknown version '9'" in capsys.readouterr().err
