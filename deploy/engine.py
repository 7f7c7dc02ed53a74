"""TensorRT engines for a bundle: build them, tag them, find the one that fits this host, refuse the others.

A TensorRT engine runs only on the GPU model and TensorRT version it was built with, so every engine is written
with a sidecar JSON tag saying what it was built for and from which ONNX file:

  BUNDLE/engines/<precision>-<gpu-slug>-sm<major><minor>-trt<version>[-dla<core>][-b<batch>].engine  (+ .json tag)
  BUNDLE/engines/<gpu-slug>-sm<major><minor>-trt<version>.timing_cache

Everything about tags, names, matching, refusal, optimization-profile shapes and DLA choice is pure Python over
plain data (HostFacts), so it is tested without TensorRT. Only `build_engine` and `detect_host` touch TensorRT;
tensorrt is imported lazily. docs/tensorrt.md says what was run and what was not.

  edgefuse build-engine --bundle bundles/home --precision fp16
  edgefuse build-engine --bundle bundles/home --precision int8 --dla 0 --batch 1,8   # DLA core 0: fixed batches
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
    batch: dict[str, int]  # the optimization profile's batch range: min/opt/max (all equal: a fixed batch)
    created: str  # ISO 8601 UTC
    edgefuse_version: str = __version__
    tf32: bool | None = None  # whether fp32 layers could use TF32 math (None: tag written before this was recorded)

    @property
    def static_batch(self) -> int | None:
        """The one batch size a fixed-shape engine (every DLA engine) runs; None for a batch range."""
        b = self.batch
        return int(b["max"]) if b.get("min") == b.get("max") else None

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
        required = fields - {"edgefuse_version", "tf32"}
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


def engine_name(precision: str, host: HostFacts, dla_core: int | None = None, static_batch: int | None = None) -> str:
    """The engine file name for this precision on this host (and DLA core, and fixed batch size)."""
    dla = "" if dla_core is None else f"-dla{dla_core}"
    batch = "" if static_batch is None else f"-b{static_batch}"
    return f"{precision}-{host_stem(host)}{dla}{batch}.engine"


def tag_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(".json")


def timing_cache_path(bundle_dir: Path, host: HostFacts) -> Path:
    """Timing caches are per GPU model and TensorRT version too: one file each, never mixed."""
    return Path(bundle_dir) / ENGINES_DIR / f"{host_stem(host)}.timing_cache"


def rebuild_command(
    bundle_dir: Path | str, precision: str, dla_core: int | None = None, static_batch: int | None = None
) -> str:
    dla = "" if dla_core is None else f" --dla {dla_core}"
    batch = "" if static_batch is None else f" --batch {static_batch}"
    return f"edgefuse build-engine --bundle {bundle_dir} --precision {precision}{dla}{batch}"


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
    """The ONNX file an engine of this precision is built from (model.onnx, model.fp16.onnx, model.int8-trt.onnx:
    the symmetric Q/DQ graph, never the CPU's uint8 model.int8.onnx)."""
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision '{precision}'; use one of: {', '.join(PRECISIONS)}")
    path = bundle.engine_source(precision)
    if not path.is_file():
        raise BundleError(f"{path}: missing from the bundle (its manifest lists the {precision} variant)")
    return path


def check_engine(engine_path: Path, host: HostFacts, bundle_dir: Path, verify_sha: bool = True) -> EngineTag:
    """Refuse an engine that does not fit this host or this bundle; the BundleError says what differs and how to
    rebuild. Returns its tag."""
    engine_path = Path(engine_path)
    tag = EngineTag.load(tag_path(engine_path))
    fix = f"rebuild it on this host: {rebuild_command(bundle_dir, tag.precision, tag.dla_core, tag.static_batch)}"
    if not engine_path.is_file():
        raise BundleError(f"{engine_path}: engine file missing beside its tag; {fix}")
    problems = mismatches(tag, host)
    onnx_path = onnx_variant(load_bundle(bundle_dir, verify=False), tag.precision)
    if tag.onnx_file != onnx_path.name:  # an int8 engine built from model.int8.onnx before int8-trt existed
        problems.append(f"built from {tag.onnx_file}; {tag.precision} engines are built from {onnx_path.name}")
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


def find_engine(
    bundle_dir: str | Path, precision: str, host: HostFacts | None = None, dla_core: int | None | str = "any"
) -> Path | None:
    """The engine in BUNDLE/engines built for this precision, GPU, compute capability and TensorRT version (and
    from the bundle's current ONNX file), or None. `dla_core`: None = GPU engines only, N = that DLA core's only,
    "any" = either, a GPU engine preferred. Among fixed-batch engines the smallest batch wins (live ticks are small).

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
            if tag.precision != precision or (dla_core != "any" and tag.dla_core != dla_core):
                continue
            check_engine(engine_path, host, Path(bundle_dir), verify_sha=False)
        except BundleError:
            continue  # another host's engine, or a stale one: not ours to load
        fits.append((0 if tag.dla_core is None else 1 + tag.dla_core, tag.static_batch or 0, engine_path))
    return min(fits)[2] if fits else None


# ---------------------------------------------------------------------------------------------------------------------
# Build plan: optimization profiles and DLA


def profile_shapes(
    inputs: list[InputSpec], batch: BatchProfile, static_batch: int | None = None
) -> dict[str, tuple[tuple[int, ...], ...]]:
    """One optimization profile over the manifest's batch range: input name -> (min, opt, max) shapes.

    Axis 0 is the batch (-1 = dynamic); every other axis must be fixed. `static_batch` fixes it (min = opt = max):
    DLA has no dynamic dimensions, so a DLA engine is built for one batch size."""
    if static_batch is not None:
        if static_batch < 1:
            raise BundleError(f"--batch {static_batch}: a fixed batch size must be at least 1")
        batch = BatchProfile(min=static_batch, opt=static_batch, max=static_batch)
    if not 1 <= batch.min <= batch.opt <= batch.max:
        raise BundleError(f"manifest batch: need 1 <= min <= opt <= max, got {batch.min}/{batch.opt}/{batch.max}")
    shapes = {}
    for spec in inputs:
        rest = tuple(spec.shape[1:])
        if not spec.shape or any(d <= 0 for d in rest):
            raise BundleError(f"manifest input '{spec.name}': shape {spec.shape} must be [batch, fixed sizes...]")
        if spec.shape[0] == -1 or static_batch is not None:
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


def build_batches(plan: DlaPlan | None, asked: list[int] | None) -> list[int | None]:
    """Engines to build, one per entry: None = one engine over the manifest's batch range (GPU). A DLA engine has
    static shapes, so DLA builds one engine per asked batch size (default: batch 1, the live runtime's usual tick)."""
    if plan is None:
        return list(asked) if asked else [None]
    return list(dict.fromkeys(asked or [1]))


# TensorRT enables TF32 math for fp32 layers on Ampere and newer by default; fp32 parity with ONNX Runtime (1e-4)
# holds only with it off. Limits of |p_trt - p_onnxruntime| (probabilities) a GPU check holds each precision to.
PARITY_LIMITS = {"fp32": 1e-4, "fp16": 2e-2, "int8": 5e-2}


def tf32_allowed(precision: str, allow_tf32: bool) -> bool:
    """TF32 stays off for fp32 engines unless asked (--allow-tf32): fp32 then means fp32 (PARITY_LIMITS)."""
    return allow_tf32 or precision != "fp32"


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


def _configure(
    trt: ModuleType, builder: Any, network: Any, shapes: dict, plan: DlaPlan | None, workspace_mb: int, tf32: bool
) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(shapes):
        raise BundleError(f"ONNX inputs {sorted(names)} differ from the manifest's {sorted(shapes)}")
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    flag = getattr(trt.BuilderFlag, "TF32", None)  # on by default; guarded in case a later version drops it
    if flag is not None and not tf32:
        config.clear_flag(flag)
    if plan is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.core
        if plan.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def build_engine(
    bundle_dir: str | Path,
    precision: str = "fp32",
    dla: int | None = None,
    workspace_mb: int = 1024,
    static_batch: int | None = None,
    allow_tf32: bool = False,
) -> Path:
    """Build, write and tag a TensorRT engine for this host from the bundle's `precision` ONNX variant.

    The network is strongly typed on 10.x and 11.x alike, so the precision is the graph's: fp16 tensors in
    model.fp16.onnx, symmetric Q/DQ nodes in model.int8-trt.onnx. No precision builder flags, no calibrator.
    `static_batch` fixes the batch axis (required on DLA: `dla` without it builds batch 1); TF32 stays off for fp32
    unless `allow_tf32`."""
    from edgefuse._optional import require
    from edgefuse.deploy.trt_compat import strongly_typed_flags

    trt = require("tensorrt", "building TensorRT engines")
    bundle_dir = Path(bundle_dir)
    host = detect_host()
    if host is None:
        raise BundleError("no CUDA GPU visible (pycuda or torch found none); TensorRT engines are built on the GPU")
    bundle = load_bundle(bundle_dir)  # every listed file checked against its sha256
    onnx_path = onnx_variant(bundle, precision)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = dla_plan(dla, precision, builder.num_DLA_cores)
    if plan is not None and static_batch is None:
        static_batch = 1  # DLA has no dynamic dimensions
    shapes = profile_shapes(bundle.manifest.inputs, bundle.manifest.batch, static_batch)
    tf32 = tf32_allowed(precision, allow_tf32)
    network = builder.create_network(strongly_typed_flags(trt))
    parser = _parse(trt, network, onnx_path, logger)  # noqa: F841 - the network refers to the parser's weights
    config = _configure(trt, builder, network, shapes, plan, workspace_mb, tf32)

    cache_path = timing_cache_path(bundle_dir, host)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"{onnx_path}: TensorRT could not build an engine (see TensorRT's log above)")
    build_s = time.perf_counter() - t0

    core = None if plan is None else plan.core
    out = bundle_dir / ENGINES_DIR / engine_name(precision, host, core, static_batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(memoryview(serialized))
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    batch = bundle.manifest.batch
    if static_batch is not None:
        batch = BatchProfile(min=static_batch, opt=static_batch, max=static_batch)
    write_tag(out, precision, host, onnx_path, plan, batch, tf32)
    size_mb = out.stat().st_size / 1e6
    print(
        f"built {out} ({size_mb:.2f} MB) in {build_s:.1f} s (TensorRT {host.trt_version}, {host.gpu_name}, {host.sm})"
    )
    return out


def write_tag(
    engine_path: Path,
    precision: str,
    host: HostFacts,
    onnx_path: Path,
    plan: DlaPlan | None,
    batch: BatchProfile,
    tf32: bool | None = None,
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
        tf32=tf32,
    )
    tag.save(tag_path(engine_path))
    return tag


def parse_batches(text: str | None) -> list[int] | None:
    """ "1,8" -> [1, 8]; None stays None. A BundleError names a bad entry."""
    if not text:
        return None
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise BundleError(f"--batch {text!r}: a comma list of batch sizes, e.g. 1,8") from None
    if not out or min(out) < 1:
        raise BundleError(f"--batch {text!r}: batch sizes must be at least 1")
    return out


def cli_build_engine(args: argparse.Namespace) -> int:
    """`edgefuse build-engine --bundle B [--precision P] [--dla N] [--batch 1,8] [--allow-tf32] [--workspace-mb M]`:
    one engine over the manifest's batch range, or one fixed-batch engine per --batch size (always so on DLA)."""
    plan = DlaPlan(core=args.dla) if args.dla is not None else None  # validated against the host in build_engine
    for b in build_batches(plan, parse_batches(args.batch)):
        build_engine(args.bundle, args.precision, args.dla, args.workspace_mb, b, args.allow_tf32)
    return 0
