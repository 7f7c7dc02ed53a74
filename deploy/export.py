"""`edgefuse export`: a training run -> a model bundle (ONNX variants + model.pt + manifest.json).

    edgefuse export --run runs/home --out bundles/home --data data/home --precision fp16,int8

The bundle is written into a temporary folder beside --out and renamed into place only after every check passes,
so a failed export never leaves something that loads as a valid bundle. Checks: ONNX Runtime fp32 matches torch
within 1e-4 (max abs difference of probabilities) on held-out samples; both INT8 variants (model.int8.onnx for ONNX
Runtime on CPUs, model.int8-trt.onnx with symmetric Q/DQ for TensorRT) stay within 1 accuracy point of fp32, measured
in ONNX Runtime. Multilabel and regression heads are checked the same way on their per-kind score (mAP; max(0, 1 -
MAE / train std)); regression values count in parity relative to max(1, |value|). The static TensorRT check (deploy/trt_check.py) runs on every variant and is recorded in the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse import __version__
from edgefuse._optional import require
from edgefuse.deploy import quantize
from edgefuse.deploy.anomaly import export_anomaly
from edgefuse.deploy.bundle import sha256_file
from edgefuse.deploy.trt_check import check_variants
from edgefuse.errors import BundleError, DataError
from edgefuse.heads import HEAD_KINDS
from edgefuse.manifest import (
    MANIFEST_NAME,
    PRECISIONS,
    InputSpec,
    Manifest,
    MaskSpec,
    OutputSpec,
    ParitySpec,
    PreprocessSpec,
    TokenizerSpec,
    VariantSpec,
    save_manifest,
)
from edgefuse.preprocess import IMAGE_STEPS
from edgefuse.spec import ScenarioSpec, spec_to_dict

Feeds = dict[str, np.ndarray]
OPSET = 17
PARITY_TOLERANCE = 1e-4
INT8_MAX_DROP = 0.01  # accuracy (fraction) INT8 may lose against fp32, per head
VARIANT_FILES = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",  # ONNX Runtime on CPUs (uint8 activations)
    "int8-trt": "model.int8-trt.onnx",  # TensorRT (symmetric int8 Q/DQ)
}
EVAL_BATCH = 32


# -- samples --------------------------------------------------------------------------------------------------------


def dataset_feeds(ds: Any) -> Feeds:
    """A dataset (.inputs modality -> (N, ...), .mask (N, M)) as model feeds: modality names + "mask"."""
    feeds = {m: np.ascontiguousarray(x) for m, x in ds.inputs.items()}
    feeds["mask"] = np.ascontiguousarray(ds.mask, dtype=np.float32)  # (N, M)
    return feeds


def random_feeds(spec: ScenarioSpec, n: int, seed: int = 0) -> Feeds:
    """`n` samples drawn from the spec's shapes (for parity checks when no dataset is given)."""
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for name, m in spec.modalities.items():
        shape = (n, *m.input_shape)
        if m.kind == "image":
            feeds[name] = rng.random(shape, dtype=np.float32)  # (N, C, H, W) in [0, 1]
        elif m.kind == "audio":
            feeds[name] = (0.3 * rng.standard_normal(shape)).clip(-1, 1).astype(np.float32)  # (N, C, T)
        elif m.kind == "series":
            feeds[name] = rng.standard_normal(shape).astype(np.float32)  # (N, C, T)
        else:
            buckets = spec.model.encoders[name].buckets  # type: ignore[union-attr]
            ids = rng.integers(1, buckets, size=shape, dtype=np.int64)  # (N, L)
            lengths = rng.integers(1, shape[1] + 1, size=n)
            ids[np.arange(shape[1])[None, :] >= lengths[:, None]] = 0  # zero padding after each length
            feeds[name] = ids
    mask = (rng.random((n, len(spec.modalities))) < 0.8).astype(np.float32)  # (N, M)
    mask[mask.sum(1) == 0, 0] = 1.0  # every sample keeps at least one modality
    feeds["mask"] = mask
    return feeds


