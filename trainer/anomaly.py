"""Train and evaluate the anomaly model (trainer/models/anomaly.py) of a spec with an `anomaly` section.

Training uses normal data only and no labels: the train split minus the classes `anomaly.exclude` names (those
are the "never seen" events of the evaluation). The recipe is the classifier's (trainer/train.py): same seeding,
AdamW with warm-up and cosine decay, seeded batch order, series normalization from the training split, early
stopping on the validation split's mean reconstruction error. Then the typical residual of each target element on
the normal training samples (the scale scores measure residuals in), and, on the (normal) validation split only, the
log-error statistics that turn errors into scores, and the thresholds: `anomaly.quantile` of the validation scores
per modality and fused. The run folder gets anomaly.pt (plain values, like checkpoint.pt) and anomaly.json.

Evaluation injects faults into the held-out normal samples of a split and reports the ROC-AUC of the fused score,
clean vs faulty, per fault kind (sklearn's roc_auc_score); FAULTS is the one list of kinds:

    stuck     one series channel whose reading changes at most steps (not an on/off flag) holds its value from a point in the first half of the window to the end
    dropout   a run of zeros over 25-50% of the window: one series channel whose normal values sit away from 0, or
              the audio (one of them, at random, when the spec has both)
    drift     a series channel gains an offset growing linearly to 3 training standard deviations at the window end
    covered   the camera covered: the frame dark (1-5% of its brightness)
    clipping  the microphone saturates: the waveform amplified until 30% of its samples sit at full scale
    unseen    no injection: the test samples of the classes anomaly.exclude held out of training
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.errors import DataError
from edgefuse.spec import ScenarioSpec, SpecError, parse_spec

torch = require("torch", "training")

ANOMALY_CHECKPOINT = "anomaly.pt"
ANOMALY_METRICS = "anomaly.json"
FORMAT = 1
EVAL_BATCH = 256


# ---------------------------------------------------------------------------------------------------------------------
# normal data


def normal_rows(spec: ScenarioSpec, ds: Any) -> np.ndarray:
    """(N,) bool: the samples that count as normal (no label in anomaly.exclude)."""
    keep = np.ones(len(ds), dtype=bool)
    for head, classes in (spec.anomaly.exclude if spec.anomaly else {}).items():
        ids = [spec.labels[head].index(c) for c in classes]
        keep &= ~np.isin(ds.targets[head], ids)
    return keep


def normal_split(spec: ScenarioSpec, ds: Any, split: str) -> Any:
    part = ds.subset(split)
    return part.rows(normal_rows(spec, part))


# ---------------------------------------------------------------------------------------------------------------------
# scores


def _tensors(inputs: dict[str, np.ndarray], mask: np.ndarray) -> tuple[dict[str, Any], Any]:
    x = {m: torch.from_numpy(np.ascontiguousarray(v)) for m, v in inputs.items()}
    return x, torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


@torch.inference_mode()
def raw_errors(model: Any, inputs: dict[str, np.ndarray], mask: np.ndarray, tail: bool = False) -> np.ndarray:
    """(N, M) reconstruction errors in eval mode (masked modalities included: callers mask them); `tail`: the
    scored error (AnomalyModel.errors)."""
    model.eval()
    x, mk = _tensors(inputs, mask)
    out = [
        model.errors({m: v[s : s + EVAL_BATCH] for m, v in x.items()}, mk[s : s + EVAL_BATCH], tail=tail)
        for s in range(0, len(mk), EVAL_BATCH)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.modalities)), np.float32)


@torch.inference_mode()
def anomaly_scores(model: Any, inputs: dict[str, np.ndarray], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, M), fused (N,)) of the model's forward, batched, eval mode."""
    model.eval()
    x, mk = _tensors(inputs, mask)
    parts = [
        model({m: v[s : s + EVAL_BATCH] for m, v in x.items()}, mk[s : s + EVAL_BATCH])
        for s in range(0, len(mk), EVAL_BATCH)
    ]
    return torch.cat([p[0] for p in parts]).numpy(), torch.cat([p[1] for p in parts]).numpy()


# ---------------------------------------------------------------------------------------------------------------------
# training


