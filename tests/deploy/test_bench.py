"""`edgefuse bench`: one row per backend x precision, measured on a real bundle and its dataset's test split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny import make_run, tiny_spec, write_dataset

from edgefuse.cli import main
from edgefuse.deploy.backends import load_backend
from edgefuse.deploy.bench import bench, format_table, latency_ms, preprocess_ms, throughput
from edgefuse.deploy.export import export_bundle, random_feeds
from edgefuse.errors import BundleError, DataError

REQUIRED = {"backend", "precision", "status", "size_mb", "accuracy", "p50_ms_b1", "p99_ms_b1", "throughput_b32"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = write_dataset(root / "data", n=160)
    make_run(root / "run", steps=30, data_dir=data)
    manifest = export_bundle(root / "run", root / "bundle", data, ["fp32", "int8"])
    return root / "bundle", data, manifest


@pytest.fixture(scope="module")
def rows(setup):
    bundle, data, _ = setup
    return bench(bundle, data, ["onnxruntime", "torch", "tensorrt"], iters=20, threads=1)


def test_one_row_per_backend_and_precision(rows):
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("onnxruntime", "fp32"),
        ("onnxruntime", "fp16"),
        ("onnxruntime", "int8"),
        ("torch", "fp32"),
        ("tensorrt", "fp32"),
        ("tensorrt", "fp16"),
        ("tensorrt", "int8"),
    ]
    assert all(set(r) >= REQUIRED for r in rows)
    status = {(r["backend"], r["precision"]): r["status"] for r in rows}
    assert status["onnxruntime", "fp32"] == status["onnxruntime", "int8"] == status["torch", "fp32"] == "ok"
    # a variant that was not exported and a backend this host lacks are skipped, with the reason
    assert status["onnxruntime", "fp16"].startswith("skipped: ") and "no fp16 variant" in status["onnxruntime", "fp16"]
    assert all(status["tensorrt", p].startswith("skipped: ") for p in ("fp32", "fp16", "int8"))


def test_ok_rows_hold_measurements_that_agree_with_the_manifest(rows, setup):
    bundle, _, manifest = setup
    for r in rows:
        if r["status"] != "ok":
            assert r["accuracy"] is None and r["p50_ms_b1"] is None
            continue
        assert 0 < r["p50_ms_b1"] <= r["p99_ms_b1"] and r["throughput_b32"] > 0 and r["size_mb"] > 0
        assert r["preprocess_ms"] > 0  # the tiny spec has an image and a text modality
    ort32 = next(r for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32")
    torch32 = next(r for r in rows if r["backend"] == "torch")
    # the bench measures accuracy the same way export did, on the same test split
    assert ort32["accuracy_heads"] == pytest.approx(manifest.variants["fp32"].accuracy)
    assert torch32["accuracy"] == pytest.approx(ort32["accuracy"], abs=1e-9)
    assert ort32["size_mb"] == pytest.approx((bundle / "model.onnx").stat().st_size / 1e6)


def test_latency_and_throughput_measure_real_runs(setup):
    spec = tiny_spec()
    feeds = random_feeds(spec, 5)
    with load_backend(setup[0], backend="onnxruntime", threads=1) as be:
        p50, p99 = latency_ms(be, feeds, iters=15)
        assert 0 < p50 <= p99 < 1000
        assert throughput(be, feeds, batch=8, n_batches=3) > 0
    assert preprocess_ms(spec, iters=3) > 0


def test_table_and_cli_json(setup, tmp_path, capsys):
    bundle, data, _ = setup
    out = tmp_path / "bench.json"
    argv = ["bench", "--bundle", str(bundle), "--data", str(data), "--json", str(out)]
    assert main([*argv, "--backends", "onnxruntime", "--iters", "5", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:4] == ["backend", "precision", "status", "size_mb"]
    saved = json.loads(out.read_text())
    assert [r["precision"] for r in saved] == ["fp32", "fp16", "int8"]
    assert all(set(r) >= REQUIRED for r in saved)
    assert np.isfinite(saved[0]["throughput_b32"])
    assert "skipped: " in format_table(saved)


def test_bad_inputs_are_clear_errors(setup, tmp_path):
    bundle, data, _ = setup
    with pytest.raises(DataError, match="dataset folder not found"):
        bench(bundle, tmp_path / "nodata", ["onnxruntime"], iters=1)
    with pytest.raises(BundleError, match="bundle folder not found"):
        bench(tmp_path / "nobundle", data, ["onnxruntime"], iters=1)
