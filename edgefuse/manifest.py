"""The bundle manifest: everything a runtime needs to feed a model bundle, with no import of the trainer.

`edgefuse export` writes BUNDLE/manifest.json; `edgefuse.deploy.bundle.load_bundle` reads it back and checks every
file's sha256. The manifest says which tensor binds to which modality and window, what preprocessing the runtime
must do, what each output means, and how accurate each precision variant is. docs/bundle.md documents the format.
A runtime in another language can read it with any JSON parser: every field below is plain JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefuse.errors import BundleError
from edgefuse.spec import ScenarioSpec, parse_spec

# Bumped on any change a reader of an older version would misread; load_manifest refuses other versions.
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
# The ONNX variant each TensorRT engine precision is built from: int8 engines take the symmetric Q/DQ graph
# ("int8-trt", zero points 0), not the "int8" variant ONNX Runtime runs fastest on CPUs (uint8 activations).
ENGINE_VARIANT = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-trt"}
VARIANTS = ("fp32", "fp16", "int8", "int8-trt")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    """One model input or output tensor."""

    name: str
    dtype: Literal["float32", "float16", "int64"]
    # axis 0 is the batch; -1 there means any batch size in the manifest's batch range
    shape: list[int]


class InputSpec(TensorSpec):
    """An input tensor and the modality window it binds (modality None: the presence mask)."""

    modality: str | None = None
    kind: Literal["image", "audio", "series", "text", "mask"]
    window_s: float | None = None
    rate_hz: float | None = None


class OutputSpec(TensorSpec):
    """An output tensor: one head of a kind in edgefuse.heads.HEAD_KINDS (manifests without `kind`: "class")."""

    head: str
    labels: list[str]  # class or label names in output order; a regression head: [head]
    meaning: str = "softmax probabilities over `labels`, in that order; each row sums to 1"
    kind: str = "class"  # class | multilabel | regression
    thresholds: list[float] | None = None  # multilabel: per-label decision thresholds, tuned on the validation split
    unit: str | None = None  # regression: the value's unit
    min: float | None = None  # regression: the declared range; the runtime clips published values to it
    max: float | None = None


class MaskSpec(_Strict):
    """The presence-mask input: which modalities a sample has."""

    name: str = "mask"
    modalities: list[str]  # column order
    meaning: str = "float32, 1 = modality present, 0 = missing (its input is then ignored; feed zeros)"


class TokenizerSpec(_Strict):
    """Hashed tokenization (edgefuse.text.hash_tokens)."""

    type: Literal["hashed_crc32"] = "hashed_crc32"
    buckets: int
    ngrams: int
    max_tokens: int
    rule: str = (
        "lower-case; words = runs of [a-z0-9']; unigrams then word n-grams (2..ngrams) joined by one space; "
        "id = 1 + crc32(utf-8) % (buckets - 1); 0 = padding; cut or zero-pad to max_tokens"
    )


class PreprocessSpec(_Strict):
    """What the runtime does to one modality's raw samples before they become the model input."""

    kind: Literal["image", "audio", "series", "text"]
    steps: dict[str, str] = {}  # image: edgefuse.preprocess.IMAGE_STEPS, in order
    tokenizer: TokenizerSpec | None = None  # text
    units: str | None = None  # audio/series: "raw" (no scaling outside the model)
    window_rows: int | None = None  # audio/series: rows per window = round(window_s * rate_hz)
    channels: list[str] | int | None = None  # series: channel names in row order; audio/image: count
    resample: str | None = None  # how samples are gathered at a fusion tick (the synchronizer policy)


class BatchProfile(_Strict):
    """Batch sizes the model is built for: TensorRT optimization profiles use min/opt/max."""

    min: int = 1
    opt: int = 8
    max: int = 32


class ParitySpec(_Strict):
    """The export-time check that ONNX Runtime fp32 matches torch."""

    source: str  # where the samples came from (the test split, or random samples from the spec shapes)
    samples: int
    max_abs_diff: float  # max |p_onnx - p_torch| over all probabilities
    tolerance: float


