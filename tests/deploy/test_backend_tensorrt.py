"""TensorRT backend and engine build.

Always run (no TensorRT needed): the overlap scheduler and batch chunking the backend is built on, the refusal
when TensorRT is missing, and `auto` choosing ONNX Runtime when no engine fits this host.

Run only where TensorRT and a CUDA GPU exist: build engines from a real exported bundle with build_engine, then
compare the TensorRT backend with ONNX Runtime (top-1 equal, probabilities within tolerance), with pycuda and with
torch buffers, at batch sizes 1, 4 and beyond the profile's max; run_pipelined equals run; a tag edited to
another GPU is refused; an int8 engine builds from model.int8-trt.onnx and stays within PARITY_LIMITS of fp32,
with TF32 recorded off for fp32; a DLA engine (where the GPU has DLA cores) has a fixed batch and pads chunks. On this machine those skip: TensorRT's builder cannot be installed and there is no GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefuse._optional import MissingDependency, available
from edgefuse.deploy.backends.tensorrt import chunks, overlapped

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HAVE_TRT = available("tensorrt")


def _cuda_visible() -> bool:
    from edgefuse.deploy.engine import detect_host

    return HAVE_TRT and detect_host() is not None


def _skip_reason() -> str | None:
    if not HAVE_TRT:
        return "tensorrt not importable: TensorRT's builder cannot be installed on this machine"
    if not _cuda_visible():
        return "no CUDA device visible (pycuda/torch see none)"
    return None


SKIP = _skip_reason()
needs_trt_gpu = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def test_overlapped_submits_next_before_finishing_current_and_keeps_order():
    log: list[str] = []

    def submit(u: int) -> int:
        log.append(f"submit {u}")
        return u

    def finish(h: int) -> int:
        log.append(f"finish {h}")
        return h * 10

    assert list(overlapped(range(4), submit, finish, depth=2)) == [0, 10, 20, 30]
    # unit k+1 is enqueued before unit k is waited on; never more than two in flight
    assert log == [
        "submit 0", "submit 1", "finish 0", "submit 2", "finish 1", "submit 3", "finish 2", "finish 3",
    ]  # fmt: skip
    assert list(overlapped([], submit, finish)) == []


def test_chunks_cut_batches_at_the_profile_max():
    x = np.arange(70)
    parts = chunks({"x": x, "mask": x * 2}, max_batch=32)
    assert [len(p["x"]) for p, _ in parts] == [32, 32, 6]
    assert [last for _, last in parts] == [False, False, True]
    np.testing.assert_array_equal(np.concatenate([p["mask"] for p, _ in parts]), x * 2)
    (only, last), *rest = chunks({"x": np.zeros((0, 3))}, max_batch=32)
    assert only["x"].shape == (0, 3) and last and not rest  # an empty batch is one (empty) last piece


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is importable here; the refusal without it cannot be observed")
def test_tensorrt_backend_without_tensorrt_says_which_extra(tiny_bundle: Path):
    from edgefuse.deploy.backends import load_backend

    with pytest.raises(MissingDependency, match=r"tensorrt is needed for the TensorRT backend.*edgefuse\[trt\]"):
        load_backend(tiny_bundle, backend="tensorrt")


def test_auto_falls_back_to_onnxruntime_when_no_engine_fits(tiny_bundle: Path):
    from edgefuse.deploy.backends import load_backend

    engines = tiny_bundle / "engines"
    engines.mkdir(exist_ok=True)
    (engines / "fp32-some-gpu-sm89-trt10.8.0.43.engine").write_bytes(b"engine of another host")
    (engines / "fp32-some-gpu-sm89-trt10.8.0.43.json").write_text(json.dumps({"precision": "fp32"}))
    with load_backend(tiny_bundle, backend="auto") as b:
        assert b.name == "onnxruntime"


# ---------------------------------------------------------------------------------------------------------------------
# A real bundle (needs torch to export it)


def export_tiny_bundle(root: Path, precisions: list[str]) -> Path:
    """A real bundle of a seeded, untrained customer_service model (audio + int64 text + image, three heads)."""
    torch = pytest.importorskip("torch", reason="exporting the test bundle needs torch (the `train` extra)")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.spec import load_spec
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    spec = load_spec(CONFIGS / "customer_service.yaml")
    torch.manual_seed(0)
    save_run(root / "run", spec, build_model(spec), {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", precisions=precisions, parity_samples=8)
    return root / "bundle"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_bundle(tmp_path_factory.mktemp("trt_bundle"), ["fp32"])


@pytest.fixture(scope="module")
def trt_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # int8 needs a dataset to calibrate on; fp32 and fp16 cover both kinds of graph precision
    return export_tiny_bundle(tmp_path_factory.mktemp("trt_bundle16"), ["fp32", "fp16"])


def _feeds(bundle: Path, n: int, seed: int) -> dict[str, np.ndarray]:
    from edgefuse.deploy.bundle import load_bundle
    from edgefuse.deploy.export import random_feeds

    return random_feeds(load_bundle(bundle).spec, n, seed=seed)


@pytest.fixture(scope="module")
def engines(trt_bundle: Path) -> dict[str, Path]:
    from edgefuse.deploy.engine import build_engine

    return {p: build_engine(trt_bundle, p, workspace_mb=256) for p in ("fp32", "fp16")}


from edgefuse.deploy.engine import PARITY_LIMITS as TOLERANCE  # noqa: E402 - fp32 1e-4 holds with TF32 off


@needs_trt_gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("buffers", ["pycuda", "torch"])
def test_tensorrt_matches_onnxruntime(trt_bundle: Path, engines, precision: str, buffers: str):
    from edgefuse.deploy.backends import load_backend

    if buffers == "pycuda" and not available("pycuda.driver"):
        pytest.skip("pycuda not importable")
    if buffers == "torch" and not (available("torch") and __import__("torch").cuda.is_available()):
        pytest.skip("torch with CUDA not available")
    assert any((trt_bundle / "engines").glob("*.timing_cache"))  # saved by build_engine for the next build
    with (
        load_backend(trt_bundle, backend="tensorrt", precision=precision, buffers=buffers) as trt_b,
        load_backend(trt_bundle, backend="onnxruntime", precision=precision) as ort_b,
    ):
        for n in (1, 4, 40):  # 40 > the profile's max of 32: run in two chunks
            f = _feeds(trt_bundle, n, seed=n)
            got, ref = trt_b.run(f), ort_b.run(f)
            for k in ref:
                assert got[k].shape == ref[k].shape
                assert np.abs(got[k] - ref[k]).max() <= TOLERANCE[precision], k
                assert (got[k].argmax(1) == ref[k].argmax(1)).all(), k
        batches = [_feeds(trt_bundle, n, seed=100 + n) for n in (4, 1, 4, 0, 3)]
        for b, p in zip(batches, trt_b.run_pipelined(iter(batches)), strict=True):
            for k, v in trt_b.run(b).items():
                np.testing.assert_array_equal(v, p[k])


@needs_trt_gpu
@pytest.mark.tensorrt
def test_auto_picks_tensorrt_and_refuses_engines_of_other_hosts(trt_bundle: Path, engines):
    from edgefuse.deploy.backends import load_backend
    from edgefuse.deploy.engine import tag_path
    from edgefuse.errors import BundleError

    with load_backend(trt_bundle, backend="auto", precision="fp16") as b:
        assert b.name == "tensorrt"
    engine = engines["fp32"]
    tag = json.loads(tag_path(engine).read_text())
    tag["gpu_name"] = "Some Other GPU"
    tag_path(engine).write_text(json.dumps(tag))
    with pytest.raises(BundleError, match=r"GPU: engine built for 'Some Other GPU'.*edgefuse build-engine"):
        load_backend(trt_bundle, backend="tensorrt", precision="fp32", engine=engine)


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the tiny run trained on the tiny dataset, with both INT8 variants (int8 needs --data)."""
    pytest.importorskip("torch", reason="exporting the test bundle needs torch (the `train` extra)")
    from _tiny import make_run, write_dataset

    from edgefuse.deploy.export import export_bundle

    root = tmp_path_factory.mktemp("trt_int8")
    data = write_dataset(root / "data", n=200)
    make_run(root / "run", steps=40, data_dir=data)
    export_bundle(root / "run", root / "bundle", data, ["fp32", "int8"], parity_samples=16)
    return root / "bundle"


