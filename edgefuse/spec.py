"""The scenario spec: one YAML per scenario, the single source of modalities, rates, windows, labels and model.

The trainer, deploy and the runtime all read the same spec. Validation is strict (unknown keys are refused) and
every problem is reported at once with its dotted path, so a user fixes a config in one pass.

Tensor conventions every part of edgefuse follows (batch dimension first, omitted here):
  image   (channels, H, W) float32 in [0, 1], RGB                  shape: [H, W], channels: 3 or 1
  audio   (channels, round(window_s * rate_hz)) float32 in [-1, 1]   channels: int
  series  (len(channels), round(window_s * rate_hz)) float32, raw units; channels: names
  text    (max_tokens,) int64 hashed token ids, 0 = padding         shape: [max_tokens]
  mask    (n_modalities,) float32, 1 = present, in spec order
"""

from __future__ import annotations

import functools
import math
import operator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefuse.errors import EdgefuseError
from edgefuse.heads import HEAD_KINDS


class SpecError(EdgefuseError, ValueError):
    """A spec that fails validation; `problems` lists (dotted path, message) pairs, all of them at once."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in scenario spec\n{lines}")


class Strict(BaseModel):
    # allow_inf_nan=False: every float in a spec is finite (.inf or .nan in YAML is refused with its path)
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


# Limits on sizes a spec may ask for, so a typo cannot make the trainer or runtime try to allocate TiB.
MAX_RATE_HZ = 1e6  # samples per second of any stream
MAX_WINDOW_S = 3600.0
MAX_TENSOR_VALUES = 1 << 24  # values in one modality's per-sample input (64 MiB of float32)
MAX_IMAGE_SIDE = 8192


# ---------------------------------------------------------------------------------------------------------------------
# Synchronization policies, one per modality (runtime/sync.py implements them; the trainer cuts windows with them).


class SyncSpec(Strict):
    # nearest: the sample closest to the tick within tolerance_s;
    # window: all samples in [tick - window_s, tick], resampled to rate_hz;
    # hold: the latest sample if it is at most max_staleness_s old (zero-order hold).
    # docs/sync.md has the timing diagrams.
    policy: Literal["nearest", "window", "hold"] = "window"
    # nearest: how far from the tick a sample may be and still count (either side of the tick)
    tolerance_s: float = Field(0.1, gt=0)
    # window / hold: the modality is missing when its newest real row or sample is older than this at the tick;
    # unset = 3 x the larger of its sample period and its block duration (e.g. 96 ms for 32 ms mic blocks)
    max_staleness_s: float | None = Field(None, gt=0)
    # fraction of the window that must be covered by samples for the modality to count as present
    min_coverage: float = Field(0.8, ge=0, le=1)


# ---------------------------------------------------------------------------------------------------------------------
# Runtime sources, one per modality (runtime/sources/ implements them).

# The source registry: source type name -> "module:Class" of its runtime class (imported on first use, so a host
# without sounddevice can still run cameras and ZeroMQ sensors). The one list of the names source.type accepts;
# edgefuse.runtime.sources.register_source adds one, selectable from a config without editing this file.
SOURCE_TYPES: dict[str, str] = {
    "camera": "edgefuse.runtime.sources.camera:CameraSource",
    "microphone": "edgefuse.runtime.sources.microphone:MicrophoneSource",
    "zmq": "edgefuse.runtime.sources.zmq_sensor:ZmqSensorSource",
    "synthetic": "edgefuse.runtime.sources.synthetic:SyntheticSource",
    "replay": "edgefuse.runtime.sources.replay:ReplaySource",
}


class SourceSpec(Strict):
    # a name in SOURCE_TYPES (the source registry). synthetic: paced streams from the scenario generator (with ground
    # truth); camera: OpenCV VideoCapture; microphone: sounddevice InputStream; zmq: SUB to sensor publishers;
    # replay: a recorded session
    type: str = "synthetic"
    # camera: device index ("0") or path (/dev/video0), video file, rtsp:// or http:// URL, or GStreamer pipeline
    # ("... ! appsink"); microphone: device index, name or part of it ("USB", "pulse", "hw:1,0"), unset = default
    # input; zmq: endpoint to connect to (tcp://host:port); replay: session folder
    uri: str | None = None
    # a required source that cannot be opened at start-up stops the run with an error; otherwise its modality is
    # masked and retried while the run goes on
    required: bool = False
    # microphone: open the device at this rate / channel count (default: the device's own default rate, and its
    # channel count up to 2); blocks are resampled to rate_hz and mixed down to the modality's channels
    device_rate_hz: float | None = Field(None, gt=0)
    device_channels: int | None = Field(None, gt=0)
    # microphone: device channels to keep, in order (default: the mean of all when the modality has 1 channel,
    # else the first `channels`); the trainer's loader picks a WAV file's channels the same way
    select_channels: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)
    # camera (V4L2 devices): requested capture size [W, H] and FOURCC (MJPG lets USB cameras reach full rate);
    # the requested fps is the modality's rate_hz
    capture_size: list[Annotated[int, Field(gt=0)]] | None = Field(None, min_length=2, max_length=2)
    fourcc: str | None = Field(None, min_length=4, max_length=4)
    # zmq: topic prefix to subscribe to (empty = all)
    topic: str = ""
    # camera/microphone: seconds between reconnect attempts, doubled up to reconnect_max_s
    reconnect_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(8.0, gt=0)
    # microphone: frames per PortAudio callback block
    blocksize: int = Field(1024, gt=0)
    # video file / replay: loop at end of stream
    loop: bool = False
    # zmq: messages larger than this are refused (counted as "oversized")
    max_message_bytes: int = Field(1 << 20, gt=0)
    # zmq / synthetic series: sliding window of the sensor-clock fit (runtime/clockfit.py)
    clock_window_s: float = Field(60.0, gt=0)
    # zmq / synthetic series: a reading this far off the fitted clock line is a clock jump (re-anchored, counted)
    clock_jump_ms: float = Field(100.0, gt=0)
    # zmq CURVE: the sensor publisher's public certificate (NAME.key); set it to encrypt and authenticate the link
    curve_server_key: str | None = None
    # zmq CURVE: this runtime's secret certificate (NAME.key_secret); unset = a throwaway key pair (encryption only)
    curve_secret_key: str | None = None

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in SOURCE_TYPES:
            raise ValueError(f"Input should be one of the registered source types: {', '.join(SOURCE_TYPES)}")
        return v


# ---------------------------------------------------------------------------------------------------------------------
# Modalities


Triplet = tuple[int, int, int]  # channel indices of one x/y/z vector


def xyz_triplets(channels: list[str]) -> list[Triplet]:
    """Channel indices (x, y, z) of the 3-axis vectors of a series: names <stem>x, <stem>y, <stem>z (acc_x/acc_y/acc_z,
    ax/ay/az, head_x/head_y/head_z; case-insensitive), ordered by their x channel."""
    index = {c.lower(): i for i, c in enumerate(channels)}
    out = [
        (i, index[c[:-1] + "y"], index[c[:-1] + "z"])
        for c, i in index.items()
        if c.endswith("x") and c[:-1] + "y" in index and c[:-1] + "z" in index
    ]
    return sorted(out)


def rigid_group_of(channels: list[str], prefixes: list[str] | None) -> list[int]:
    """For each of xyz_triplets(channels), the index of its rigid group: the one prefix its x channel starts with
    (all 0 when `prefixes` is None). Raises ValueError on a prefix that starts no triplet or a triplet that starts
    with none or several of them."""
    triplets = xyz_triplets(channels)
    if prefixes is None:
        return [0] * len(triplets)
    groups = []
    for i, _, _ in triplets:
        hits = [g for g, p in enumerate(prefixes) if channels[i].startswith(p)]
        if len(hits) != 1:
            found = "none" if not hits else ", ".join(prefixes[g] for g in hits)
            raise ValueError(
                f"rigid_groups: channel {channels[i]} (an x/y/z vector) must start with exactly one prefix, found {found}"
            )
        groups.append(hits[0])
    for g, p in enumerate(prefixes):
        if g not in groups:
            raise ValueError(f"rigid_groups: no x/y/z channel triplet starts with {p!r}")
    return groups


def compass_units(channels: list[str], prefixes: list[str] | None) -> list[tuple[Triplet, list[Triplet]]]:
    """For each rigid group (rigid_group_of) that has magnetometer vectors: (its accelerometer vector, its magnetometer
    vectors). A magnetometer vector is an x/y/z triplet whose x channel's name contains 'mag', an accelerometer one
    'acc'. Raises ValueError on a group with magnetometer vectors and not exactly one accelerometer vector."""
    triplets, groups = xyz_triplets(channels), rigid_group_of(channels, prefixes)
    units = []
    for g in sorted(set(groups)):
        mine = [t for t, gt in zip(triplets, groups, strict=True) if gt == g]
        mag = [t for t in mine if "mag" in channels[t[0]].lower()]
        acc = [t for t in mine if "acc" in channels[t[0]].lower()]
        if not mag:
            continue
        if len(acc) != 1:
            where = f"rigid group {prefixes[g]!r}" if prefixes else "the modality (one rigid group)"
            names = ", ".join(channels[t[0]] for t in acc) or "none"
            raise ValueError(
                f"{where} has a magnetometer vector ({channels[mag[0][0]]}) and needs exactly one accelerometer "
                f"vector (x/y/z channels whose name contains 'acc') to find gravity; found {names}"
            )
        units.append((acc[0], mag))
    return units


class ModalitySpec(Strict):
    kind: Literal["image", "audio", "series", "text"]
    # samples (image: frames, audio: samples, series: rows) per second; text: utterances arrive as events.
    # Required for audio and series; image and text may leave it out (1 Hz: a still per tick; a camera source
    # reads its real frame rate from the device)
    rate_hz: float | None = Field(None, gt=0, le=MAX_RATE_HZ)
    # seconds before the fusion tick that the model sees: [tick - window_s, tick]; 0 = one sample at the tick
    window_s: float = Field(0.0, ge=0, le=MAX_WINDOW_S)
    # image: [H, W]; text: [max_tokens]; audio/series: derived from window_s and rate_hz (leave unset)
    shape: list[int] | None = None
    # image: 3 (RGB) or 1 (gray); audio: channel count; series: channel names, in order
    channels: int | list[str] = 1
    # an optional modality is often absent (e.g. the camera of a voice call); models train with it missing
    optional: bool = False
    # series: channel-name prefixes, one per separately mounted sensor (e.g. [t_, ra_, la_]). Training rotates the
    # 3-axis vectors (channels named <stem>x, <stem>y, <stem>z) of each sensor by its own random rotation
    # (model.rotate_deg): a sensor strapped on differently. Unset: the modality is one rigid sensor (one rotation)
    rigid_groups: list[str] | None = Field(None, min_length=1)
    sync: SyncSpec = SyncSpec()  # how the runtime (and a recorded session) cuts this modality at a tick
    source: SourceSpec = SourceSpec()  # where the runtime reads it from

    @model_validator(mode="after")
    def _check_kind(self) -> ModalitySpec:
        if self.rate_hz is None:
            if self.kind in ("audio", "series"):
                raise ValueError(f"{self.kind} needs rate_hz (samples per second)")
            self.rate_hz = 1.0
        if self.kind == "image":
            if not self.shape or len(self.shape) != 2 or min(self.shape) <= 0:
                raise ValueError("image needs shape: [H, W] with positive sizes")
            if self.channels not in (1, 3):
                raise ValueError("image channels must be 3 (RGB) or 1 (gray)")
        elif self.kind == "text":
            if not self.shape or len(self.shape) != 1 or self.shape[0] <= 0:
                raise ValueError("text needs shape: [max_tokens]")
        else:
            if self.shape is not None:
                raise ValueError(f"{self.kind} shape is derived from window_s and rate_hz; remove 'shape'")
            if self.window_s <= 0:
                raise ValueError(f"{self.kind} needs window_s > 0")
            if self.kind == "series":
                if not isinstance(self.channels, list) or not self.channels:
                    raise ValueError("series channels must be a list of channel names")
                if len(set(self.channels)) != len(self.channels):
                    raise ValueError("series channel names must be unique")
                rigid_group_of(self.channels, self.rigid_groups)  # raises on a prefix that fits no 3-axis vector
            elif not isinstance(self.channels, int) or self.channels <= 0:
                raise ValueError("audio channels must be a positive integer")
        if self.rigid_groups is not None and self.kind != "series":
            raise ValueError("rigid_groups applies to series modalities only")
        if self.kind == "image" and max(self.shape) > MAX_IMAGE_SIDE:  # type: ignore[arg-type]
            raise ValueError(f"image shape sides must be at most {MAX_IMAGE_SIDE}")
        per_channel = self.shape[0] * self.shape[1] if self.kind == "image" else self.n_steps  # type: ignore[index]
        values = self.n_channels * per_channel
        if values > MAX_TENSOR_VALUES:
            raise ValueError(
                f"one {self.kind} input would hold {values:,} values (> {MAX_TENSOR_VALUES:,}); "
                "lower window_s, rate_hz, shape or channels"
            )
        return self

    @property
    def n_channels(self) -> int:
        return len(self.channels) if isinstance(self.channels, list) else int(self.channels)

    @property
    def n_steps(self) -> int:
        """Samples in one window (audio/series), 1 for image, max_tokens for text."""
        if self.kind in ("audio", "series"):
            return max(1, round(self.window_s * self.rate_hz))
        if self.kind == "text":
            return self.shape[0]  # type: ignore[index]
        return 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample tensor shape the model takes (no batch dimension)."""
        if self.kind == "image":
            return (self.n_channels, self.shape[0], self.shape[1])  # type: ignore[index]
        if self.kind == "text":
            return (self.shape[0],)  # type: ignore[index]
        return (self.n_channels, self.n_steps)

    @property
    def input_dtype(self) -> str:
        return "int64" if self.kind == "text" else "float32"