def take(feeds: Feeds, idx: np.ndarray | slice) -> Feeds:
    return {k: np.ascontiguousarray(v[idx]) for k, v in feeds.items()}


def batches(feeds: Feeds, size: int) -> list[Feeds]:
    n = len(feeds["mask"])
    return [take(feeds, slice(i, i + size)) for i in range(0, n, size)]


# -- running --------------------------------------------------------------------------------------------------------


def torch_probs(model: Any, spec: ScenarioSpec, feeds: Feeds) -> Feeds:
    """The torch model's bundle outputs by output name ("scores_<head>" probabilities, "value_<head>" values)."""
    torch = require("torch", "export")
    out: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for b in batches(feeds, EVAL_BATCH):
            inputs = {m: torch.from_numpy(b[m]) for m in spec.modality_names}
            logits = model(inputs, torch.from_numpy(b["mask"]))  # head -> (B, C)
            for name, p in model.bundle_outputs(logits).items():
                out.setdefault(name, []).append(p.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def ort_session(path: Path) -> Any:
    from edgefuse.deploy.backends.onnxruntime import session_options

    ort = require("onnxruntime")
    return ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])


def ort_probs(session: Any, feeds: Feeds) -> Feeds:
    """Outputs of an ONNX Runtime session over `feeds`, in batches; output name -> (N, C)."""
    names = [o.name for o in session.get_outputs()]
    parts = [session.run(names, b) for b in batches(feeds, EVAL_BATCH)]
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}


def accuracy(probs: Feeds, targets: dict[str, np.ndarray], outputs: list[OutputSpec] | None = None) -> dict[str, float]:
    """Per head, top-1 accuracy (class heads) or the head kind's score (multilabel: mAP; regression: max(0, 1 - MAE /
    std of the targets)); `probs` keyed by output name, `targets` by head; without `outputs` every head is a class head
    whose output is "scores_<head>"."""
    by_head = {o.head: o for o in outputs or []}
    out = {}
    for h, y in targets.items():
        o = by_head.get(h)
        kind = HEAD_KINDS[o.kind if o is not None else "class"]
        y = np.asarray(y)
        std = float(np.nanstd(y)) if kind.name == "regression" else None
        out[h] = kind.score(y, probs[o.name if o is not None else f"scores_{h}"], std=std)
    return out


def max_abs_diff(a: Feeds, b: Feeds) -> float:
    """Max |a - b| over every output; regression values ("value_*") relative to max(1, |b|)."""
    diffs = []
    for k in a:
        d = np.abs(a[k].astype(np.float64) - b[k])
        if k.startswith(HEAD_KINDS["regression"].output_prefix):
            d = d / np.maximum(1.0, np.abs(b[k].astype(np.float64)))
        diffs.append(float(d.max()) if d.size else 0.0)
    return max(diffs)


# -- manifest -------------------------------------------------------------------------------------------------------


def manifest_inputs(spec: ScenarioSpec) -> list[InputSpec]:
    """One input per modality (spec order), then the presence mask."""
    ins = [
        InputSpec(
            name=name,
            dtype=m.input_dtype,  # type: ignore[arg-type]
            shape=[-1, *m.input_shape],
            modality=name,
            kind=m.kind,
            window_s=m.window_s,
            rate_hz=m.rate_hz,
        )
        for name, m in spec.modalities.items()
    ]
    return [*ins, InputSpec(name="mask", dtype="float32", shape=[-1, len(spec.modalities)], kind="mask")]