@needs_trt_gpu
@pytest.mark.tensorrt
def test_int8_engine_builds_from_the_symmetric_variant_and_fp32_has_tf32_off(int8_bundle: Path):
    from edgefuse.deploy.backends import load_backend
    from edgefuse.deploy.engine import EngineTag, build_engine, tag_path

    fp32, int8 = (
        build_engine(int8_bundle, "fp32", workspace_mb=256),
        build_engine(int8_bundle, "int8", workspace_mb=256),
    )
    assert EngineTag.load(tag_path(fp32)).tf32 is False and EngineTag.load(tag_path(int8)).tf32 is True
    assert EngineTag.load(tag_path(int8)).onnx_file == "model.int8-trt.onnx"
    with (
        load_backend(int8_bundle, backend="tensorrt", precision="int8") as trt_b,
        load_backend(int8_bundle, backend="onnxruntime", precision="fp32", device="cpu") as ref_b,
    ):
        f = _feeds(int8_bundle, 32, seed=7)
        got, ref = trt_b.run(f), ref_b.run(f)
        for k in ref:
            assert np.abs(got[k] - ref[k]).max() <= TOLERANCE["int8"], k
        assert trt_b.describe()["engine_mb"] > 0


@needs_trt_gpu
@pytest.mark.tensorrt
def test_dla_engine_is_fixed_batch_and_pads_chunks(int8_bundle: Path):
    import tensorrt as trt

    from edgefuse.deploy.backends import load_backend
    from edgefuse.deploy.engine import EngineTag, build_engine, tag_path

    if trt.Builder(trt.Logger()).num_DLA_cores == 0:
        pytest.skip("no DLA cores on this GPU (DLA exists on Jetson AGX/NX Xavier and Orin)")
    engine = build_engine(int8_bundle, "int8", dla=0, static_batch=2)
    assert EngineTag.load(tag_path(engine)).batch == {"min": 2, "opt": 2, "max": 2}
    with load_backend(int8_bundle, backend="tensorrt", precision="int8", dla_core=0) as b:
        out = b.run(_feeds(int8_bundle, 5, seed=1))  # 5 rows through a batch-2 engine: 3 padded chunks
        assert all(v.shape[0] == 5 for v in out.values())