@torch.no_grad()
def target_stats(model: Any, ds: Any) -> dict[str, tuple[Any, Any]]:
    """Per-element mean and std of each modality's raw target over the samples where it is present; a std is
    floored at a tenth of the modality's median std (and 1e-3), so a target element that never moves in training
    cannot turn a tiny change into an enormous error."""
    stats = {}
    x, mk = _tensors(ds.inputs, ds.mask)
    for j, m in enumerate(model.modalities):
        rows = mk[:, j] > 0.5
        if not bool(rows.any()):
            continue
        t = torch.cat([model.targets[m](x[m][rows][s : s + EVAL_BATCH]) for s in range(0, int(rows.sum()), EVAL_BATCH)])
        mean, std = t.mean(dim=0), t.std(dim=0) if len(t) > 1 else torch.ones(t.shape[1])
        floor = max(1e-3, 0.1 * float(std.median()))
        stats[m] = (mean, std.clamp(min=floor))
    return stats


@torch.no_grad()
def residual_scale(model: Any, ds: Any) -> dict[str, Any]:
    """Per-element RMS of each modality's residual over the samples where it is present (eval mode), floored like
    target_stats: the scale the scores measure residuals in."""
    model.eval()
    x, mk = _tensors(ds.inputs, ds.mask)
    sums: dict[str, Any] = {}
    counts = {m: 0 for m in model.modalities}
    for s in range(0, len(mk), EVAL_BATCH):
        mb = mk[s : s + EVAL_BATCH]
        res = model.residuals({m: v[s : s + EVAL_BATCH] for m, v in x.items()}, mb)
        for j, m in enumerate(model.modalities):
            rows = mb[:, j] > 0.5
            sq = (res[m][rows] ** 2).sum(dim=0)
            sums[m] = sq if m not in sums else sums[m] + sq
            counts[m] += int(rows.sum())
    out = {}
    for m in model.modalities:
        if counts[m]:
            rms = torch.sqrt(sums[m] / counts[m])
            out[m] = rms.clamp(min=max(1e-3, 0.1 * float(rms.median())))
    return out


def _mean_error(model: Any, ds: Any) -> float:
    err = raw_errors(model, ds.inputs, ds.mask)
    return float((err * ds.mask).sum() / max(1.0, ds.mask.sum()))


def fit_thresholds(model: Any, val: Any, quantile: float) -> dict[str, Any]:
    """Set the score statistics and thresholds from the (normal) validation samples; returns them."""
    err = raw_errors(model, val.inputs, val.mask, tail=True)  # (N, M)
    log_err = np.log(err + 1e-8)
    for j in range(len(model.modalities)):
        rows = val.mask[:, j] > 0.5
        v = log_err[rows, j] if rows.any() else np.zeros(1)
        model.err_mean[j] = float(v.mean())
        model.err_std[j] = max(float(v.std()), 1e-3)
    scores, fused = anomaly_scores(model, val.inputs, val.mask)
    per = {}
    for j, m in enumerate(model.modalities):
        rows = val.mask[:, j] > 0.5
        per[m] = float(np.quantile(scores[rows, j], quantile)) if rows.any() else math.inf
        model.thresholds[j] = per[m]
    fused_t = float(np.quantile(fused[val.mask.any(axis=1)], quantile))
    model.fused_threshold.fill_(fused_t)
    return {"quantile": quantile, "fused": fused_t, "modalities": per}