# ---------------------------------------------------------------------------------------------------------------------
# Model: one encoder per modality and one fusion method. Encoder types are registered in trainer/models.


class DWCNNEncoder(Strict):
    """Depthwise-separable CNN for images."""

    type: Literal["dwcnn"]
    width: int = Field(16, gt=0)  # channels of the first block, doubled per stage
    stages: int = Field(3, ge=1, le=6)


class LogMelEncoder(Strict):
    """Log-mel front end (inside the model, conv/matmul only) followed by a small 2D CNN."""

    type: Literal["logmel_cnn"]
    n_fft: int = Field(512, gt=0)
    hop: int = Field(256, gt=0)
    n_mels: int = Field(40, gt=0)
    f_min: float = Field(0.0, ge=0)
    f_max: float | None = None  # None = Nyquist
    width: int = Field(16, gt=0)
    # depthwise-separable blocks after the stride-2 stem, each stride 2 and doubling the width
    stages: int = Field(2, ge=1, le=4)


class CNN1DEncoder(Strict):
    """Temporal 1D CNN for sensor series."""

    type: Literal["cnn1d"]
    width: int = Field(32, gt=0)
    kernel: int = Field(5, gt=0)
    layers: int = Field(3, ge=1)
    # the last feature map is averaged over this many equal stretches of the window, concatenated: keeps the coarse
    # order of what happened (a swipe to the left vs to the right); 1 = one mean over the whole window
    segments: int = Field(1, ge=1, le=16)


