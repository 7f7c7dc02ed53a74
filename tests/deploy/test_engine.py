"""Engine naming, tags, host matching and refusal, profile shapes, DLA choice: pure Python, no TensorRT needed.

The host facts are passed in as data (HostFacts), so every rule that decides whether an engine fits a host runs
here. The TensorRT build itself is exercised in test_backend_tensorrt.py, which skips without TensorRT and a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefuse.cli import main
from edgefuse.deploy.bundle import sha256_file
from edgefuse.deploy.engine import (
    ENGINES_DIR,
    DlaPlan,
    EngineTag,
    HostFacts,
    check_engine,
    dla_plan,
    engine_name,
    find_engine,
    format_parser_errors,
    gpu_slug,
    is_jetson,
    profile_shapes,
    tag_path,
    timing_cache_path,
    write_tag,
)
from edgefuse.deploy.export import manifest_inputs, manifest_outputs, manifest_preprocess
from edgefuse.errors import BundleError
from edgefuse.manifest import BatchProfile, InputSpec, Manifest, MaskSpec, ParitySpec, VariantSpec, save_manifest
from edgefuse.spec import load_spec, spec_to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ORIN = HostFacts("Orin", (8, 7), "10.3.0", jetson=True)
A100 = HostFacts("NVIDIA A100-SXM4-40GB", (8, 0), "10.8.0.43")
L4 = HostFacts("NVIDIA L4", (8, 9), "11.0.0.9")


def make_bundle(root: Path) -> Path:
    """A bundle folder with a real manifest (smart_home spec) and three variant files to hash.

    The ONNX bytes are never parsed here (no TensorRT): only their sha256 ties an engine to its source."""
    spec = load_spec(CONFIGS / "smart_home.yaml")
    root.mkdir(parents=True)
    variants = {}
    files = (("fp32", "model.onnx"), ("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx"))
    for precision, name in (*files, ("int8-trt", "model.int8-trt.onnx")):
        (root / name).write_bytes(f"onnx bytes of the {precision} variant".encode())
        variants[precision] = VariantSpec(file=name, sha256=sha256_file(root / name))
    manifest = Manifest(
        created="2025-01-01T00:00:00+00:00",
        edgefuse_version="0.1.0",
        spec=spec_to_dict(spec),
        opset=17,
        inputs=manifest_inputs(spec),
        mask=MaskSpec(modalities=spec.modality_names),
        outputs=manifest_outputs(spec),
        preprocess=manifest_preprocess(spec),
        parity=ParitySpec(source="random", samples=8, max_abs_diff=0.0, tolerance=1e-4),
        variants=variants,
        files={v.file: v.sha256 for v in variants.values()},
    )
    save_manifest(manifest, root / "manifest.json")
    return root


def fake_build(
    bundle: Path, precision: str, host: HostFacts, dla_core: int | None = None, static_batch: int | None = None
) -> Path:
    """Write an engine file + tag the way build_engine does after TensorRT returns the serialized engine."""
    if dla_core is not None and static_batch is None:
        static_batch = 1  # build_engine's default on DLA
    out = bundle / ENGINES_DIR / engine_name(precision, host, dla_core, static_batch)
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(f"serialized engine for {host.gpu_name} {precision} dla={dla_core}".encode())
    onnx = bundle / {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8-trt.onnx"}[precision]
    b = static_batch
    batch = BatchProfile() if b is None else BatchProfile(min=b, opt=b, max=b)
    write_tag(out, precision, host, onnx, None if dla_core is None else DlaPlan(dla_core), batch)
    return out


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def test_engine_file_names_carry_precision_gpu_sm_and_trt_version():
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert engine_name("fp16", A100) == "fp16-nvidia-a100-sxm4-40gb-sm80-trt10.8.0.43.engine"
    assert engine_name("int8", ORIN, dla_core=1) == "int8-orin-sm87-trt10.3.0-dla1.engine"
    assert engine_name("int8", ORIN, dla_core=1, static_batch=8) == "int8-orin-sm87-trt10.3.0-dla1-b8.engine"
    assert tag_path(Path("e/fp16-orin-sm87-trt10.3.0.engine")) == Path("e/fp16-orin-sm87-trt10.3.0.json")
    assert timing_cache_path(Path("b"), L4) == Path("b/engines/nvidia-l4-sm89-trt11.0.0.9.timing_cache")


def test_tag_records_versions_hashes_and_round_trips(bundle: Path):
    engine = fake_build(bundle, "fp16", ORIN, dla_core=0)
    data = json.loads(tag_path(engine).read_text())
    assert data["trt_version"] == "10.3.0" and data["gpu_name"] == "Orin" and data["compute_capability"] == "8.7"
    assert data["precision"] == "fp16" and data["dla_core"] == 0 and data["onnx_file"] == "model.fp16.onnx"
    assert data["onnx_sha256"] == sha256_file(bundle / "model.fp16.onnx")
    assert data["engine_sha256"] == sha256_file(engine)
    assert data["batch"] == {"min": 1, "opt": 1, "max": 1}  # DLA: a fixed batch (1 unless asked)
    assert EngineTag.load(tag_path(engine)).static_batch == 1
    assert data["created"].endswith("+00:00")
    assert EngineTag.load(tag_path(engine)).engine == engine.name


def test_find_engine_returns_this_hosts_engine_only(bundle: Path):
    mine = fake_build(bundle, "fp16", A100)
    fake_build(bundle, "fp16", L4)
    fake_build(bundle, "fp32", ORIN)
    assert find_engine(bundle, "fp16", host=A100) == mine
    assert find_engine(bundle, "fp16", host=L4).name.startswith("fp16-nvidia-l4-sm89-trt11")
    assert find_engine(bundle, "int8", host=A100) is None  # no int8 engine at all
    assert find_engine(bundle, "fp16", host=ORIN) is None  # only fp32 was built on the Orin
    newer_trt = HostFacts(A100.gpu_name, A100.compute_capability, "10.9.0.34")
    assert find_engine(bundle, "fp16", host=newer_trt) is None  # same GPU, other TensorRT: no match


def test_find_engine_prefers_the_gpu_engine_over_dla(bundle: Path):
    dla = fake_build(bundle, "int8", ORIN, dla_core=0)
    assert find_engine(bundle, "int8", host=ORIN) == dla  # the only one built here
    gpu = fake_build(bundle, "int8", ORIN)
    assert find_engine(bundle, "int8", host=ORIN) == gpu


def test_find_engine_without_engines_folder_or_tensorrt(bundle: Path):
    assert find_engine(bundle, "fp32", host=ORIN) is None
    fake_build(bundle, "fp32", ORIN)
    # no host given: detect_host() finds no TensorRT/GPU on this machine, so nothing can be loaded
    assert find_engine(bundle, "fp32") is None


def test_mismatched_engine_refused_naming_what_differs_and_how_to_rebuild(bundle: Path):
    engine = fake_build(bundle, "fp16", A100)
    with pytest.raises(BundleError) as err:
        check_engine(engine, L4, bundle)
    msg = str(err.value)
    assert "GPU: engine built for 'NVIDIA A100-SXM4-40GB', this host has 'NVIDIA L4'" in msg
    assert "compute capability: engine 8.0, this host 8.9" in msg
    assert "TensorRT: engine built with 10.8.0.43, this host has 11.0.0.9" in msg
    assert f"edgefuse build-engine --bundle {bundle} --precision fp16" in msg
    same_gpu_new_trt = HostFacts(A100.gpu_name, (8, 0), "10.9.0.34")
    with pytest.raises(BundleError) as err:
        check_engine(engine, same_gpu_new_trt, bundle)
    assert "TensorRT" in str(err.value) and "GPU:" not in str(err.value)
    assert check_engine(engine, A100, bundle).precision == "fp16"


def test_dla_engine_refusal_names_the_dla_rebuild(bundle: Path):
    engine = fake_build(bundle, "int8", ORIN, dla_core=1)
    with pytest.raises(BundleError, match=r"--precision int8 --dla 1"):
        check_engine(engine, A100, bundle)


def test_engine_refused_after_reexport_or_alteration(bundle: Path):
    engine = fake_build(bundle, "fp16", ORIN)
    (bundle / "model.fp16.onnx").write_bytes(b"a re-exported model")
    with pytest.raises(BundleError, match=r"model\.fp16\.onnx changed since the engine was built"):
        check_engine(engine, ORIN, bundle)
    assert find_engine(bundle, "fp16", host=ORIN) is None  # stale: not offered to `auto`

    engine = fake_build(bundle, "fp32", ORIN)
    engine.write_bytes(engine.read_bytes() + b"\x00")
    with pytest.raises(BundleError, match=r"altered \(sha256 differs from its tag"):
        check_engine(engine, ORIN, bundle)


def test_missing_or_broken_tag_is_a_bundle_error(bundle: Path):
    engine = fake_build(bundle, "fp32", ORIN)
    tag_path(engine).unlink()
    with pytest.raises(BundleError, match=r"engine tag missing; rebuild"):
        check_engine(engine, ORIN, bundle)
    tag_path(engine).write_text('{"precision": "fp32"}')
    with pytest.raises(BundleError, match=r"engine tag lacks .*gpu_name"):
        check_engine(engine, ORIN, bundle)
    tag_path(engine).write_text("{not json")
    with pytest.raises(BundleError, match=r"cannot read engine tag as JSON"):
        check_engine(engine, ORIN, bundle)
    assert find_engine(bundle, "fp32", host=ORIN) is None


def test_profile_shapes_from_manifest_batch_range():
    spec = load_spec(CONFIGS / "smart_home.yaml")
    shapes = profile_shapes(manifest_inputs(spec), BatchProfile(min=1, opt=8, max=32))
    assert set(shapes) == {"camera", "mic", "env", "mask"}
    assert shapes["camera"] == ((1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))
    assert shapes["mic"] == ((1, 1, 16000), (8, 1, 16000), (32, 1, 16000))
    assert shapes["env"] == ((1, 6, 40), (8, 6, 40), (32, 6, 40))
    assert shapes["mask"] == ((1, 3), (8, 3), (32, 3))
    fixed = InputSpec(name="x", dtype="float32", shape=[4, 2], kind="series")
    assert profile_shapes([fixed], BatchProfile()) == {"x": ((4, 2), (4, 2), (4, 2))}


def test_profile_shapes_refuses_bad_ranges_and_dynamic_axes():
    x = InputSpec(name="x", dtype="float32", shape=[-1, 2], kind="series")
    with pytest.raises(BundleError, match=r"1 <= min <= opt <= max, got 4/2/32"):
        profile_shapes([x], BatchProfile(min=4, opt=2, max=32))
    dynamic = InputSpec(name="wave", dtype="float32", shape=[-1, 1, -1], kind="audio")
    with pytest.raises(BundleError, match=r"manifest input 'wave'"):
        profile_shapes([dynamic], BatchProfile())


def test_dla_choice():
    assert dla_plan(None, "fp16", dla_cores=2) is None  # GPU unless asked, Jetson or not
    assert dla_plan(1, "int8", dla_cores=2) == DlaPlan(core=1, gpu_fallback=True)
    with pytest.raises(BundleError, match=r"no DLA cores"):
        dla_plan(0, "fp16", dla_cores=0)
    with pytest.raises(BundleError, match=r"DLA cores 0\.\.1"):
        dla_plan(2, "fp16", dla_cores=2)
    with pytest.raises(BundleError, match=r"fp16 and int8 only"):
        dla_plan(0, "fp32", dla_cores=2)
    assert is_jetson("NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert not is_jetson(None) and not is_jetson("Raspberry Pi 5 Model B")


def test_parser_errors_name_node_and_operator():
    msg = format_parser_errors(
        Path("b/model.int8.onnx"),
        [{"desc": "Unsupported operator", "node": 12, "node_name": "/fusion/attn/Softmax", "node_operator": "Foo"}],
    )
    assert msg == (
        "b/model.int8.onnx: TensorRT's ONNX parser failed: node 12 '/fusion/attn/Softmax' (Foo): Unsupported operator"
    )


def test_cli_build_engine_without_tensorrt_says_which_extra(bundle: Path, capsys):
    from edgefuse._optional import available

    if available("tensorrt"):
        pytest.skip("tensorrt is importable here; the missing-dependency message cannot be observed")
    assert main(["build-engine", "--bundle", str(bundle), "--precision", "fp16"]) == 1
    err = capsys.readouterr().err
    assert "tensorrt is needed for building TensorRT engines" in err and "edgefuse[trt]" in err
