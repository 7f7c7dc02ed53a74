"""Evaluate a run: `edgefuse eval --run --data --report PATH.json`.

Definitions used throughout the report (all computed with NumPy):
  accuracy        mean over heads of the per-head accuracy (fraction of samples whose class is right)
  joint_accuracy  fraction of samples with every head right
  macro_f1        mean over heads of the per-head macro F1; a head's macro F1 is the unweighted mean of per-class
                  F1 over the classes that occur in the truth or the predictions (scikit-learn's convention);
                  precision, recall or F1 of a class with a zero denominator count as 0
  confusion       rows = true class, columns = predicted class, in the spec's class order
  unimodal[m]     accuracy of the same encoders trained on modality m alone (train(only=m))
  without[m]      accuracy of a model trained with m always masked (train(drop=m)): the modality-free baseline
  ablation[m]     accuracy of this run's model with m masked at test time
  robustness[m]   accuracy with m corrupted: Gaussian noise of `noise` x the modality's per-channel std (from the
                  training split) added to image, audio and series inputs (images clipped to [0, 1], audio to
                  [-1, 1]); for text a fraction min(1, noise / 2) of the non-padding tokens replaced by random ids
  latency_ms      batch-1 forward in torch on the CPU, in the inference form the torch backend runs (BatchNorm
                  folded, channels-last weights), inference_mode, after warm-up; p50/p99 over `iters` calls with
                  `threads` torch threads
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import DataError
from edgefuse.spec import ScenarioSpec
from edgefuse.trainer.checkpoint import load_run
from edgefuse.trainer.train import check_dataset, predict_logits, to_tensors, torch, train

NOISE_LEVELS = (0.0, 0.25, 0.5, 1.0, 2.0)

# ---------------------------------------------------------------------------------------------------------------------
# metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in the truth or the predictions."""
    used = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(per_class_scores(cm)["f1"][used].mean()) if used.any() else 0.0


def head_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class scores and the confusion matrix of one head."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    s = per_class_scores(cm)
    per_class = {
        c: {k: (int(s[k][i]) if k == "support" else float(s[k][i])) for k in ("precision", "recall", "f1", "support")}
        for i, c in enumerate(classes)
    }
    accuracy = float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0
    return {"accuracy": accuracy, "macro_f1": macro_f1(cm), "per_class": per_class, "confusion": cm.tolist()}


def mean_accuracy(preds: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> float:
    """Mean over heads of per-head accuracy."""
    return float(np.mean([(preds[h] == y).mean() for h, y in targets.items()]))


# ---------------------------------------------------------------------------------------------------------------------
# model passes


def predict(model: Any, inputs: dict[str, Any], mask: Any) -> dict[str, np.ndarray]:
    """head -> (N,) predicted class ids."""
    return {h: v.argmax(-1).numpy() for h, v in predict_logits(model, inputs, mask).items()}


def latency_ms(
    model: Any, inputs: dict[str, Any], mask: Any, *, threads: int = 1, iters: int = 200, warmup: int = 20
) -> dict:
    """Batch-1 CPU forward latency of the first sample, in the model's inference form (models/inference.py: what
    the torch backend runs): p50/p99 in ms and the torch thread count used.

    One thread by default: a batch-1 pass of a compact model gains little from intra-op threads, and on a busy
    edge CPU (or a shared build machine) extra threads mostly wait for each other.
    """
    from edgefuse.trainer.models.inference import for_inference

    one = {m: x[:1].clone() for m, x in inputs.items()}
    mask1 = mask[:1].clone()  # (1, M)
    model = for_inference(model)  # a copy: the caller's model is left as trained
    times = np.empty(iters)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for _ in range(warmup):
            model(one, mask1)
        for i in range(iters):
            t = time.perf_counter_ns()
            model(one, mask1)
            times[i] = (time.perf_counter_ns() - t) / 1e6
    torch.set_num_threads(before)
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "mean": float(times.mean()),
        "iters": iters,
        "threads": threads,
    }


def channel_std(x: np.ndarray) -> np.ndarray:
    """Per-channel std of (N, C, ...) inputs, broadcastable back onto them: (1, C, 1, ...)."""
    axes = (0, *range(2, x.ndim))
    std = x.std(axis=axes, keepdims=True) if len(x) else np.ones((1, x.shape[1]) + (1,) * (x.ndim - 2))
    return std.astype(np.float32)


def corrupt(x: np.ndarray, kind: str, level: float, std: np.ndarray, rng: np.random.Generator, buckets: int):
    """One modality's inputs at a noise level (see the module docstring)."""
    if level == 0:
        return x
    if kind == "text":
        hit = (x != 0) & (rng.random(x.shape) < min(1.0, level / 2))
        return np.where(hit, rng.integers(1, buckets, size=x.shape), x).astype(x.dtype)
    noisy = x + level * std * rng.standard_normal(x.shape, dtype=np.float32)
    if kind == "image":
        noisy = np.clip(noisy, 0.0, 1.0)
    elif kind == "audio":
        noisy = np.clip(noisy, -1.0, 1.0)
    return noisy.astype(np.float32)


def robustness(model: Any, spec: ScenarioSpec, part: Any, ref: Any, mask: Any) -> dict[str, list[dict]]:
    """modality -> [{noise, accuracy}] with that modality corrupted; `ref` gives the per-channel std."""
    inputs, _, _ = to_tensors(part)
    out: dict[str, list[dict]] = {}
    for j, (name, m) in enumerate(spec.modalities.items()):
        present = ref.mask[:, j] > 0
        std = channel_std(ref.inputs[name][present]) if m.kind != "text" else np.ones(1, np.float32)
        buckets = getattr(spec.model.encoders[name], "buckets", 2)
        rows = []
        for k, level in enumerate(NOISE_LEVELS):
            rng = np.random.default_rng([spec.train.seed, j, k])
            noisy = dict(
                inputs, **{name: torch.from_numpy(corrupt(part.inputs[name], m.kind, level, std, rng, buckets))}
            )
            rows.append({"noise": level, "accuracy": mean_accuracy(predict(model, noisy, mask), part.targets)})
        out[name] = rows
    return out