class GRUEncoder(Strict):
    """GRU over sensor series; the last hidden state is the embedding."""

    type: Literal["gru"]
    hidden: int = Field(64, gt=0)
    layers: int = Field(1, ge=1)
    # average-pool the series in time by this factor before the GRU: fewer recurrent steps, which dominate its
    # batch-1 CPU latency (the oldest samples are dropped when the window does not divide evenly)
    pool: int = Field(1, ge=1)


class HashedTextEncoder(Strict):
    """Hashed-token embedding bag (no vocabulary download); tokens hashed by edgefuse.text."""

    type: Literal["hashed_embedding"]
    buckets: int = Field(4096, gt=1)  # must match the tokenizer in the manifest
    ngrams: int = Field(2, ge=1, le=3)  # word n-grams hashed as extra tokens
    width: int = Field(64, gt=0)


# The encoder registry, spec side: encoder type name -> (its config model, the modality kinds it encodes). This dict is
# the one list of the names model.encoders.<m>.type accepts; the trainer's modules are looked up under the same names
# (trainer/models/encoders.py), and register_encoder_config() adds one (the trainer's register_encoder calls it), so a
# newly registered encoder is selectable from a config without editing this file. Kept here, not in the trainer, so
# the runtime validates specs without torch.
ENCODER_TYPES: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {}


def _encoder_union() -> Any:
    union = functools.reduce(operator.or_, (cls for cls, _ in ENCODER_TYPES.values()))  # A | B | ...
    return Annotated[union, Field(discriminator="type")]


def register_encoder_config(cls: type[BaseModel], kinds: tuple[str, ...] | list[str]) -> str:
    """Make `cls` (a pydantic model with `type: Literal["<name>"]`) a valid model.encoders entry for modalities of
    `kinds`; returns the name. The spec models are rebuilt, so configs parsed afterwards accept it."""
    tag = get_args(cls.model_fields["type"].annotation) if "type" in cls.model_fields else ()
    if len(tag) != 1 or not isinstance(tag[0], str):
        raise ValueError(f"{cls.__name__}: an encoder config needs a field `type: Literal['<name>']`")
    ENCODER_TYPES[tag[0]] = (cls, tuple(kinds))
    _rebuild_encoder_field()
    return tag[0]


def unregister_encoder_config(name: str) -> None:
    """Remove a registered encoder name (tests; a plug-in that is unloaded)."""
    if ENCODER_TYPES.pop(name, None) is not None:
        _rebuild_encoder_field()