def manifest_outputs(spec: ScenarioSpec, model: Any = None) -> list[OutputSpec]:
    """One output per head, in spec head order; multilabel thresholds come from `model` (0.5 without one)."""
    outs = []
    for h, k in spec.head_kinds.items():
        kind = HEAD_KINDS[k]
        labels = kind.labels(spec, h)
        o = OutputSpec(
            name=f"{kind.output_prefix}{h}", dtype="float32", shape=[-1, len(labels)], head=h, labels=labels, kind=k
        )
        o.meaning = kind.meaning
        if k == "class" and spec.train.balanced:  # what the scores assume (trainer/train.py balance_scores)
            o.meaning += "; every class taken as equally likely (train.balanced), not as often as in the training data"
        if k == "multilabel":
            o.thresholds = model.head_thresholds(h) if model is not None else [0.5] * len(labels)
        elif k == "regression":
            r = spec.regression[h]
            o.unit, o.min, o.max = r.unit, r.min, r.max
        outs.append(o)
    return outs


def caption_outputs(model: Any) -> list[OutputSpec]:
    """The caption decoder's context output of the main graph (deploy/caption.py), when the model has one."""
    if getattr(model, "caption", None) is None:
        return []
    from edgefuse.trainer.models.onnx import CONTEXT_OUTPUT

    meaning = "the caption decoder's context (not probabilities): feed it to the step model in manifest.caption"
    return [
        OutputSpec(
            name=CONTEXT_OUTPUT,
            dtype="float32",
            shape=[-1, model.caption.hidden],
            head="caption",
            labels=[],
            meaning=meaning,
            kind="context",
        )
    ]


def _resample_rule(m: Any) -> str:
    s = m.sync
    stale = "3 periods or blocks" if s.max_staleness_s is None else f"{s.max_staleness_s}s"
    if s.policy == "window":
        return (
            f"window: samples in [tick - {m.window_s}s, tick] on a {m.rate_hz} Hz grid ({m.n_steps} rows, "
            f"uncovered rows zero); present if coverage >= {s.min_coverage} and newest row at most {stale} old"
        )
    if s.policy == "nearest":
        return f"nearest: the sample closest to the tick within {s.tolerance_s}s"
    return f"hold: the latest sample if at most {stale} old"


def manifest_preprocess(spec: ScenarioSpec) -> dict[str, PreprocessSpec]:
    out: dict[str, PreprocessSpec] = {}
    for name, m in spec.modalities.items():
        p = PreprocessSpec(kind=m.kind, channels=m.channels, resample=_resample_rule(m))
        if m.kind == "image":
            p.steps = dict(IMAGE_STEPS)
        elif m.kind == "text":
            enc = spec.model.encoders[name]
            p.tokenizer = TokenizerSpec(buckets=enc.buckets, ngrams=enc.ngrams, max_tokens=m.shape[0])  # type: ignore[union-attr,index]
        else:
            p.units, p.window_rows = "raw", m.n_steps
        out[name] = p
    return out


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "edgefuse": __version__}
    for pkg in ("numpy", "torch", "onnx", "onnxruntime", "onnxconverter-common"):
        with contextlib.suppress(metadata.PackageNotFoundError):  # record only what is installed
            out[pkg] = metadata.version(pkg)
    return out


