"""The few places where TensorRT 10.x and 11.x Python APIs differ, in one small shim.

Everything else edgefuse calls (Builder, OnnxParser, optimization profiles, memory pools, timing caches, DLA
settings, Runtime, the name-based tensor API and execute_async_v3) is the same in both. What differs:

- 10.x builds weakly typed networks unless NetworkDefinitionCreationFlag.STRONGLY_TYPED is passed; 11.x is always
  strongly typed and keeps the flag only as an ignored, deprecated member (it may disappear later). Setting it when
  it exists gives the same strongly typed build on both: precision comes from the ONNX graph (fp16 tensors, Q/DQ).
- EXPLICIT_BATCH was deprecated (ignored) in 10.x and is gone in 11.x: never pass it.
- BuilderFlag.FP16 / INT8, IInt8Calibrator and the platform_has_fast_* queries are gone in 11.x: never used here.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def major_version(trt: ModuleType) -> int:
    """TensorRT's major version (10, 11, ...) from `tensorrt.__version__`."""
    return int(str(trt.__version__).split(".")[0])


def strongly_typed_flags(trt: ModuleType) -> int:
    """`create_network` flags for a strongly typed network on 10.x and 11.x alike."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def parser_error_fields(err: Any) -> dict[str, Any]:
    """One OnnxParser error as plain data; node_name/node_operator exist on 10.x+ parsers, guarded anyway."""

    def call(name: str) -> Any:
        fn = getattr(err, name, None)
        return fn() if callable(fn) else None

    return {
        "desc": call("desc"),
        "code": str(call("code")),
        "node": call("node"),
        "node_name": call("node_name"),
        "node_operator": call("node_operator"),
    }