def encoders_for_kind() -> dict[str, list[str]]:
    """Modality kind -> the encoder names that encode it, from the registry."""
    out: dict[str, list[str]] = {}
    for name, (_, kinds) in ENCODER_TYPES.items():
        for k in kinds:
            out.setdefault(k, []).append(name)
    return out


def _rebuild_encoder_field() -> None:
    """After the spec models exist, point ModelSpec.encoders at the registry's current union and rebuild the models
    that validate it (pydantic builds a model's validator once, at class creation)."""
    if "ScenarioSpec" in globals():
        ModelSpec.model_fields["encoders"].annotation = dict[str, _encoder_union()]
        ModelSpec.model_rebuild(force=True)
        ScenarioSpec.model_rebuild(force=True)


for _cls, _kinds in (
    (DWCNNEncoder, ("image",)),
    (LogMelEncoder, ("audio",)),
    (CNN1DEncoder, ("series",)),
    (GRUEncoder, ("series",)),
    (HashedTextEncoder, ("text",)),
):
    register_encoder_config(_cls, _kinds)
EncoderSpec = _encoder_union()  # the built-ins; the field is rebuilt when one is registered later

# The names model.fusion.method accepts: fusion method name -> one line about it. This dict is the one list; the
# trainer's classes are looked up under these names (trainer/models/fusion.py), and register_fusion_name() adds one
# (trainer/models/fusion.py's register_fusion calls it), so a newly registered method is selectable from a config
# without editing this file. Kept here, not in the trainer, so the runtime validates specs without torch.
FUSION_METHODS: dict[str, str] = {
    "concat": "early fusion: concatenate embeddings, MLP",
    "late": "one classifier per modality, logits averaged over present modalities",
    "attention": "self-attention across modality tokens, masked",
    "attention_pool": "learned query attends over modality tokens",
    "max_align": "project to a shared space, element-wise max over present modalities",
    "weighted_align": "project to a shared space, softmax-gated weighted sum",
    "adversarial": "shared space + modality discriminator behind a gradient-reversal layer",
    "tensor": "tensor fusion: outer product of [z, 1] vectors (small dims)",
    "low_rank": "low-rank multimodal fusion (LMF): rank-r factors per modality",
}


def register_fusion_name(name: str, description: str = "") -> None:
    """Make `name` a valid model.fusion.method (the trainer's register_fusion calls this)."""
    FUSION_METHODS[name] = description


class FusionSpec(Strict):
    method: str = "attention"  # a name in FUSION_METHODS (the fusion registry); see the list above this table
    heads: int = Field(4, gt=0)  # attention heads
    rank: int = Field(8, gt=0)  # low_rank factors
    tensor_dim: int = Field(8, gt=0)  # tensor fusion: per-modality projection size before the outer product
    adversarial_weight: float = Field(0.1, ge=0)  # adversarial: weight of the discriminator loss

    @field_validator("method")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in FUSION_METHODS:
            raise ValueError(f"Input should be one of the registered fusion methods: {', '.join(FUSION_METHODS)}")
        return v


Degrees = Annotated[float, Field(ge=0, le=180)]


class ModelSpec(Strict):
    dim: int = Field(64, gt=0)  # shared embedding size every encoder projects to
    # modality -> encoder; leave the whole `model` section (or `encoders`) out for defaults sized from each
    # modality (default_encoder); when given, every modality needs one
    encoders: dict[str, EncoderSpec] = {}
    fusion: FusionSpec = FusionSpec()
    dropout: float = Field(0.1, ge=0, lt=1)
    # probability of masking each present modality during training (at least one modality is always kept)
    modality_dropout: float = Field(0.25, ge=0, lt=1)
    # training-only augmentation strength (trainer/augment.py: shifts, gain, noise, jitter, SpecAugment masks); 0 = off
    augment: float = Field(1.0, ge=0, le=2)
    # training-only random 3-D rotation of each series' x/y/z channel triplets (modalities.<m>.rigid_groups), up to
    # this many degrees about a random axis, times min(1, augment); one number for every series modality, or a
    # mapping modality -> degrees (those left out: 0); 0 = off
    rotate_deg: Degrees | dict[str, Degrees] = 0.0
    # training-only random turn of the wearer's compass heading, up to this many degrees (180: any heading), times
    # min(1, augment); one angle per sample for all series modalities. Each magnetometer vector (x/y/z channels whose
    # name contains 'mag') turns about gravity, the window mean of the accelerometer vector ('acc') of its rigid
    # group; accelerometer and gyroscope channels are kept (turning about the vertical changes neither); 0 = off
    heading_deg: Degrees = 0.0
    # modality-imbalance remedy: weight of the per-modality auxiliary classifiers' loss (unimodal heads on each
    # modality's embedding, trained with the fused head and dropped at export; cf. Gradient-Blending, Wang et al.
    # CVPR 2020); 0 = off
    unimodal_aux: float = Field(0.5, ge=0)


