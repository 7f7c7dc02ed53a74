"""TensorRT engines for a bundle: build them, tag them, find the one that fits this host, refuse the others.

A TensorRT engine runs only on the GPU model and TensorRT version it was built with, so every engine is written
with a sidecar JSON tag saying what it was built for and from which ONNX file:

  BUNDLE/engines/<precision>-<gpu-slug>-sm<major><minor>-trt<version>[-dla<core>].engine   (+ .json tag)
  BUNDLE/engines/<gpu-slug>-sm<major><minor>-trt<version>.timing_cache

Everything about tags, names, matching, refusal, optimization-profile shapes and DLA choice is pure Python over
plain data (HostFacts), so it is tested without TensorRT. Only `build_engine` and `detect_host` touch TensorRT;
tensorrt is imported lazily. docs/tensorrt.md says what was run and what was not.

  edgefuse build-engine --bundle bundles/home --precision fp16
  edgefuse build-engine --bundle bundles/home --precision int8 --dla 0      # Jetson DLA core 0, GPU fallback
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from edgefuse import __version__
from edgefuse.deploy.bundle import Bundle, load_bundle, sha256_file
from edgefuse.errors import BundleError
from edgefuse.manifest import PRECISIONS, BatchProfile, InputSpec

ENGINES_DIR = "engines"


@dataclass(frozen=True)
class HostFacts:
    """What an engine must match on the host that loads it (detect_host() fills it on a real GPU host)."""

    gpu_name: str
    compute_capability: tuple[int, int]
    trt_version: str
    jetson: bool = False

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"


@dataclass
class EngineTag:
    """The sidecar <engine>.json: what an engine was built for and from."""

    engine: str  # engine file name, in the same folder
    precision: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    onnx_file: str
    onnx_sha256: str
    engine_sha256: str
    dla_core: int | None
    batch: dict[str, int]  # the optimization profile's batch range: min/opt/max
    created: str  # ISO 8601 UTC
    edgefuse_version: str = __version__

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> EngineTag:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BundleError(f"{path}: engine tag missing; rebuild the engine with `edgefuse build-engine`") from None
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: cannot read engine tag as JSON: {err}") from None
        fields = set(cls.__dataclass_fields__)
        required = {f for f in fields if f != "edgefuse_version"}
        if not isinstance(data, dict) or not required <= set(data):
            missing = sorted(required - set(data)) if isinstance(data, dict) else ["<object>"]
            raise BundleError(f"{path}: engine tag lacks {', '.join(missing)}; rebuild with `edgefuse build-engine`")
        return cls(**{k: v for k, v in data.items() if k in fields})


# ---------------------------------------------------------------------------------------------------------------------
# Names


def gpu_slug(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090' (safe in file names, stable per GPU model)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def host_stem(host: HostFacts) -> str:
    return f"{gpu_slug(host.gpu_name)}-{host.sm}-trt{host.trt_version}"


def engine_name(precision: str, host: HostFacts, dla_core: int | None = None) -> str:
    """The engine file name for this precision on this host (and DLA core)."""
    dla = "" if dla_core is None else f"-dla{dla_core}"
    return f"{precision}-{host_stem(host)}{dla}.engine"


def tag_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(".json")


def timing_cache_path(bundle_dir: Path, host: HostFacts) -> Path:
    """Timing caches are per GPU model and TensorRT version too: one file each, never mixed."""
    return Path(bundle_dir) / ENGINES_DIR / f"{host_stem(host)}.timing_cache"


def rebuild_command(bundle_dir: Path | str, precision: str, dla_core: int | None = None) -> str:
    dla = "" if dla_core is None else f" --dla {dla_core}"
    return f"edgefuse build-engine --bundle {bundle_dir} --precision {precision}{dla}"


# ---------------------------------------------------------------------------------------------------------------------
# Matching a tag against a host and a bundle


def mismatches(tag: EngineTag, host: HostFacts) -> list[str]:
    """What differs between the host an engine was built on and this one; empty when it fits."""
    cc = f"{host.compute_capability[0]}.{host.compute_capability[1]}"
    out = []
    if tag.gpu_name != host.gpu_name:
        out.append(f"GPU: engine built for '{tag.gpu_name}', this host has '{host.gpu_name}'")
    if tag.compute_capability != cc:
        out.append(f"compute capability: engine {tag.compute_capability}, this host {cc}")
    if tag.trt_version != host.trt_version:
        out.append(f"TensorRT: engine built with {tag.trt_version}, this host has {host.trt_version}")
    return out


def onnx_variant(bundle: Bundle, precision: str) -> Path:
    """The ONNX file an engine of this precision is built from (model.onnx, model.fp16.onnx, model.int8.onnx)."""
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision '{precision}'; use one of: {', '.join(PRECISIONS)}")
    path = bundle.variant_path(precision)
    if not path.is_file():
        raise BundleError(f"{path}: missing from the bundle (its manifest lists the {precision} variant)")
    return path


def check_engine(engine_path: Path, host: HostFacts, bundle_dir: Path, verify_sha: bool = True) -> EngineTag:
    """Refuse an engine that does not fit this host or this bundle; the BundleError says what differs and how to
    rebuild. Returns its tag."""
    engine_path = Path(engine_path)
    tag = EngineTag.load(tag_path(engine_path))
    fix = f"rebuild it on this host: {rebuild_command(bundle_dir, tag.precision, tag.dla_core)}"
    if not engine_path.is_file():
        raise BundleError(f"{engine_path}: engine file missing beside its tag; {fix}")
    problems = mismatches(tag, host)
    onnx_path = onnx_variant(load_bundle(bundle_dir, verify=False), tag.precision)
    if sha256_file(onnx_path) != tag.onnx_sha256:
        problems.append(f"{onnx_path.name} changed since the engine was built (the bundle was re-exported)")
    if problems:
        raise BundleError(
            f"{engine_path}: does not fit this host: {'; '.join(problems)}. TensorRT engines run only on the GPU "
            f"model and TensorRT version they were built with, from the ONNX file they were built from; {fix}"
        )
    if verify_sha and sha256_file(engine_path) != tag.engine_sha256:
        raise BundleError(f"{engine_path}: altered (sha256 differs from its tag {tag_path(engine_path).name}); {fix}")
    return tag


def find_engine(bundle_dir: str | Path, precision: str, host: HostFacts | None = None) -> Path | None:
    """The engine in BUNDLE/engines built for this precision, GPU, compute capability and TensorRT version (and
    from the bundle's current ONNX file), or None. A GPU engine is preferred over a DLA one.

    `host` defaults to detect_host(); without TensorRT or a CUDA GPU there is no engine to find (None)."""
    host = host or detect_host()
    folder = Path(bundle_dir) / ENGINES_DIR
    if host is None or not folder.is_dir():
        return None
    fits: list[tuple[int, Path]] = []
    for tag_file in sorted(folder.glob("*.json")):
        engine_path = tag_file.with_suffix(".engine")
        try:
            tag = EngineTag.load(tag_file)
            if tag.precision != precision:
                continue
            check_engine(engine_path, host, Path(bundle_dir), verify_sha=False)
        except BundleError:
            continue  # another host's engine, or a stale one: not ours to load
        fits.append((0 if tag.dla_core is None else 1 + tag.dla_core, engine_path))
    return min(fits)[1] if fits else None


# ---------------------------------------------------------------------------------------------------------------------
# Build plan: optimization profiles and DLA


def profile_shapes(inputs: list[InputSpec], batch: BatchProfile) -> dict[str, tuple[tuple[int, ...], ...]]:
    """One optimization profile over the manifest's batch range: input name -> (min, opt, max) shapes.

    Axis 0 is the batch (-1 = dynamic); every other axis must be fixed."""
    if not 1 <= batch.min <= batch.opt <= batch.max:
        raise BundleError(f"manifest batch: need 1 <= min <= opt <= max, got {batch.min}/{batch.opt}/{batch.max}")
    shapes = {}
    for spec in inputs:
        rest = tuple(spec.shape[1:])
        if not spec.shape or any(d <= 0 for d in rest):
            raise BundleError(f"manifest input '{spec.name}': shape {spec.shape} must be [batch, fixed sizes...]")
        if spec.shape[0] == -1:
            shapes[spec.name] = tuple((b, *rest) for b in (batch.min, batch.opt, batch.max))
        else:  # a fixed batch size: the profile is that one shape
            shapes[spec.name] = ((spec.shape[0], *rest),) * 3
    return shapes


@dataclass(frozen=True)
class DlaPlan:
    core: int
    gpu_fallback: bool = True  # layers DLA cannot run go to the GPU instead of failing the build


def dla_plan(requested: int | None, precision: str, dla_cores: int) -> DlaPlan | None:
    """Whether and how to build for a DLA core. None = GPU only (also on Jetson, unless asked)."""
    if requested is None:
        return None
    if dla_cores == 0:
        raise BundleError(
            f"--dla {requested}: this host has no DLA cores (DLA exists on Jetson AGX/NX Xavier and Orin)"
        )
    if not 0 <= requested < dla_cores:
        raise BundleError(f"--dla {requested}: this host has DLA cores 0..{dla_cores - 1}")
    if precision == "fp32":
        raise BundleError("--dla: DLA runs fp16 and int8 only; build with --precision fp16 or --precision int8")
    return DlaPlan(core=requested)


def is_jetson(device_tree_model: str | None) -> bool:
    """Jetson boards name themselves in /proc/device-tree/model ("NVIDIA Jetson AGX Orin Developer Kit")."""
    return bool(device_tree_model) and "jetson" in device_tree_model.lower()


def format_parser_errors(onnx_path: Path, errors: list[dict[str, Any]]) -> str:
    """OnnxParser errors as one message that names each failing node and operator."""
    lines = []
    for e in errors:
        where = f"node {e.get('node')}"
        if e.get("node_name"):
            where += f" '{e['node_name']}'"
        if e.get("node_operator"):
            where += f" ({e['node_operator']})"
        lines.append(f"{where}: {e.get('desc')}")
    return f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(lines or ["no error reported"])


# ---------------------------------------------------------------------------------------------------------------------
# TensorRT: host detection and the build


def _gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]] | None:
    """GPU name and compute capability via pycuda (the `trt` extra) or torch, whichever works; None without a GPU."""
    from edgefuse._optional import available

    if available("pycuda.driver"):
        import pycuda.driver as cuda

        try:
            cuda.init()
            dev = cuda.Device(device)
            return dev.name(), tuple(dev.compute_capability())  # type: ignore[return-value]
        except cuda.Error:
            return None
    if available("torch"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device))  # type: ignore
    return None


def detect_host(device: int = 0) -> HostFacts | None:
    """This host's GPU and TensorRT version, or None when TensorRT or a CUDA GPU is missing."""
    from edgefuse._optional import available

    if not available("tensorrt"):
        return None
    import tensorrt as trt

    gpu = _gpu_identity(device)
    if gpu is None:
        return None
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        model = None
    return HostFacts(gpu_name=gpu[0], compute_capability=gpu[1], trt_version=trt.__version__, jetson=is_jetson(model))


def _parse(trt: ModuleType, network: Any, onnx_path: Path, logger: Any) -> Any:
    from edgefuse.deploy.trt_compat import parser_error_fields

    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weight files beside the ONNX file
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser_error_fields(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BundleError(format_parser_errors(onnx_path, errors))
    return parser


def _configure(trt: ModuleType, builder: Any, network: Any, shapes: dict, plan: DlaPlan | None, workspace_mb: int):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(shapes):
        raise BundleError(f"ONNX inputs {sorted(names)} differ from the manifest's {sorted(shapes)}")
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if plan is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.core
        if plan.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def build_engine(
    bundle_dir: str | Path, precision: str = "fp32", dla: int | None = None, workspace_mb: int = 1024
) -> Path:
    """Build, write and tag a TensorRT engine for this host from the bundle's `precision` ONNX variant.

    The network is strongly typed on 10.x and 11.x alike, so the precision is the graph's: fp16 tensors in
    model.fp16.onnx, Q/DQ nodes in model.int8.onnx. No precision builder flags, no calibrator."""
    from edgefuse._optional import require
    from edgefuse.deploy.trt_compat import strongly_typed_flags

    trt = require("tensorrt", "building TensorRT engines")
    bundle_dir = Path(bundle_dir)
    host = detect_host()
    if host is None:
        raise BundleError("no CUDA GPU visible (pycuda or torch found none); TensorRT engines are built on the GPU")
    bundle = load_bundle(bundle_dir)  # every listed file checked against its sha256
    onnx_path = onnx_variant(bundle, precision)
    shapes = profile_shapes(bundle.manifest.inputs, bundle.manifest.batch)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = dla_plan(dla, precision, builder.num_DLA_cores)
    network = builder.create_network(strongly_typed_flags(trt))
    parser = _parse(trt, network, onnx_path, logger)  # noqa: F841 - the network refers to the parser's weights
    config = _configure(trt, builder, network, shapes, plan, workspace_mb)

    cache_path = timing_cache_path(bundle_dir, host)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"{onnx_path}: TensorRT could not build an engine (see TensorRT's log above)")
    build_s = time.perf_counter() - t0

    out = bundle_dir / ENGINES_DIR / engine_name(precision, host, None if plan is None else plan.core)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(memoryview(serialized))
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    write_tag(out, precision, host, onnx_path, plan, bundle.manifest.batch)
    print(f"built {out} in {build_s:.1f} s (TensorRT {host.trt_version}, {host.gpu_name}, {host.sm})")
    return out


def write_tag(
    engine_path: Path, precision: str, host: HostFacts, onnx_path: Path, plan: DlaPlan | None, batch: BatchProfile
) -> EngineTag:
    """Write the sidecar tag of a freshly written engine file."""
    tag = EngineTag(
        engine=engine_path.name,
        precision=precision,
        trt_version=host.trt_version,
        gpu_name=host.gpu_name,
        compute_capability=f"{host.compute_capability[0]}.{host.compute_capability[1]}",
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        engine_sha256=sha256_file(engine_path),
        dla_core=None if plan is None else plan.core,
        batch=batch.model_dump(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    tag.save(tag_path(engine_path))
    return tag


def cli_build_engine(args: argparse.Namespace) -> int:
    """`edgefuse build-engine --bundle BUNDLE [--precision fp32|fp16|int8] [--dla N] [--workspace-mb MB]`."""
    build_engine(args.bundle, args.precision, args.dla, args.workspace_mb)
    return 0