def train_anomaly(
    spec: ScenarioSpec, ds: Any, out_dir: str | Path, data_dir: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """Train the anomaly model of `spec` on the normal samples of `ds`'s train split; write RUN/anomaly.pt and
    RUN/anomaly.json; returns the metrics."""
    from edgefuse.trainer.models import modality_dropout
    from edgefuse.trainer.models.anomaly import build_anomaly_model
    from edgefuse.trainer.train import batches, make_optimizer, schedule, seed_everything, series_normalization

    cfg, a = spec.train, spec.anomaly
    if a is None:
        raise SpecError(spec.name, [("anomaly", "the spec has no anomaly section")])
    seed_everything(cfg.seed)
    train_ds, val_ds = normal_split(spec, ds, "train"), normal_split(spec, ds, "val")
    for split, part in (("train", train_ds), ("val", val_ds)):
        if len(part) < 2:
            raise DataError(
                data_dir, f"the '{split}' split has {len(part)} normal samples; the anomaly model needs more"
            )
    norm = series_normalization(spec, train_ds)
    model = build_anomaly_model(spec)
    model.set_normalization(norm)
    model.set_target_stats(target_stats(model, train_ds))
    x_tr, m_tr = _tensors(train_ds.inputs, train_ds.mask)
    steps = len(batches(len(train_ds), cfg.batch_size, torch.Generator()))
    budget = SimpleNamespace(epochs=a.epochs or cfg.epochs, patience=a.patience or cfg.patience)
    n_epochs, patience = schedule(budget, steps)
    opt, sched = make_optimizer(model.parameters(), cfg, n_epochs, steps)
    order, drop = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
    best, best_state, best_epoch, history = math.inf, None, 0, []
    t0 = time.perf_counter()
    bar = require("tqdm").tqdm(range(1, n_epochs + 1), desc=f"anomaly {spec.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in batches(len(m_tr), cfg.batch_size, order):
            mask = m_tr[idx]  # (B, M)
            seen = modality_dropout(mask, a.modality_dropout, drop)
            err = model.errors({m: v[idx] for m, v in x_tr.items()}, mask, seen)  # (B, M)
            loss = (err * mask).sum() / mask.sum().clamp(min=1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val_err = _mean_error(model, val_ds)
        history.append({"epoch": epoch, "train_error": total / len(m_tr), "val_error": val_err})
        bar.set_postfix(err=f"{total / len(m_tr):.3f}", val=f"{val_err:.3f}")
        if val_err < best:
            best, best_state, best_epoch = val_err, copy.deepcopy(model.state_dict()), epoch
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    model.set_residual_scale(residual_scale(model, train_ds))
    thresholds = fit_thresholds(model, val_ds, a.quantile)
    metrics = {
        "scenario": spec.name,
        "seed": cfg.seed,
        "epochs": n_epochs,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "val_error": best,
        "thresholds": thresholds,
        "excluded": {h: list(c) for h, c in a.exclude.items()},
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "params": sum(p.numel() for p in model.parameters()),
        "train_time_s": time.perf_counter() - t0,
        "history": history,
    }
    save_anomaly(out_dir, spec, model, norm, metrics, data_dir)
    return metrics


def save_anomaly(out_dir: str | Path, spec: ScenarioSpec, model: Any, norm: dict, metrics: dict, data_dir: Any) -> Path:
    from edgefuse.trainer.checkpoint import checkpoint_fields, write_checkpoint

    ckpt = {**checkpoint_fields(spec, model, norm, metrics, FORMAT), "data": str(Path(data_dir).resolve())}
    return write_checkpoint(out_dir, ANOMALY_CHECKPOINT, ckpt, ANOMALY_METRICS, metrics)


def load_anomaly(run_dir: str | Path) -> tuple[ScenarioSpec, Any, dict[str, Any]]:
    """(spec, AnomalyModel in eval mode, raw checkpoint) of RUN/anomaly.pt; CheckpointError names the file."""
    from edgefuse.trainer.checkpoint import CheckpointError, _read, normalization_of
    from edgefuse.trainer.models.anomaly import build_anomaly_model

    path = Path(run_dir) / ANOMALY_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(path, "no anomaly model in this run folder (a spec with an `anomaly` section trains one)")
    ckpt = _read(path)
    try:
        spec = parse_spec(ckpt["spec"], f"{path}:spec")
        model = build_anomaly_model(spec)
        model.set_normalization(normalization_of(ckpt))
        model.load_state_dict(ckpt["state_dict"])
    except (SpecError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"does not rebuild an anomaly model: {str(err)[:300]}") from None
    model.eval()
    return spec, model, ckpt


# ---------------------------------------------------------------------------------------------------------------------
# faults


def _series_channel_pick(x: np.ndarray, rng: np.random.Generator, ok: np.ndarray) -> int:
    choices = np.flatnonzero(ok)
    return int(rng.choice(choices)) if len(choices) else int(rng.integers(x.shape[0]))


def stuck(x: np.ndarray, rng: np.random.Generator, ref: dict) -> np.ndarray:
    """Series (C, T): a varying channel holds its value from a point in the first half to the end."""
    x = x.copy()
    ch = _series_channel_pick(x, rng, (np.diff(x, axis=1) != 0).mean(axis=1) > 0.5)  # a live reading, not a flag
    t0 = int(rng.integers(0, max(1, x.shape[1] // 2)))
    x[ch, t0:] = x[ch, t0]
    return x


def dropout(x: np.ndarray, rng: np.random.Generator, ref: dict) -> np.ndarray:
    """Series (C, T) or audio (C, T): a run of zeros over 25-50% of the window (series: a channel away from 0)."""
    x = x.copy()
    n = x.shape[1]
    length = int(n * rng.uniform(0.25, 0.5))
    t0 = int(rng.integers(0, n - length + 1))
    if ref["kind"] == "series":
        ch = _series_channel_pick(x, rng, np.abs(ref["mean"]) > ref["std"])
        x[ch, t0 : t0 + length] = 0.0
    else:
        x[:, t0 : t0 + length] = 0.0
    return x


def drift(x: np.ndarray, rng: np.random.Generator, ref: dict) -> np.ndarray:
    """Series (C, T): an offset growing linearly to 3 training stds of the channel at the window's end."""
    x = x.copy()
    ch = _series_channel_pick(x, rng, np.diff(x, axis=1).std(axis=1) > 0)
    t0 = int(rng.integers(0, max(1, x.shape[1] // 2)))
    ramp = np.clip((np.arange(x.shape[1]) - t0) / max(1, x.shape[1] - 1 - t0), 0, None)
    x[ch] += (rng.choice([-1.0, 1.0]) * 3.0 * ref["std"][ch] * ramp).astype(x.dtype)
    return x


def covered(x: np.ndarray, rng: np.random.Generator, ref: dict) -> np.ndarray:
    """Image (C, H, W): a covered lens, 1-5% of the frame's brightness left."""
    return (x * rng.uniform(0.01, 0.05)).astype(x.dtype)


def clipping(x: np.ndarray, rng: np.random.Generator, ref: dict) -> np.ndarray:
    """Audio (C, T): amplified until 30% of the samples sit at full scale."""
    c = max(float(np.quantile(np.abs(x), 0.7)), 1e-6)
    return (np.clip(x / c, -1.0, 1.0) * 0.99).astype(x.dtype)


# fault kind -> (modality kinds it applies to, function on one sample's modality input)
FAULTS: dict[str, tuple[tuple[str, ...], Any]] = {
    "stuck": (("series",), stuck),
    "dropout": (("series", "audio"), dropout),
    "drift": (("series",), drift),
    "covered": (("image",), covered),
    "clipping": (("audio",), clipping),
}


def inject(spec: ScenarioSpec, part: Any, kind: str, ref: dict, seed: int) -> tuple[Any, np.ndarray, list[str]]:
    """A copy of `part` with fault `kind` in one eligible present modality per sample: (inputs, rows faulted (N,)
    bool, the modality faulted per row ('' when none could be))."""
    kinds, fn = FAULTS[kind]
    rng = np.random.default_rng(seed)
    names = [m for m in spec.modality_names if spec.modalities[m].kind in kinds]
    cols = {m: spec.modality_names.index(m) for m in names}
    inputs = {m: v.copy() for m, v in part.inputs.items()}
    hit, which = np.zeros(len(part), dtype=bool), [""] * len(part)
    for i in range(len(part)):
        present = [m for m in names if part.mask[i, cols[m]] > 0.5]
        if not present:
            continue
        m = present[int(rng.integers(len(present)))]
        inputs[m][i] = fn(inputs[m][i], rng, ref[m])
        hit[i], which[i] = True, m
    return inputs, hit, which


def fault_refs(spec: ScenarioSpec, train: Any) -> dict[str, dict]:
    """Per modality: its kind and, for series, the training split's per-channel mean and std."""
    from edgefuse.trainer.train import series_normalization

    norm = series_normalization(spec, train)
    out = {}
    for m, ms in spec.modalities.items():
        mean, std = norm.get(m, (np.zeros(ms.n_channels), np.ones(ms.n_channels)))
        out[m] = {"kind": ms.kind, "mean": mean, "std": std}
    return out


def evaluate_anomaly(run_dir: str | Path, ds: Any, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """ROC-AUC of the fused score per fault kind on the normal samples of `split` (clean vs faulty), the unseen
    classes vs the normal ones, and the alert rates at the threshold."""
    roc_auc_score = require("sklearn.metrics", "anomaly evaluation (scikit-learn)").roc_auc_score
    spec, model, _ = load_anomaly(run_dir)
    part = ds.subset(split)
    normal = normal_rows(spec, part)
    clean = part.rows(normal)
    if len(clean) < 2:
        raise DataError(split, f"the '{split}' split has {len(clean)} normal samples; anomaly evaluation needs more")
    _, base = anomaly_scores(model, clean.inputs, clean.mask)
    thr = float(model.fused_threshold)
    refs = fault_refs(spec, normal_split(spec, ds, "train"))
    kinds: dict[str, Any] = {}
    for k, (mods, _) in FAULTS.items():
        if not any(spec.modalities[m].kind in mods for m in spec.modality_names):
            continue
        inputs, hit, which = inject(spec, clean, k, refs, seed)
        if not hit.any():
            continue
        scores, fused = anomaly_scores(model, inputs, clean.mask)
        pos = fused[hit]
        y = np.r_[np.zeros(len(base)), np.ones(len(pos))]
        kinds[k] = {
            "roc_auc": float(roc_auc_score(y, np.r_[base, pos])),
            "n_faulty": int(hit.sum()),
            "alert_rate": float((pos > thr).mean()),
            "modalities": sorted(set(w for w in which if w)),
        }
    unseen = part.mask[~normal]
    if len(unseen):
        _, fused = anomaly_scores(model, part.rows(~normal).inputs, unseen)
        y = np.r_[np.zeros(len(base)), np.ones(len(fused))]
        kinds["unseen"] = {
            "roc_auc": float(roc_auc_score(y, np.r_[base, fused])),
            "n_faulty": int(len(fused)),
            "alert_rate": float((fused > thr).mean()),
            "classes": {h: list(c) for h, c in spec.anomaly.exclude.items()},  # type: ignore[union-attr]
        }
    return {
        "split": split,
        "n_normal": len(clean),
        "threshold": thr,
        "quantile": spec.anomaly.quantile,  # type: ignore[union-attr]
        "false_alarm_rate": float((base > thr).mean()),
        "kinds": kinds,
    }


def evaluate_anomaly_run(
    run_dir: Path, data_dir: str | Path, report_path: str | Path | None, *, split: str, progress: bool, dataset: Any
) -> dict[str, Any]:
    """`edgefuse eval` on a run with an anomaly model and no classifier: the anomaly section alone (JSON + .md)."""
    from edgefuse.trainer.data import load_data

    spec, _, _ = load_anomaly(run_dir)
    ds = dataset if dataset is not None else load_data(spec, data_dir, progress=progress)
    report = {"scenario": spec.name, "run": str(run_dir), "data": str(data_dir), "split": split}
    report["anomaly"] = evaluate_anomaly(run_dir, ds, split, seed=spec.train.seed)
    if report_path is not None:
        path = Path(report_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        title = [f"# Evaluation: {spec.name} (anomaly model only)", "", f"Run `{run_dir}`, data `{data_dir}`.", ""]
        path.with_suffix(".md").write_text("\n".join(title + anomaly_markdown(report["anomaly"])) + "\n")
    return report


def anomaly_markdown(a: dict[str, Any]) -> list[str]:
    """The eval report's anomaly section (markdown lines)."""
    lines = [
        "## Anomaly scores (unsupervised, faults injected into held-out normal samples)",
        "",
        f"Fused threshold {a['threshold']:.3f} (validation quantile {a['quantile']}); false alarms on "
        f"{a['n_normal']} clean normal {a['split']} samples: {100 * a['false_alarm_rate']:.1f}%.",
        "",
        "| fault | ROC-AUC | alert rate at threshold | faulty samples |",
        "|---|---|---|---|",
    ]
    for k, v in a["kinds"].items():
        lines.append(f"| {k} | {v['roc_auc']:.3f} | {100 * v['alert_rate']:.1f}% | {v['n_faulty']} |")
    return [*lines, ""]