class TrainSpec(Strict):
    # upper bound on epochs; unset = sized from the data: about 3000 optimizer steps, between 20 and 120 epochs
    epochs: int | None = Field(None, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-2, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    # early stopping: epochs since the kept epoch (lowest validation loss once the cosine decay is two thirds done,
    # the learning rate below 30 % of its peak; no stop before that epoch); unset = max(5, epochs // 4)
    patience: int | None = Field(None, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    # exponential moving average of the weights over about this many epochs (validated, kept and exported); 0 = off
    ema_epochs: float = Field(1.0, ge=0)
    # fit a per-head softmax temperature on the validation split after training (calibrated published scores)
    calibrate: bool = True
    # score every class as equally likely: after the temperature, each class head's logits get minus the log of the
    # training split's class frequencies (post-hoc logit adjustment, Menon et al., ICLR 2021); for data whose classes
    # are unevenly recorded, where rare classes matter as much as common ones (balanced accuracy, macro F1). Off: the
    # scores follow the training split's frequencies (best plain accuracy where the world has those frequencies)
    balanced: bool = False
    # cut every sample's recordings into windows every window_hop_s seconds, each a sample of its own with the same
    # split, labels and captions: the last window (the one a sample gives when unset), then each window ending
    # window_hop_s earlier, as many as fit in the sample's shortest audio or series recording or video (stills and
    # text repeat, a video gives the frame shown at each window's end);
    # for recordings longer than the window (folder datasets; docs/dataset.md); at least one step of every audio and
    # series modality. Unset: the last window only
    window_hop_s: float | None = Field(None, gt=0)
    # pad audio and series recordings shorter than their modality's window at the start, so that they end at the
    # tick as the loader's windows do: audio with silence (zeros), series with their first row held (a CSV with
    # `t_s` from its first row); for datasets of short clips (spoken words, sound events). Training prints how
    # many were padded per modality and the shortest. Off: a recording shorter than the window is an error
    pad_short: bool = False
    # series cells that are empty or NaN take their channel's previous value in the file (its first value for those
    # before it), as a sensor that did not report holds its last reading (e.g. a heart rate logged in a few rows of
    # an IMU's); a channel with no value at all is still an error; loading prints how many cells were held per
    # modality. Off: an empty or NaN cell is an error
    hold_missing: bool = False
    # unimodal pre-training: first train each modality alone (same recipe and seed; kept in <run>/pretrain/), then
    # start the fused model's encoders from those models and train it as usual; about (M + 1) x the training time;
    # one process only (refused with --nproc)
    pretrain: bool = False
    seed: int = 0
    threads: int = Field(2, gt=0)  # torch CPU threads


class RegressionSpec(Strict):
    """One regression head: a continuous target in `unit` (labels.csv holds the value; empty = unknown)."""

    unit: str = ""  # published with every value ("km/h", "s", "" for a unitless score)
    # the range the value lives in (docs and synthetic data; the runtime clips the published value to it)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _range(self) -> RegressionSpec:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


class AnomalyTargetSpec(Strict):
    """The fixed (not learned) compact view of each modality the anomaly model reconstructs."""

    image_size: int = Field(8, gt=0)  # image: average-pooled to image_size x image_size pixels per channel
    audio_bands: int = Field(16, gt=0)  # audio: log-mel bands (at most the encoder's n_mels) ...
    audio_frames: int = Field(8, gt=0)  # ... averaged into this many frames per window
    series_steps: int = Field(16, gt=0)  # series: standardized, averaged into this many steps (minus the mean) ...
    series_noise_bins: int = Field(8, gt=0)  # ... and each channel's log noise level (RMS of differences) per bin
    text_bins: int = Field(32, gt=1)  # text: histogram of token ids folded into this many bins


class AnomalySpec(Strict):
    """The unsupervised multimodal anomaly model (trainer/models/anomaly.py): an autoencoder over the same encoders,
    trained on normal data only; per tick a score per modality and a fused score, alerting above a threshold."""

    latent: int = Field(16, gt=0)  # the fused bottleneck's size
    hidden: int = Field(128, gt=0)  # width of the bottleneck MLP and of each decoder
    # training epochs; unset = train.epochs (or its data-sized default); patience unset = train.patience's rule
    epochs: int | None = Field(None, gt=0)
    patience: int | None = Field(None, gt=0)
    # probability of hiding each present modality from the encoders in training (it is still reconstructed, from
    # the others): the model learns what each modality should look like given the rest
    modality_dropout: float = Field(0.25, ge=0, lt=1)
    # the alert thresholds: this quantile of the validation split's (normal) scores, per modality and fused
    quantile: float = Field(0.99, gt=0.5, lt=1)
    # fused score = the max (a fault in any one modality alerts) or the mean of the present modalities' scores
    fuse: Literal["max", "mean"] = "max"
    # head -> classes left out of "normal" (the train and validation data of the anomaly model): e.g. an event
    # the model must flag as never seen; the rest of the train split is normal
    exclude: dict[str, list[str]] = {}
    target: AnomalyTargetSpec = AnomalyTargetSpec()


class CaptionSpec(Strict):
    """The caption head: an LSTM decoder over the fused representation, trained on DATA/captions.csv.

    It trains with the classifier heads (trainer/caption.py) and exports as an ONNX step model the runtime decodes
    greedily (runtime/caption.py)."""

    max_tokens: int = Field(24, gt=0)  # longest published caption in words (decoding stops earlier at end-of-caption)
    hidden: int = Field(128, gt=0)  # decoder LSTM size = size of the fused context vector the main model outputs
    embed: int = Field(64, gt=0)  # word embedding size
    # vocabulary: the words seen at least this often in the train split's captions; the others read as <unk>
    min_count: int = Field(1, gt=0)
    weight: float = Field(1.0, gt=0)  # weight of the caption cross-entropy in the training loss


class SynthSpec(Strict):
    generator: str  # name of a generator registered in trainer/synth (the three built-ins use their own name)
    samples: int = Field(2400, gt=0)  # default sample count for `edgefuse synth`
    splits: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
    # per-label prior weights (label value -> weight); unset = uniform
    noise: float = Field(1.0, ge=0)  # global noise scale


# ---------------------------------------------------------------------------------------------------------------------
# Runtime


class PublishSpec(Strict):
    endpoint: str | None = "tcp://127.0.0.1:5555"  # binds to localhost unless configured; null: bind nothing
    hwm: int = Field(100, gt=0)  # ZeroMQ send high-water mark; sends never block
    # CURVE: paths to the server's secret key file and a folder of authorized client public keys
    curve_secret_key: str | None = None
    curve_authorized_keys: str | None = None
    # monitoring topics (thumbnails, levels, stats) at this rate; 0 = off
    monitor_hz: float = Field(2.0, ge=0)
    # a subscriber at the high-water mark misses messages while the others receive every one; true: each time one is
    # found full it is counted (publish failure "slow_subscriber"); false: libzmq's plain lossy mode, not counted
    count_drops: bool = True
    # relays (`edgefuse relay --in`) the PUB socket also connects to, e.g. ["tcp://hub:5556"]; with endpoint null
    # the runtime binds nothing and publishes through the relays only
    connect: list[str] = []
    # CURVE towards a relay: the relay's public key certificate, and this runtime's own (secret) certificate
    connect_curve_server_key: str | None = None
    connect_curve_secret_key: str | None = None


DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # a host-name-like token: no "/" (topics split on it)


def default_device_id() -> str:
    """The host name, cut to what a device id allows (the default `runtime.device_id`)."""
    import re
    import socket

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).lstrip("-_.")[:63]
    return name or "edge"


class RuntimeModelSpec(Strict):
    """Which backend runs the bundle, at which precision, on which device: the one place that picks the model
    (edgefuse.deploy.backends.choose; `run`/`replay`/`bench`/`demo` override each field on the command line)."""

    # auto: this host's TensorRT engine at `precision` (on `device`), else ONNX Runtime with its best provider
    backend: Literal["auto", "onnxruntime", "tensorrt", "torch"] = "auto"
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # auto (GPU 0 when there is one, else the CPU) | cpu | cuda | cuda:N | dla | dla:N (Jetson DLA core, TensorRT)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|dla(:\d+)?)$")
    cuda_graphs: bool = False  # torch backend on CUDA: replay captured CUDA graphs
    threads: int | None = Field(None, gt=0)  # CPU intra-op threads (onnxruntime, torch); None: the library's default


class RuntimeSpec(Strict):
    tick_hz: float = Field(2.0, gt=0)  # fusion ticks per second (when trigger is unset)
    trigger: str | None = None  # a modality name: tick on each of its samples instead of a fixed rate
    # a nearest-policy modality (e.g. the camera): the tick grid's phase follows its frames, so a frame lands on
    # each tick and no tick waits for the next frame; tick_hz must not exceed its rate
    phase_lock: str | None = None
    latency_budget_ms: float = Field(50.0, gt=0)  # how long a tick waits for late samples
    queue_size: int = Field(256, gt=0)  # bounded per-source queue, drop-oldest when full
    batch_max: int = Field(8, gt=0)  # batch ticks across sensor groups
    batch_deadline_ms: float = Field(5.0, ge=0)
    groups: int = Field(1, gt=0)  # sensor groups (rooms, cameras) in one process
    model: RuntimeModelSpec = RuntimeModelSpec()
    publish: PublishSpec = PublishSpec()
    metrics_port: int | None = None  # Prometheus exporter port; None = off
    # this runtime's name in every published message (topic and header) and metric label; null: the host name
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)

    @property
    def device(self) -> str:
        """The device id in force: `device_id`, else the host name."""
        return self.device_id or default_device_id()