def ablation(model: Any, spec: ScenarioSpec, inputs: dict[str, Any], mask: Any, targets: dict) -> dict[str, float]:
    """modality -> accuracy with that modality masked at test time."""
    out = {}
    for j, name in enumerate(spec.modality_names):
        m = mask.clone()
        m[:, j] = 0
        out[name] = mean_accuracy(predict(model, inputs, m), targets)
    return out


def run_mask(spec: ScenarioSpec, ckpt: dict, mask: np.ndarray) -> Any:
    """The split's mask with the run's always-masked modalities (baselines) applied: (N, M)."""
    keep = torch.tensor([0.0 if m in ckpt.get("masked", []) else 1.0 for m in spec.modality_names])  # (M,)
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)) * keep


def baseline_accuracy(run_dir: Path, part: Any) -> float:
    spec, model, ckpt = load_run(run_dir)
    inputs, _, _ = to_tensors(part)
    return mean_accuracy(predict(model, inputs, run_mask(spec, ckpt, part.mask)), part.targets)


def baselines(spec: ScenarioSpec, run_dir: Path, data_dir: str | Path, ds: Any, part: Any, progress: bool) -> dict:
    """Train and score the unimodal (only=m) and modality-free (drop=m) baselines under RUN/baselines/."""
    unimodal, without, runs = {}, {}, {}
    for m in spec.modality_names:
        for kind, kw in (("only", {"only": m}), ("drop", {"drop": m})):
            if kind == "drop" and len(spec.modalities) == 1:
                continue
            out = run_dir / "baselines" / f"{kind}-{m}"
            metrics = train(spec, data_dir, out, progress=progress, dataset=ds, **kw)
            acc = baseline_accuracy(out, part)
            (unimodal if kind == "only" else without)[m] = acc
            runs[f"{kind}-{m}"] = {"run": str(out), "accuracy": acc, "train_time_s": metrics["train_time_s"]}
    return {"unimodal": unimodal, "without": without, "baseline_runs": runs}


# ---------------------------------------------------------------------------------------------------------------------


def evaluate(
    run_dir: str | Path,
    data_dir: str | Path,
    report_path: str | Path | None = None,
    *,
    with_baselines: bool = True,
    split: str = "test",
    progress: bool = True,
    dataset: Any | None = None,
) -> dict[str, Any]:
    """Score a run on a split of a dataset folder; write the JSON, markdown and confusion PNGs if `report_path`."""
    from edgefuse.trainer.data import load_data
    from edgefuse.trainer.models import count_params

    run_dir = Path(run_dir)
    spec, model, ckpt = load_run(run_dir)
    torch.set_num_threads(spec.train.threads)
    ds = dataset if dataset is not None else load_data(spec, data_dir, progress=progress)
    check_dataset(ds, spec, data_dir)
    part = ds.subset(split)
    if len(part) == 0:
        raise DataError(data_dir, f"no samples in split '{split}' (splits here: {sorted(set(ds.split.tolist()))})")
    ref = ds.subset("train")
    ref = ref if len(ref) else part  # noise scales come from training data when there is any
    inputs, _, _ = to_tensors(part)
    mask = run_mask(spec, ckpt, part.mask)  # (N, M)
    preds = predict(model, inputs, mask)
    heads = {h: head_metrics(part.targets[h], preds[h], spec.labels[h]) for h in spec.heads}
    joint = np.all([preds[h] == part.targets[h] for h in spec.heads], axis=0)
    report: dict[str, Any] = {
        "scenario": spec.name,
        "fusion": spec.model.fusion.method,
        "run": str(run_dir),
        "data": str(data_dir),
        "split": split,
        "n_test": len(part),
        "accuracy": float(np.mean([r["accuracy"] for r in heads.values()])),
        "joint_accuracy": float(joint.mean()),
        "macro_f1": float(np.mean([r["macro_f1"] for r in heads.values()])),
        "heads": {h: {"classes": spec.labels[h], **r} for h, r in heads.items()},
        "params": count_params(model),
        "latency_ms": latency_ms(model, inputs, mask),
        "ablation": ablation(model, spec, inputs, mask, part.targets),
        "robustness": robustness(model, spec, part, ref, mask),
        "unimodal": {},
        "without": {},
        "train": {k: ckpt["metrics"].get(k) for k in ("epochs_run", "best_epoch", "val_accuracy", "train_time_s")},
    }
    if with_baselines:
        report.update(baselines(spec, run_dir, data_dir, ds, part, progress))
    if report_path is not None:
        from edgefuse.trainer.report import write_report

        write_report(report, report_path)
    return report


def cli_eval(args: argparse.Namespace) -> int:
    """`edgefuse eval`: score a run, write the reports, print the headline numbers."""
    r = evaluate(args.run, args.data, args.report, with_baselines=not args.no_baselines, split=args.split)
    print(
        f"{args.report}: accuracy {r['accuracy']:.3f}, joint {r['joint_accuracy']:.3f}, macro F1 {r['macro_f1']:.3f} "
        f"on {r['n_test']} {r['split']} samples; {r['params']:,} params; "
        f"latency p50 {r['latency_ms']['p50']:.2f} ms"
    )
    for m, acc in r["unimodal"].items():
        print(f"  only {m}: {acc:.3f}   without {m}: {r['without'].get(m, float('nan')):.3f}")
    return 0