class VariantSpec(_Strict):
    """One precision variant of the ONNX model."""

    file: str
    sha256: str
    # held-out score per head (None when the bundle was exported without --data): accuracy for class heads, mAP for
    # multilabel heads, max(0, 1 - MAE / train std) for regression heads (edgefuse/heads.py)
    accuracy: dict[str, float] | None = None
    accuracy_source: str | None = None
    notes: str = ""


class TrtVariantCheck(_Strict):
    """One variant's static TensorRT check (edgefuse.deploy.trt_check)."""

    file: str
    engine_precision: str | None  # the engine built from this variant; None: ONNX Runtime only
    ok: bool
    errors: list[str] = []  # each names the node and operator
    warnings: list[str] = []
    ops: dict[str, int] = {}  # op type -> node count


class TrtCheckSpec(_Strict):
    """The result of `edgefuse check-trt` (also run by `edgefuse export`): no GPU involved."""

    checked: str  # ISO 8601 UTC
    tensorrt: list[str]  # versions checked against: "10.x", "11.x"
    dla: bool
    table: str  # where the operator table comes from
    variants: dict[str, TrtVariantCheck]


class AnomalyManifest(_Strict):
    """The bundle's anomaly model (deploy/anomaly.py): its own ONNX file, fed the same inputs and mask as the
    classifier; published as the result's `anomaly` key (docs/wire.md)."""

    file: str = "anomaly.onnx"
    scores: str = "anomaly_scores"  # output (B, M): one score per modality, in mask order; 0 for a masked one
    fused: str = "anomaly_fused"  # output (B,): the fused score (max or mean of the present modalities' scores)
    modalities: list[str]  # the score columns, in mask order
    fuse: Literal["max", "mean"]
    quantile: float  # the validation quantile the thresholds sit at
    threshold: float  # the fused score's alert threshold
    thresholds: dict[str, float]  # per modality
    meaning: str = (
        "reconstruction error of a fixed compact view of each modality, as (log error - validation mean) / "
        "validation std: about 0 on normal data; alert when the fused score exceeds `threshold`"
    )
    parity_max_abs_diff: float  # ONNX Runtime vs torch on the parity samples, in score units
    metrics: dict[str, Any] = {}  # the anomaly training metrics (anomaly.json, without the history)


class Manifest(_Strict):
    """BUNDLE/manifest.json."""

    schema_version: int = SCHEMA_VERSION
    created: str  # ISO 8601 UTC
    edgefuse_version: str
    spec: dict[str, Any]  # the scenario spec (edgefuse.spec.spec_to_dict)
    opset: int
    inputs: list[InputSpec]
    mask: MaskSpec
    outputs: list[OutputSpec]
    preprocess: dict[str, PreprocessSpec]  # modality -> preprocessing
    batch: BatchProfile = BatchProfile()
    metrics: dict[str, Any] = {}  # training metrics from the checkpoint
    normalization: Any = None  # the checkpoint's normalization record, as stored
    versions: dict[str, str] = {}  # library versions used to export
    parity: ParitySpec
    torch_file: str | None = "model.pt"  # state dict + spec, for the torch backend
    variants: dict[str, VariantSpec] = Field(default_factory=dict)  # one of VARIANTS -> its file
    trt_check: TrtCheckSpec | None = None  # the static TensorRT check, when run
    anomaly: AnomalyManifest | None = None  # the anomaly model, when the run has one (issue 14)
    files: dict[str, str] = Field(default_factory=dict)  # every file but the manifest -> sha256

    def scenario(self) -> ScenarioSpec:
        """The scenario spec as an object."""
        return parse_spec(self.spec, f"{MANIFEST_NAME}:spec")


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest.json; BundleError names the file and what is wrong (schema version first)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; not a bundle (run `edgefuse export`)") from None
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested beyond Python's stack
        raise BundleError(f"{path}: cannot read as JSON: {str(err)[:200]}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: unknown schema_version {version!r} (this edgefuse reads {SCHEMA_VERSION}); "
            "re-export the bundle with this edgefuse or install the edgefuse that wrote it"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise BundleError(f"{path}: invalid manifest: {problems}") from None


def save_manifest(manifest: Manifest, path: str | Path) -> None:
    Path(path).write_text(manifest.model_dump_json(indent=2) + "\n")
