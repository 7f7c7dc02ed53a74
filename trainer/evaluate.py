"""Evaluate a run: `edgefuse eval --run --data --report PATH.json`.

Definitions used throughout the report (all computed with NumPy):
  accuracy        mean over heads of the per-head accuracy (fraction of samples whose class is right)
  joint_accuracy  fraction of samples with every head right
  macro_f1        mean over heads of the per-head macro F1; a head's macro F1 is the unweighted mean of per-class
                  F1 over the classes that occur in the truth or the predictions (scikit-learn's convention);
                  precision, recall or F1 of a class with a zero denominator count as 0
  confusion       rows = true class, columns = predicted class, in the spec's class order
  unimodal[m]     accuracy of the same encoders trained on modality m alone (train(only=m))
  without[m]      accuracy of a model trained with m always masked (train(drop=m)): the modality-free baseline;
                  with two modalities "without a" is the same training as "only b", so it is trained once
  ablation[m]     accuracy of this run's model with m masked at test time
  robustness[m]   accuracy with m corrupted: Gaussian noise of `noise` x the modality's per-channel std (from the
                  training split) added to image, audio and series inputs (images clipped to [0, 1], audio to
                  [-1, 1]); for text a fraction min(1, noise / 2) of the non-padding tokens replaced by random ids
  ci95            bootstrap 95 % intervals (percentiles 2.5 / 97.5 over 1000 resamples of the test samples, seeded)
                  of accuracy and macro F1; with a `group` column in labels.csv whole groups are resampled (people:
                  an interval for people not seen), else with `train.window_hop_s` whole recordings (all their
                  windows together), since windows of one recording are not independent; `unit` says which (a
                  split holding one group resamples as without groups)
  groups          with a `group` column: accuracy per group of the split, and the worst group
  calibration     expected calibration error (15 equal-width confidence bins) and NLL, mean over heads, of the
                  scores before (temperature 1) and after the temperature fitted on the validation split
  multilabel[h]   per multilabel head: mAP (mean over labels with a positive test sample of scikit-learn's average
                  precision), per-label AP and precision/recall/F1 at the thresholds tuned on the validation split
                  (stored in the model), macro F1 (mean of per-label F1) and exact-match ratio (edgefuse/heads.py)
  regression[h]   per regression head: MAE and RMSE (scikit-learn) in the head's unit over the test samples with a
                  known target, and the MAE of always predicting the training mean, for reference
  The class-only parts (accuracy, joint_accuracy, macro_f1, ci95, calibration, ablation, robustness, baselines)
  cover the class heads; a spec without class heads leaves them empty.
  latency_ms      batch-1 forward in torch on the CPU, in the inference form the torch backend runs (BatchNorm
                  folded, channels-last weights), inference_mode, after warm-up; p50/p99 over `iters` calls with
                  `threads` torch threads
  recordings      with `train.window_hop_s` (long recordings cut into windows, ids `<sample>#<k>`): per class head,
                  each recording's windows' log-probabilities summed, then accuracy and macro F1 over recordings
                  (the decision from every window of a recording, where accuracy scores each window alone)
  captions        with a caption head (spec `captions:`) and captions.csv: BLEU-4 (sacrebleu) and ROUGE-L
                  (rouge-score) of the greedy captions against every reference of each sample, beside the most
                  frequent reference said for every sample (trainer/caption.py); no CIDEr (see there why)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import DataError
from edgefuse.heads import HEAD_KINDS
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
    return classes_of(predict_logits(model, inputs, mask))


def classes_of(logits: dict[str, Any]) -> dict[str, np.ndarray]:
    """head -> (N,) the class id of the highest logit."""
    return {h: v.argmax(-1).numpy() for h, v in logits.items()}


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


def baseline_plan(spec: ScenarioSpec) -> list[tuple[str, str, dict[str, str]]]:
    """(kind, modality, train kwargs) of every distinct baseline: only=m for each modality, drop=m when more than one;
    with exactly two modalities drop=a is only=b (the same masks, the same training) and is not trained again."""
    names = spec.modality_names
    plan = [("only", m, {"only": m}) for m in names]
    if len(names) > 2:
        plan += [("drop", m, {"drop": m}) for m in names]
    return plan


def baselines(spec: ScenarioSpec, run_dir: Path, data_dir: str | Path, ds: Any, part: Any, progress: bool) -> dict:
    """Train and score the unimodal (only=m) and modality-free (drop=m) baselines under RUN/baselines/, with the
    run's own spec (recipe and seed)."""
    unimodal, without, runs = {}, {}, {}
    for kind, m, kw in baseline_plan(spec):
        out = run_dir / "baselines" / f"{kind}-{m}"
        metrics = train(spec, data_dir, out, progress=progress, dataset=ds, **kw)
        acc = baseline_accuracy(out, part)
        (unimodal if kind == "only" else without)[m] = acc
        runs[f"{kind}-{m}"] = {"run": str(out), "accuracy": acc, "train_time_s": metrics["train_time_s"]}
    if len(spec.modalities) == 2:
        a, b = spec.modality_names
        without = {a: unimodal[b], b: unimodal[a]}
    return {"unimodal": unimodal, "without": without, "baseline_runs": runs}