# ---------------------------------------------------------------------------------------------------------------------


class ScenarioSpec(Strict):
    name: str  # the scenario's name (reports, bundles, run summaries)
    description: str = ""  # one line for people
    version: int = 1  # the spec author's own version number, copied into bundles
    modalities: dict[str, ModalitySpec]  # modality name -> its kind, rate, window, shape, channels (spec order)
    # head name -> class names; a spec with several heads trains one classifier per head. Numbers are allowed and
    # kept as strings (labels.csv holds text): [0, 1, 2] means the classes "0", "1", "2"
    labels: dict[str, list[str]] = {}
    # multi-label heads: head name -> label names; several labels may hold at once (sigmoid outputs, per-label
    # thresholds tuned on the validation split); labels.csv holds the present ones joined by "|"
    multilabel: dict[str, list[str]] = {}
    # regression heads: head name -> unit and optional range; labels.csv holds a number (empty = unknown)
    regression: dict[str, RegressionSpec] = {}
    captions: CaptionSpec | None = None  # optional: a caption head trained on DATA/captions.csv (docs/dataset.md)
    # optional: the unsupervised anomaly model (needs no labels; `edgefuse train` trains it after the classifier)
    anomaly: AnomalySpec | None = None
    # optional: unset, every modality gets default_encoder() and the defaults below
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()  # optional: the training recipe (trainer/train.py)
    synth: SynthSpec | None = None  # only for `edgefuse synth`: the synthetic generator of this scenario
    runtime: RuntimeSpec = RuntimeSpec()  # optional: how `edgefuse run` ticks, batches and publishes

    @field_validator("labels", "multilabel", mode="before")
    @classmethod
    def _labels_as_text(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {
                h: [str(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else c for c in cs]
                if isinstance(cs, list)
                else cs
                for h, cs in v.items()
            }
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """No `model` section, or one without `encoders`: every modality gets its default encoder."""
        if not isinstance(data, dict) or not isinstance(data.get("modalities"), dict):
            return data
        model = data.get("model", {})
        if isinstance(model, dict) and "encoders" not in model:
            encoders = {n: default_encoder(m) for n, m in data["modalities"].items() if isinstance(m, dict)}
            data = {**data, "model": {**model, "encoders": {n: e for n, e in encoders.items() if e}}}
        return data

    @model_validator(mode="after")
    def _cross_check(self) -> ScenarioSpec:
        problems = cross_check(self.model_dump(mode="json"))
        if problems:
            # one ValueError; _format_errors splits it back into (path, message) pairs
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in problems))
        return self

    # convenience --------------------------------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    @property
    def heads(self) -> list[str]:
        """The classification heads (`labels`), in spec order."""
        return list(self.labels)

    @property
    def head_kinds(self) -> dict[str, str]:
        """Every head -> its kind (edgefuse.heads.HEAD_KINDS): class heads, then multilabel, then regression."""
        kinds: dict[str, str] = {}
        for kind in HEAD_KINDS.values():
            kinds.update(dict.fromkeys(getattr(self, kind.section), kind.name))
        return kinds

    def rotation_deg(self, modality: str) -> float:
        """model.rotate_deg for one modality (0 for a non-series one or one a mapping leaves out)."""
        if self.modalities[modality].kind != "series":
            return 0.0
        r = self.model.rotate_deg
        return float(r.get(modality, 0.0) if isinstance(r, dict) else r)

    def window_span_s(self) -> float:
        """The longest window any modality needs: how much history the synchronizer keeps per tick."""
        return max(m.window_s for m in self.modalities.values())