def jsonable(x: Any) -> Any:
    """Checkpoint records (tensors, arrays, numpy scalars) -> plain JSON values."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x if isinstance(x, (str, int, float, bool)) or x is None else str(x)


# -- export ---------------------------------------------------------------------------------------------------------


def load_checkpoint(run_dir: Path) -> tuple[ScenarioSpec, Any, dict]:
    """(spec, model in eval mode, checkpoint dict) of a run; a CheckpointError names a missing or bad checkpoint."""
    from edgefuse.trainer.checkpoint import load_run

    spec, model, checkpoint = load_run(run_dir)
    model.eval()
    return spec, model, checkpoint


def parse_precisions(text: str) -> list[str]:
    """ "fp16,int8" -> ["fp32", "fp16", "int8"] (fp32 always first: every other variant derives from it)."""
    asked = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in asked if p not in PRECISIONS]
    if bad:
        raise BundleError(f"--precision: unknown {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
    return ["fp32", *[p for p in PRECISIONS[1:] if p in asked]]


class Held:
    """Held-out samples: the test split of --data, or random samples from the spec shapes."""

    def __init__(self, spec: ScenarioSpec, data_dir: Path | None, parity_n: int):
        self.data_dir = data_dir
        if data_dir is None:
            self.feeds, self.targets, self.train = random_feeds(spec, parity_n), None, None
            self.outputs = manifest_outputs(spec)
            self.source = f"{parity_n} random samples drawn from the spec shapes (no --data given)"
            return
        from edgefuse.trainer.data import load_data

        ds = load_data(spec, data_dir, progress=False)
        test = ds.subset("test")
        self.feeds, self.targets = dataset_feeds(test), {h: np.asarray(y) for h, y in test.targets.items()}
        self.targets.update({h: np.asarray(y) for h, y in test.extra.items()})  # multilabel and regression heads
        self.outputs = manifest_outputs(spec)
        if len(self.feeds["mask"]) == 0:
            raise DataError(data_dir, "the test split is empty; parity and accuracy need held-out samples")
        self.train = dataset_feeds(ds.subset("train"))
        self.source = f"test split of {data_dir} ({len(self.feeds['mask'])} samples)"

    def parity_feeds(self, n: int) -> Feeds:
        return take(self.feeds, slice(0, n))

    def calibration(self, n: int = 512, batch: int = EVAL_BATCH) -> list[Feeds]:
        """INT8 calibration batches from the training split (never the held-out samples it is scored on)."""
        if self.train is None:
            raise BundleError("--precision int8 needs --data: INT8 is calibrated on the training split")
        rng = np.random.default_rng(0)
        n_train = len(self.train["mask"])
        idx = np.sort(rng.choice(n_train, size=min(n, n_train), replace=False))
        return batches(take(self.train, idx), batch)


def _check_parity(spec: ScenarioSpec, model: Any, session: Any, held: Held, n: int) -> ParitySpec:
    feeds = held.parity_feeds(n)
    diff = max_abs_diff(torch_probs(model, spec, feeds), ort_probs(session, feeds))
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        raise BundleError(
            f"ONNX Runtime fp32 differs from torch by {diff:.3g} > {PARITY_TOLERANCE} (max abs probability) on "
            f"{held.source}; the ONNX export is wrong, not written"
        )
    return ParitySpec(source=held.source, samples=len(feeds["mask"]), max_abs_diff=diff, tolerance=PARITY_TOLERANCE)


def _score(path: Path, held: Held, ref: Feeds | None) -> tuple[dict[str, float] | None, Feeds, float | None]:
    """(accuracy per head or None, probabilities, max abs diff from the fp32 probabilities `ref`)."""
    probs = ort_probs(ort_session(path), held.feeds)
    acc = accuracy(probs, held.targets, held.outputs) if held.targets is not None else None
    return acc, probs, (max_abs_diff(ref, probs) if ref is not None else None)


def _int8(tmp: Path, held: Held, fp32_acc: dict[str, float] | None, fp32_probs: Feeds) -> VariantSpec:
    """Try the INT8 configurations in order; the first within INT8_MAX_DROP of fp32 on every head is kept."""
    src, dst = tmp / VARIANT_FILES["fp32"], tmp / VARIANT_FILES["int8"]
    calib = held.calibration()
    tried = []
    for label, op_types, keep_float in quantize.INT8_ATTEMPTS:
        quantize.to_int8(src, dst, calib, op_types, keep_float)
        acc, _, diff = _score(dst, held, fp32_probs)
        drop = max(fp32_acc[h] - acc[h] for h in acc)  # type: ignore[index,union-attr]
        tried.append(f"{label}: accuracy {acc}, drop {100 * drop:.2f} points")
        if drop <= INT8_MAX_DROP + 1e-9:
            ops = quantize.quantized_op_types(dst)
            notes = f"QDQ U8S8 per-channel MinMax, {label}; int8 ops {ops}; max |p - p_fp32| {diff:.3g}"
            return VariantSpec(file=dst.name, sha256="", accuracy=acc, accuracy_source=held.source, notes=notes)
    raise BundleError(
        f"INT8 loses more than {100 * INT8_MAX_DROP:.0f} accuracy point against fp32 {fp32_acc} in every "
        f"configuration tried: {'; '.join(tried)}; export without int8"
    )


def _variants(tmp: Path, precisions: list[str], held: Held) -> dict[str, VariantSpec]:
    fp32 = tmp / VARIANT_FILES["fp32"]
    acc32, probs32, _ = _score(fp32, held, None)
    out = {"fp32": VariantSpec(file=fp32.name, sha256="", accuracy=acc32, accuracy_source=held.source)}
    if "fp16" in precisions:
        dst = tmp / VARIANT_FILES["fp16"]
        quantize.to_fp16(fp32, dst)
        acc, _, diff = _score(dst, held, probs32)
        out["fp16"] = VariantSpec(
            file=dst.name, sha256="", accuracy=acc, accuracy_source=held.source, notes=f"max |p - p_fp32| {diff:.3g}"
        )
    if "int8" in precisions:
        out["int8"] = _int8(tmp, held, acc32, probs32)
        out["int8-trt"] = _int8_trt(tmp, held, acc32, probs32)
    return out


def _int8_trt(tmp: Path, held: Held, fp32_acc: dict[str, float] | None, fp32_probs: Feeds) -> VariantSpec:
    """The TensorRT INT8 variant, scored in ONNX Runtime (which runs symmetric Q/DQ too) against fp32."""
    src, dst = tmp / VARIANT_FILES["fp32"], tmp / VARIANT_FILES["int8-trt"]
    calib = held.calibration()
    tried = []
    for label, keep_float in quantize.TRT_INT8_ATTEMPTS:
        quantize.to_int8_trt(src, dst, calib, keep_float)
        acc, _, diff = _score(dst, held, fp32_probs)
        drop = max(fp32_acc[h] - acc[h] for h in acc)  # type: ignore[index,union-attr]
        tried.append(f"{label}: accuracy {acc}, drop {100 * drop:.2f} points")
        if drop <= INT8_MAX_DROP + 1e-9:
            ops = quantize.quantized_op_types(dst)
            notes = (
                f"for TensorRT: QDQ S8S8 symmetric (zero point 0) per-channel MinMax, {label}; int8 ops {ops}; "
                f"accuracy measured in ONNX Runtime; max |p - p_fp32| {diff:.3g}"
            )
            return VariantSpec(file=dst.name, sha256="", accuracy=acc, accuracy_source=held.source, notes=notes)
    raise BundleError(
        f"TensorRT INT8 (symmetric Q/DQ) loses more than {100 * INT8_MAX_DROP:.0f} accuracy point against fp32 "
        f"{fp32_acc} in every configuration tried: {'; '.join(tried)}; export without int8"
    )


def _save_torch(model: Any, spec: ScenarioSpec, checkpoint: dict, path: Path) -> None:
    torch = require("torch", "export")
    record = {"spec": spec_to_dict(spec), "state_dict": model.state_dict()}
    if getattr(model, "caption_vocab", None):
        record["caption_vocab"] = list(model.caption_vocab)
    if "normalization" in checkpoint:
        record["normalization"] = checkpoint["normalization"]
    torch.save(record, path)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place; an existing bundle at `out` is replaced, anything else refused."""
    old = None
    if out.exists():
        if any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
            raise BundleError(f"{out}: exists and is not a bundle; refusing to overwrite it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    precisions: list[str] | None = None,
    parity_samples: int = 64,
) -> Manifest:
    """Write a verified bundle for the run at `run_dir` into `out_dir`; returns its manifest."""
    run_dir, out = Path(run_dir), Path(out_dir)
    precisions = precisions or ["fp32"]
    spec, model, checkpoint = load_checkpoint(run_dir)
    held = Held(spec, Path(data_dir) if data_dir else None, parity_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _write(tmp, spec, model, checkpoint, held, precisions, parity_samples, run_dir)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write(
    tmp: Path,
    spec: ScenarioSpec,
    model: Any,
    checkpoint: dict,
    held: Held,
    precisions: list[str],
    parity_n: int,
    run_dir: Path | None = None,
) -> Manifest:
    from edgefuse.trainer.models.onnx import to_onnx

    fp32 = tmp / VARIANT_FILES["fp32"]
    to_onnx(model, spec, fp32, opset=OPSET)
    inputs, outputs = manifest_inputs(spec), manifest_outputs(spec, model) + caption_outputs(model)
    session = ort_session(fp32)
    _check_graph(session, inputs, outputs, fp32)
    parity = _check_parity(spec, model, session, held, parity_n)
    caption = None
    if getattr(model, "caption", None) is not None:  # the caption step model, checked token for token
        from edgefuse.deploy.caption import export_caption

        caption = export_caption(tmp, model, spec, session, held.parity_feeds(parity_n), held.source, OPSET)
    variants = _variants(tmp, precisions, held)
    _save_torch(model, spec, checkpoint, tmp / "model.pt")
    anomaly = export_anomaly(run_dir, tmp, spec, held.parity_feeds(parity_n), OPSET) if run_dir else None
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    for v in variants.values():
        v.sha256 = files[v.file]
    trt = check_variants(tmp, variants)
    manifest = Manifest(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        edgefuse_version=__version__,
        spec=spec_to_dict(spec),
        opset=OPSET,
        inputs=inputs,
        mask=MaskSpec(modalities=spec.modality_names),
        outputs=outputs,
        preprocess=manifest_preprocess(spec),
        metrics=jsonable(checkpoint.get("metrics", {})),
        normalization=jsonable(checkpoint.get("normalization")),
        versions=library_versions(),
        parity=parity,
        variants=variants,
        trt_check=trt,
        anomaly=anomaly,
        caption=caption,
        files=files,
    )
    save_manifest(manifest, tmp / MANIFEST_NAME)
    return manifest


def _check_graph(session: Any, inputs: list[InputSpec], outputs: list[OutputSpec], path: Path) -> None:
    """The exported graph must have exactly the manifest's tensor names (the runtime feeds by name)."""
    got_in, got_out = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    want_in, want_out = [t.name for t in inputs], [t.name for t in outputs]
    if sorted(got_in) != sorted(want_in) or sorted(got_out) != sorted(want_out):
        raise BundleError(
            f"{path}: exported tensors {got_in} -> {got_out} do not match the spec's {want_in} -> {want_out}"
        )


def cli_export(args: argparse.Namespace) -> int:
    """Handler of `edgefuse export`."""
    precisions = parse_precisions(args.precision)
    m = export_bundle(args.run, args.out, args.data, precisions)
    print(f"bundle written: {args.out} (parity: max abs diff {m.parity.max_abs_diff:.2e} on {m.parity.source})")
    for p, v in m.variants.items():
        size = (Path(args.out) / v.file).stat().st_size / 1e6
        acc = ", ".join(f"{h} {100 * a:.2f}%" for h, a in v.accuracy.items()) if v.accuracy else "n/a (no --data)"
        print(f"  {p:8s} {v.file:20s} {size:7.2f} MB  accuracy {acc}  {v.notes}")
    if m.anomaly is not None:
        a = m.anomaly
        print(
            f"  anomaly  {a.file:20s} fused threshold {a.threshold:.3f} (q {a.quantile}), parity {a.parity_max_abs_diff:.2e}"
        )
    if m.trt_check is not None:
        bad = [n for n, v in m.trt_check.variants.items() if v.engine_precision and not v.ok]
        verdict = f"problems in {', '.join(bad)}" if bad else "every engine variant passes"
        print(f"  TensorRT static check ({', '.join(m.trt_check.tensorrt)}): {verdict} (`edgefuse check-trt`)")
    return 0