def bootstrap_ci(
    targets: dict[str, np.ndarray],
    preds: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    n: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy and macro F1 (means over heads) over `n` resamples of the samples; with
    `groups` (N,) (the recording of each window) whole groups are resampled (a cluster bootstrap), since windows of
    one recording are not independent samples and resampling them alone gives too narrow an interval."""
    rng = np.random.default_rng(seed)
    size = len(next(iter(targets.values())))
    which = np.unique(groups, return_inverse=True)[1] if groups is not None else np.arange(size)  # (N,) group ids
    order = np.argsort(which, kind="stable")  # sample indices, group by group
    counts = np.bincount(which)  # (G,)
    start = np.cumsum(counts) - counts  # (G,) where each group's samples begin in `order`
    acc, f1 = np.empty(n), np.empty(n)
    for i in range(n):
        drawn = rng.integers(0, len(counts), len(counts))  # groups, with replacement
        sizes = counts[drawn]
        offset = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # position within its group
        idx = order[np.repeat(start[drawn], sizes) + offset]
        acc[i] = np.mean([(preds[h][idx] == y[idx]).mean() for h, y in targets.items()])
        f1[i] = np.mean([macro_f1(confusion_matrix(y[idx], preds[h][idx], len(labels[h]))) for h, y in targets.items()])
    return {
        k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        for k, v in (("accuracy", acc), ("macro_f1", f1))
    }


def other_heads(model: Any, spec: ScenarioSpec, inputs: dict[str, Any], mask: Any, part: Any) -> dict[str, Any]:
    """The "multilabel" and "regression" report sections (see the module docstring)."""
    logits = predict_logits(model, inputs, mask)
    out: dict[str, Any] = {"multilabel": {}, "regression": {}}
    for h, names in spec.multilabel.items():
        p = logits[h].sigmoid().numpy()
        metrics = HEAD_KINDS["multilabel"].metrics(part.extra[h], p, names, thresholds=model.head_thresholds(h))
        out["multilabel"][h] = {"labels": names, **metrics}
    for k, h in enumerate(model.regression_heads):
        unit, mean = spec.regression[h].unit, float(model.target_mean[k])
        metrics = HEAD_KINDS["regression"].metrics(part.extra[h], logits[h].numpy(), [h], unit=unit, train_mean=mean)
        out["regression"][h] = metrics
    return out


def recording_ids(part: Any) -> np.ndarray:
    """(N,) the recording each sample is a window of: its id before '#' (trainer/data.py windows)."""
    return np.array([i.rsplit("#", 1)[0] for i in part.ids])


def recording_scores(spec: ScenarioSpec, logits: dict[str, Any], part: Any) -> dict[str, Any]:
    """The "recordings" section: per class head, each recording's windows' log-probabilities summed, scored over
    recordings (recording_ids; its windows share its labels)."""
    names, which = np.unique(recording_ids(part), return_inverse=True)
    heads = {}
    for h in spec.heads:
        logp = torch.log_softmax(logits[h].float(), dim=1).numpy()  # (W, C)
        summed = np.zeros((len(names), logp.shape[1]))
        np.add.at(summed, which, logp)
        y = np.zeros(len(names), dtype=np.int64)
        y[which] = part.targets[h]
        m = head_metrics(y, summed.argmax(1), spec.labels[h])
        heads[h] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return {
        "n": len(names),
        "accuracy": float(np.mean([r["accuracy"] for r in heads.values()])),
        "macro_f1": float(np.mean([r["macro_f1"] for r in heads.values()])),
        "heads": heads,
    }


def group_scores(part: Any, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """The "groups" section: accuracy (mean over class heads) of each of labels.csv's groups in the split, and the
    worst; which person, session or place the model fails on."""
    right = np.mean([preds[h] == y for h, y in part.targets.items()], axis=0)  # (N,)
    per = {str(g): {"n": int((part.group == g).sum()), "accuracy": float(right[part.group == g].mean())}
           for g in np.unique(part.group)}  # fmt: skip
    worst = min(per, key=lambda g: per[g]["accuracy"])
    return {"n": len(per), "worst": worst, "per_group": per}


def calibration(model: Any, inputs: dict[str, Any], mask: Any, targets: dict[str, np.ndarray]) -> dict[str, float]:
    """ECE and NLL (means over heads) of the scores with temperature 1 ("before") and the fitted one ("after")."""
    from edgefuse.trainer.calibrate import expected_calibration_error, nll

    logits = predict_logits(model, inputs, mask)
    out: dict[str, list[float]] = {"ece_before": [], "ece_after": [], "nll_before": [], "nll_after": []}
    for k, (h, y) in enumerate(targets.items()):
        after = logits[h]
        before = after * model.temperature[k]  # the model divides by its temperature; undo it
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        for tag, z in (("before", before), ("after", after)):
            out[f"ece_{tag}"].append(expected_calibration_error(z.softmax(-1).numpy(), y))
            out[f"nll_{tag}"].append(nll(z, yt))
    result = {k: float(np.mean(v)) for k, v in out.items()}
    result["temperature"] = [float(t) for t in model.temperature]
    return result


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

    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint.pt").exists() and (run_dir / "anomaly.pt").is_file():  # an anomaly-only run
        from edgefuse.trainer.anomaly import evaluate_anomaly_run

        return evaluate_anomaly_run(run_dir, data_dir, report_path, split=split, progress=progress, dataset=dataset)
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
    logits = predict_logits(model, inputs, mask)  # one pass: the predictions and the per-recording scores
    preds = classes_of(logits)
    windows = spec.train.window_hop_s is not None  # long recordings cut into windows (trainer/data.py)
    # what the bootstrap resamples: labels.csv's groups (people, sessions), else recordings cut into windows
    # (one group cannot be resampled into an interval: then as without groups)
    unit, unit_ids = (
        ("group", part.group)
        if part.group is not None and len(np.unique(part.group)) > 1
        else ("recording", recording_ids(part))
        if windows
        else ("sample", None)
    )
    front, tail = _report_frame(spec, model, ckpt, run_dir, data_dir, split, part, inputs, mask)
    if not spec.heads:  # no class head: only the multilabel/regression sections and latency (and the anomaly model)
        return _finish_report({**front, "heads": {}, **tail}, run_dir, ds, split, spec.train.seed, report_path)
    heads = {h: head_metrics(part.targets[h], preds[h], spec.labels[h]) for h in spec.heads}
    joint = np.all([preds[h] == part.targets[h] for h in spec.heads], axis=0)
    report: dict[str, Any] = {
        **front,
        "accuracy": float(np.mean([r["accuracy"] for r in heads.values()])),
        "joint_accuracy": float(joint.mean()),
        "macro_f1": float(np.mean([r["macro_f1"] for r in heads.values()])),
        "heads": {h: {"classes": spec.labels[h], **r} for h, r in heads.items()},
        "ci95": {**bootstrap_ci(part.targets, preds, spec.labels, seed=spec.train.seed, groups=unit_ids), "unit": unit},
        "calibration": calibration(model, inputs, mask, part.targets),
        "params": tail.pop("params"),
        "latency_ms": tail.pop("latency_ms"),
        "ablation": ablation(model, spec, inputs, mask, part.targets),
        "robustness": robustness(model, spec, part, ref, mask),
        "unimodal": {},
        "without": {},
        **tail,
    }
    if windows:
        report["recordings"] = recording_scores(spec, logits, part)
    if part.group is not None:
        report["groups"] = group_scores(part, preds)
    if getattr(model, "caption", None) is not None and part.captions is not None:
        from edgefuse.trainer.caption import caption_report

        report["captions"] = caption_report(model, inputs, mask, part.captions)
    if with_baselines:
        report.update(baselines(spec, run_dir, data_dir, ds, part, progress))
    return _finish_report(report, run_dir, ds, split, spec.train.seed, report_path)


def _finish_report(
    report: dict[str, Any], run_dir: Path, ds: Any, split: str, seed: int, report_path: str | Path | None
) -> dict[str, Any]:
    """Adds the run's anomaly model (ROC-AUC per injected fault, trainer/anomaly.py) when it has one; writes."""
    if (run_dir / "anomaly.pt").is_file():
        from edgefuse.trainer.anomaly import evaluate_anomaly

        report["anomaly"] = evaluate_anomaly(run_dir, ds, split, seed=seed)
    if report_path is not None:
        from edgefuse.trainer.report import write_report

        write_report(report, report_path)
    return report


def _report_frame(
    spec: ScenarioSpec,
    model: Any,
    ckpt: dict,
    run_dir: Path,
    data_dir: Any,
    split: str,
    part: Any,
    inputs: dict,
    mask: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every report carries, as (front, tail): what was evaluated on what, then the model's size, its latency,
    its training summary and the multilabel/regression heads' metrics."""
    from edgefuse.trainer.models import count_params

    front = {
        "scenario": spec.name,
        "fusion": spec.model.fusion.method,
        "run": str(run_dir),
        "data": str(data_dir),
        "split": split,
        "n_test": len(part),
    }
    tail = {
        "params": count_params(model),
        "latency_ms": latency_ms(model, inputs, mask),
        "train": {k: ckpt["metrics"].get(k) for k in ("epochs_run", "best_epoch", "val_accuracy", "train_time_s")},
        **other_heads(model, spec, inputs, mask, part),
    }
    return front, tail


def seed_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over per-seed reports of the headline numbers: accuracy, macro F1, ECE before/after, and each
    unimodal and without baseline."""
    from edgefuse.trainer.train import mean_std

    out: dict[str, Any] = {
        "accuracy": mean_std([r["accuracy"] for r in reports]),
        "macro_f1": mean_std([r["macro_f1"] for r in reports]),
        "ece_before": mean_std([r["calibration"]["ece_before"] for r in reports]),
        "ece_after": mean_std([r["calibration"]["ece_after"] for r in reports]),
    }
    if all("recordings" in r for r in reports):  # windows cut from long recordings: the per-recording scores too
        out["recordings_accuracy"] = mean_std([r["recordings"]["accuracy"] for r in reports])
        out["recordings_macro_f1"] = mean_std([r["recordings"]["macro_f1"] for r in reports])
    for key in ("unimodal", "without"):
        names = reports[0][key]
        out[key] = {m: mean_std([r[key][m] for r in reports if m in r[key]]) for m in names}
    return out


def evaluate_seeds(
    run_dir: str | Path,
    data_dir: str | Path,
    report_path: str | Path,
    seeds: int,
    baseline_seeds: int | None = None,
    **kw: Any,
) -> dict:
    """Evaluate the first `seeds` per-seed runs of a `train --seeds` folder, each with its own baselines (same recipe
    and seed) unless `baseline_seeds` limits baselines to the first that many seeds (their mean +- std is then over
    those); writes REPORT-seed<n>.json/.md per seed and REPORT with the per-seed summaries and mean +- std."""
    import json

    from edgefuse.trainer.data import load_data
    from edgefuse.trainer.train import seed_dirs

    dirs = seed_dirs(run_dir)[:seeds]
    if len(dirs) < seeds:
        raise DataError(run_dir, f"{len(dirs)} seed-<n> run folder(s), {seeds} asked: train with --seeds {seeds} first")
    report_path = Path(report_path)
    spec, _, _ = load_run(dirs[0])
    ds = kw.pop("dataset", None) or load_data(spec, data_dir, progress=kw.get("progress", True))
    reports = []
    for i, d in enumerate(dirs):
        per_seed = report_path.with_name(f"{report_path.stem}-{d.name}.json")
        extra = {"with_baselines": False} if baseline_seeds is not None and i >= baseline_seeds else {}
        reports.append(evaluate(d, data_dir, per_seed, dataset=ds, **{**kw, **extra}))
    keys = ("run", "accuracy", "macro_f1", "ci95", "calibration", "unimodal", "without")
    summary = {
        "scenario": reports[0]["scenario"],
        "fusion": reports[0]["fusion"],
        "n_test": reports[0]["n_test"],
        "seeds": [{k: r[k] for k in keys} for r in reports],
        **seed_summary(reports),
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(summary, indent=2) + "\n")
    report_path.with_suffix(".md").write_text(seeds_markdown(summary) + "\n")
    return summary


def seeds_markdown(s: dict[str, Any]) -> str:
    """The multi-seed summary as markdown."""
    pm = lambda d: f"{d['mean']:.3f} +- {d['std']:.3f}"  # noqa: E731
    lines = [
        f"# Evaluation over {len(s['seeds'])} seeds: {s['scenario']} ({s['fusion']} fusion)",
        "",
        f"{s['n_test']} test samples. Mean +- std over seeds; the 95 % intervals are per seed (bootstrap).",
        "",
        "| | accuracy | macro F1 | ECE before / after temperature |",
        "|---|---|---|---|",
        f"| fused | {pm(s['accuracy'])} | {pm(s['macro_f1'])} | {pm(s['ece_before'])} / {pm(s['ece_after'])} |",
    ]
    if "recordings_accuracy" in s:
        lines.append(f"| fused, per recording | {pm(s['recordings_accuracy'])} | {pm(s['recordings_macro_f1'])} | |")
    lines += [f"| only {m} | {pm(v)} | | |" for m, v in s["unimodal"].items()]
    lines += ["", "| seed run | accuracy [95 % CI] | macro F1 [95 % CI] | ECE after |", "|---|---|---|---|"]
    for r in s["seeds"]:
        ci = r["ci95"]
        lines.append(
            f"| {r['run']} | {r['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}] | "
            f"{r['macro_f1']:.3f} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}] | {r['calibration']['ece_after']:.3f} |"
        )
    return "\n".join(lines)


def cli_eval(args: argparse.Namespace) -> int:
    """`edgefuse eval`: score a run, write the reports, print the headline numbers."""
    if getattr(args, "seeds", None):
        s = evaluate_seeds(
            args.run, args.data, args.report, args.seeds, with_baselines=not args.no_baselines, split=args.split
        )
        print(
            f"{args.report}: {len(s['seeds'])} seeds, accuracy {s['accuracy']['mean']:.3f} +- {s['accuracy']['std']:.3f}, "
            f"macro F1 {s['macro_f1']['mean']:.3f} +- {s['macro_f1']['std']:.3f}, "
            f"ECE {s['ece_before']['mean']:.3f} -> {s['ece_after']['mean']:.3f} after temperature scaling"
        )
        for m, v in s["unimodal"].items():
            print(f"  only {m}: {v['mean']:.3f} +- {v['std']:.3f}")
        return 0
    r = evaluate(args.run, args.data, args.report, with_baselines=not args.no_baselines, split=args.split)
    for h, m in r.get("multilabel", {}).items():
        print(f"  {h} (multilabel): mAP {m['mAP']:.3f}, macro F1 {m['macro_f1']:.3f} at the validation thresholds")
    for h, m in r.get("regression", {}).items():
        if m["n"]:
            print(f"  {h} (regression): MAE {m['mae']:.4g} {m['unit']}, RMSE {m['rmse']:.4g} {m['unit']}".rstrip())
    if "anomaly" in r:
        aucs = ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in r["anomaly"]["kinds"].items())
        print(f"  anomaly: ROC-AUC {aucs}; false alarms {100 * r['anomaly']['false_alarm_rate']:.1f}%")
    if "accuracy" not in r:  # no class head (multilabel/regression heads or an anomaly model only)
        n = f"{r['n_test']} {r['split']} samples; " if "n_test" in r else ""
        lat = f"latency p50 {r['latency_ms']['p50']:.2f} ms" if "latency_ms" in r else "anomaly model only"
        print(f"{args.report}: {n}{lat}")
        return 0
    print(
        f"{args.report}: accuracy {r['accuracy']:.3f}, joint {r['joint_accuracy']:.3f}, macro F1 {r['macro_f1']:.3f} "
        f"on {r['n_test']} {r['split']} samples; {r['params']:,} params; "
        f"latency p50 {r['latency_ms']['p50']:.2f} ms; 95% CI accuracy [{r['ci95']['accuracy'][0]:.3f}, "
        f"{r['ci95']['accuracy'][1]:.3f}]; ECE {r['calibration']['ece_before']:.3f} -> {r['calibration']['ece_after']:.3f}"
    )
    for m, acc in r["unimodal"].items():
        print(f"  only {m}: {acc:.3f}   without {m}: {r['without'].get(m, float('nan')):.3f}")
    c = r.get("captions")
    if c and c["n"]:
        print(f"  captions: BLEU-4 {c['bleu4']:.3f}, ROUGE-L {c['rougeL']:.3f} on {c['n']} samples")
    return 0