def default_encoder(m: dict[str, Any]) -> dict[str, Any]:
    """The encoder a modality gets when the spec names none, sized from its kind, rate and window (raw mapping)."""
    kind = m.get("kind")
    if kind == "image":
        shape = m.get("shape") or [64, 64]
        return {"type": "dwcnn", "width": 16, "stages": 2 if min(shape) <= 64 else 3}
    if kind == "audio":
        rate, window = float(m.get("rate_hz") or 16000), float(m.get("window_s") or 1.0)
        n_fft = 1 << max(6, round(math.log2(rate * 0.032)))  # ~32 ms frames
        while n_fft > rate * window and n_fft > 64:
            n_fft //= 2
        return {"type": "logmel_cnn", "n_fft": n_fft, "hop": n_fft // 2, "n_mels": min(40, n_fft // 8), "stages": 2}
    if kind == "series":
        steps = float(m.get("rate_hz") or 1) * float(m.get("window_s") or 1)
        width = 64 if len(m.get("channels") or []) > 16 else 32  # many channels (a skeleton, an array): wider
        # segments: a window of 32+ steps keeps its coarse time order (4 stretches), a short one is averaged
        return {
            "type": "cnn1d",
            "width": width,
            "kernel": 5,
            "layers": 3 if steps >= 32 else 2,
            "segments": 4 if steps >= 32 else 1,
        }
    if kind == "text":
        return {"type": "hashed_embedding"}
    return {}


def _heading_problems(deg: Any, modalities: dict[str, Any]) -> list[tuple[str, str]]:
    """model.heading_deg > 0 needs a series modality with a magnetometer vector, each with its unit's accelerometer."""
    if not isinstance(deg, (int, float)) or deg <= 0:
        return []
    problems, found, unread = [], False, False
    for m, ms in modalities.items():
        if not isinstance(ms, dict) or ms.get("kind") != "series" or not isinstance(ms.get("channels"), list):
            continue
        channels, groups = [str(c) for c in ms["channels"]], ms.get("rigid_groups")
        try:
            if groups is not None and not (isinstance(groups, list) and all(isinstance(p, str) for p in groups)):
                raise TypeError(groups)
            rigid_group_of(channels, groups)
        except (ValueError, TypeError):  # a malformed rigid_groups: reported on its own field
            unread = True
            continue
        try:
            found |= bool(compass_units(channels, groups))
        except ValueError as e:
            problems.append(("model.heading_deg", f"modalities.{m}: {e}"))
    if not found and not problems and not unread:
        problems.append(
            (
                "model.heading_deg",
                "no series modality has a magnetometer vector (x/y/z channels whose name contains 'mag')",
            )
        )
    return problems


def cross_check(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks that span fields (encoders vs modalities, labels, trigger, splits), on the raw mapping.

    Runs on raw data so that these problems are reported together with field errors, not only after them.
    """
    d = lambda x: x if isinstance(x, dict) else {}  # noqa: E731 - tolerate malformed parts: they have own errors
    modalities, model, labels = d(data.get("modalities")), d(data.get("model")), data.get("labels", {})
    encoders = d(model.get("encoders"))
    problems: list[tuple[str, str]] = []
    if "modalities" in data and not modalities:
        problems.append(("modalities", "at least one modality is required"))
    problems += _head_problems(data)
    if isinstance(labels, dict):
        for head, classes in labels.items():
            if isinstance(classes, list) and len(classes) < 2:
                problems.append((f"labels.{head}", "a head needs at least two classes"))
            if isinstance(classes, list) and len(set(map(str, classes))) != len(classes):
                problems.append((f"labels.{head}", "class names must be unique"))
    if data.get("captions") is not None:
        for section in HEAD_SECTIONS:
            if isinstance(data.get(section), dict) and "caption" in data[section]:
                problems.append(
                    (f"{section}.caption", "'caption' is the caption head's name (captions:); rename this head")
                )
    hop = d(data.get("train")).get("window_hop_s")
    if isinstance(hop, (int, float)) and hop > 0:  # a shorter hop repeats rows: windows that differ by nothing
        for m, ms in modalities.items():
            rate = d(ms).get("rate_hz")
            if (
                d(ms).get("kind") in ("audio", "series")
                and isinstance(rate, (int, float))
                and rate > 0
                and hop * rate < 1
            ):
                problems.append(("train.window_hop_s", f"{hop:g} s is shorter than one step of {m} ({1 / rate:g} s)"))
    if "encoders" in model:
        for m in modalities:
            if m not in encoders:
                problems.append((f"model.encoders.{m}", f"modality '{m}' has no encoder"))
        for m, enc in encoders.items():
            if m not in modalities:
                problems.append((f"model.encoders.{m}", f"no modality named '{m}'"))
                continue
            kind, etype, for_kind = d(modalities[m]).get("kind"), d(enc).get("type"), encoders_for_kind()
            if kind in for_kind and etype not in for_kind[kind]:
                allowed = ", ".join(for_kind[kind])
                problems.append((f"model.encoders.{m}.type", f"'{etype}' cannot encode {kind}; use one of: {allowed}"))
    rotate = model.get("rotate_deg")
    if isinstance(rotate, dict):
        for m in rotate:
            if m not in modalities:
                problems.append((f"model.rotate_deg.{m}", f"no modality named '{m}'"))
            elif d(modalities[m]).get("kind") != "series":
                problems.append((f"model.rotate_deg.{m}", "only series modalities are rotated"))
    problems += _heading_problems(model.get("heading_deg"), modalities)
    problems += _anomaly_problems(d(data.get("anomaly")), d(labels))
    problems += _model_choice_problems(d(d(data.get("runtime")).get("model")))
    trigger = d(data.get("runtime")).get("trigger")
    if trigger is not None and trigger not in modalities:
        problems.append(("runtime.trigger", f"no modality named '{trigger}'"))
    rt = d(data.get("runtime"))
    lock = rt.get("phase_lock")
    if lock is not None:
        lm = d(modalities.get(lock))
        if lock not in modalities:
            problems.append(("runtime.phase_lock", f"no modality named '{lock}'"))
        elif d(lm.get("sync")).get("policy") != "nearest":
            problems.append(("runtime.phase_lock", f"'{lock}' must use the nearest policy (one frame per tick)"))
        elif trigger is not None:
            problems.append(("runtime.phase_lock", "a triggered runtime already ticks on its trigger's samples"))
        else:
            rate, tick = lm.get("rate_hz"), rt.get("tick_hz", 2.0)
            if isinstance(rate, (int, float)) and isinstance(tick, (int, float)) and tick > rate:
                problems.append(("runtime.phase_lock", f"tick_hz {tick} is above '{lock}' rate_hz {rate}"))
    splits = d(data.get("synth")).get("splits")
    numeric = isinstance(splits, dict) and all(isinstance(v, (int, float)) for v in splits.values())
    if numeric and abs(sum(splits.values()) - 1.0) > 1e-6:  # type: ignore[union-attr]
        problems.append(("synth.splits", "fractions must sum to 1"))
    return problems


# the spec sections that declare heads, one per registered head kind (edgefuse/heads.py); the caption head and the
# anomaly model have sections of their own (`captions:`, `anomaly:`): they are a decoder and a second model, not
# per-head outputs of the fused classifier
HEAD_SECTIONS = tuple(kind.section for kind in HEAD_KINDS.values())


def _head_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """At least one head over all head sections; head names unique across them; multilabel label lists valid."""
    sections = {k: data[k] for k in HEAD_SECTIONS if isinstance(data.get(k), dict)}
    problems: list[tuple[str, str]] = []
    # an anomaly section stands alone (it needs no labels); a caption head rides on a classifier's fused context
    if "modalities" in data and not any(sections.values()) and not data.get("anomaly"):
        problems.append(
            ("labels", "at least one head is required (labels, multilabel or regression) or an `anomaly` section")
        )
    seen: dict[str, str] = {}
    for section, heads in sections.items():
        for head in heads:
            if head in seen:
                problems.append((f"{section}.{head}", f"head name already used in '{seen[head]}'"))
            seen.setdefault(head, section)
    for head, names in sections.get("multilabel", {}).items():
        if isinstance(names, list) and not names:
            problems.append((f"multilabel.{head}", "a multi-label head needs at least one label"))
        if isinstance(names, list) and len(set(map(str, names))) != len(names):
            problems.append((f"multilabel.{head}", "label names must be unique"))
        if isinstance(names, list) and any("|" in str(n) or not str(n).strip() for n in names):
            problems.append((f"multilabel.{head}", "label names must be non-empty and without '|' (the separator)"))
    return problems


def _anomaly_problems(a: dict[str, Any], labels: dict[str, Any]) -> list[tuple[str, str]]:
    """anomaly.exclude must name heads and classes of `labels`, and leave some normal data."""
    out = []
    exclude = a.get("exclude")
    for head, classes in (exclude if isinstance(exclude, dict) else {}).items():
        if head not in labels:
            out.append((f"anomaly.exclude.{head}", f"no head named '{head}' in labels"))
            continue
        known = [str(c) for c in labels[head]] if isinstance(labels[head], list) else []
        for c in classes if isinstance(classes, list) else []:
            if str(c) not in known:
                out.append((f"anomaly.exclude.{head}", f"'{c}' is not a class of labels.{head}"))
        if isinstance(classes, list) and known and set(map(str, classes)) >= set(known):
            out.append((f"anomaly.exclude.{head}", "every class is excluded: no normal data would be left"))
    return out


def _model_choice_problems(m: dict[str, Any]) -> list[tuple[str, str]]:
    """runtime.model combinations no backend runs (checked before loading anything)."""
    backend, precision = m.get("backend", "auto"), m.get("precision", "fp32")
    device = str(m.get("device", "auto"))
    out = []
    if device.startswith("dla") and backend not in ("auto", "tensorrt"):
        out.append(("runtime.model.device", f"'{device}' runs TensorRT engines only; backend is '{backend}'"))
    if backend == "tensorrt" and device == "cpu":
        out.append(("runtime.model.device", "TensorRT runs on a GPU or DLA, not 'cpu'"))
    if device.startswith("dla") and precision == "fp32":
        out.append(("runtime.model.precision", "DLA runs fp16 and int8 only"))
    if backend == "torch" and precision == "int8":
        out.append(("runtime.model.precision", "the torch backend runs fp32 (and fp16 on CUDA), not int8"))
    if backend == "torch" and precision == "fp16" and device == "cpu":
        out.append(("runtime.model.precision", "the torch backend runs fp16 on CUDA only"))
    if m.get("cuda_graphs") and (backend != "torch" or device == "cpu"):
        out.append(("runtime.model.cuda_graphs", "CUDA graphs are a torch-backend feature on a CUDA device"))
    return out


def _format_errors(err: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        # drop discriminated-union tags pydantic adds to the path ("dwcnn", "function-after[...]")
        loc = [p for p in loc if not p.startswith("function-") and p not in ENCODER_TYPES]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        for line in msg.split("\n"):
            if not loc and ": " in line:  # root cross-checks carry their own dotted path
                path, text = line.split(": ", 1)
                out.append((path, text))
            else:
                out.append((".".join(loc) or "<root>", line))
    return out


def parse_spec(data: Any, source: str = "<spec>") -> ScenarioSpec:
    """Validate a mapping as a ScenarioSpec; raises SpecError naming `source` and every bad dotted path."""
    if not isinstance(data, dict):
        raise SpecError(source, [("<root>", f"expected a mapping, got {type(data).__name__}")])
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as err:
        problems = _format_errors(err)
        problems += [p for p in cross_check(data) if p not in problems]
        raise SpecError(source, problems) from None


def load_spec(path: str | Path) -> ScenarioSpec:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(str(path), [("<file>", f"cannot read: {getattr(err, 'strerror', None) or err}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(str(path), [("<yaml>", str(err).replace("\n", " "))]) from None
    return parse_spec(data, str(path))


def spec_to_dict(spec: ScenarioSpec) -> dict[str, Any]:
    """A JSON-safe dict of the spec (for checkpoints and bundle manifests); parse_spec() reads it back."""
    return spec.model_dump(mode="json")
