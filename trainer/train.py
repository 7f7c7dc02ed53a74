"""Train a fused model on a dataset folder: `edgefuse train --config --data --out`.

One loop, top to bottom: AdamW, linear warm-up then cosine decay per step, the sum of per-head cross-entropies
plus the fusion's auxiliary (adversarial) loss, modality dropout on training batches, early stopping on the mean
validation accuracy over heads (the best state is kept). Seeds fix python, NumPy and torch, and the batch order
comes from a seeded generator, so the same seed gives the same metrics.

Baselines reuse the same encoders and settings: `only=m` masks every other modality always (and turns modality
dropout off), `drop=m` masks m always. The run folder gets checkpoint.pt, metrics.json and TensorBoard logs (tb/).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.errors import DataError
from edgefuse.spec import ScenarioSpec, SpecError, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.checkpoint import Normalization, save_run

torch = require("torch", "training")
F = torch.nn.functional

EVAL_BATCH = 256  # inference batch for validation/test passes (memory, not accuracy)


# ---------------------------------------------------------------------------------------------------------------------
# settings


def apply_overrides(
    spec: ScenarioSpec, *, epochs: int | None = None, fusion: str | None = None, seed: int | None = None
) -> ScenarioSpec:
    """A copy of `spec` with command-line overrides, validated like the YAML itself."""
    d = spec_to_dict(spec)
    if epochs is not None:
        d["train"]["epochs"] = epochs
    if fusion is not None:
        d["model"]["fusion"]["method"] = fusion
    if seed is not None:
        d["train"]["seed"] = seed
    return parse_spec(d, f"{spec.name} (with command-line overrides)")


def masked_modalities(spec: ScenarioSpec, only: str | None, drop: str | None) -> list[str]:
    """The modalities a baseline never sees: all but `only`, or `drop`."""
    names = spec.modality_names
    problems = [
        (f"--{flag}", f"no modality named '{m}'; choose from {names}")
        for flag, m in (("only", only), ("drop", drop))
        if m is not None and m not in names
    ]
    if only is not None and drop is not None:
        problems.append(("--only/--drop", "give one of them, not both"))
    if drop is not None and len(names) == 1:
        problems.append(("--drop", f"'{drop}' is the only modality; nothing would be left"))
    if problems:
        raise SpecError(spec.name, problems)
    if only is not None:
        return [m for m in names if m != only]
    return [drop] if drop is not None else []


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------------
# data


def check_dataset(ds: Any, spec: ScenarioSpec, where: str | Path) -> None:
    """Refuse a dataset that does not fit the spec with a DataError naming the tensor (never a torch stack trace)."""
    n = len(ds)
    for name, m in spec.modalities.items():
        x = ds.inputs.get(name)
        if x is None:
            raise DataError(where, f"no inputs for modality '{name}'")
        if tuple(x.shape) != (n, *m.input_shape):
            raise DataError(where, f"inputs['{name}'] has shape {tuple(x.shape)}, expected {(n, *m.input_shape)}")
    if tuple(ds.mask.shape) != (n, len(spec.modalities)):
        raise DataError(where, f"mask has shape {tuple(ds.mask.shape)}, expected {(n, len(spec.modalities))}")
    for head, classes in spec.labels.items():
        y = ds.targets.get(head)
        if y is None or y.shape != (n,):
            raise DataError(where, f"targets['{head}'] missing or not of shape ({n},)")
        if n and (y.min() < 0 or y.max() >= len(classes)):
            raise DataError(where, f"targets['{head}'] outside [0, {len(classes)})")


def to_tensors(ds: Any) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Zero-copy torch views of a Dataset: (inputs, mask (N, M), targets)."""
    inputs = {m: torch.from_numpy(np.ascontiguousarray(x)) for m, x in ds.inputs.items()}
    mask = torch.from_numpy(np.ascontiguousarray(ds.mask, dtype=np.float32))  # (N, M)
    targets = {h: torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)) for h, y in ds.targets.items()}
    return inputs, mask, targets


def series_normalization(spec: ScenarioSpec, train_ds: Any) -> Normalization:
    """Per-channel mean/std of every series modality over the training samples where it is present."""
    stats: Normalization = {}
    for j, (name, m) in enumerate(spec.modalities.items()):
        if m.kind != "series":
            continue
        x = train_ds.inputs[name][train_ds.mask[:, j] > 0].astype(np.float64)  # (n, C, T)
        if len(x) == 0:
            mean, std = np.zeros(m.n_channels), np.ones(m.n_channels)
        else:
            mean, std = x.mean(axis=(0, 2)), x.std(axis=(0, 2))
        std = np.where(std < 1e-6, 1.0, std)  # a constant channel stays as it is instead of blowing up
        stats[name] = (mean.astype(np.float32), std.astype(np.float32))
    return stats


def batches(n: int, batch_size: int, generator: Any, min_last: int = 2) -> list[Any]:
    """A seeded permutation cut into batches; a trailing batch under `min_last` joins the previous (BatchNorm needs
    two samples, per rank when distributed)."""
    parts = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < min_last:
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


# ---------------------------------------------------------------------------------------------------------------------
# the loop


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.05) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def loss_of(logits: dict[str, Any], targets: dict[str, Any], idx: Any) -> Any:
    return sum(F.cross_entropy(logits[h], y[idx]) for h, y in targets.items())


@torch.inference_mode()
def predict_logits(model: Any, inputs: dict[str, Any], mask: Any, batch_size: int = EVAL_BATCH) -> dict[str, Any]:
    """Eval-mode logits for every sample: head -> (N, C). The caller restores train mode if it needs it."""
    model.eval()
    n = len(mask)
    out: dict[str, list[Any]] = {}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        logits = model({m: x[sl] for m, x in inputs.items()}, mask[sl])
        for h, v in logits.items():
            out.setdefault(h, []).append(v)
    return {h: torch.cat(v) for h, v in out.items()}


def validate(model: Any, inputs: dict[str, Any], mask: Any, targets: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """(summed cross-entropy, per-head accuracy) on a split."""
    logits = predict_logits(model, inputs, mask)
    loss = float(sum(F.cross_entropy(logits[h], y) for h, y in targets.items()))
    acc = {h: float((logits[h].argmax(-1) == y).float().mean()) for h, y in targets.items()}
    return loss, acc


class EarlyStopping:
    """Keeps the state with the best validation (accuracy, then loss); stops `patience` epochs after the accuracy
    last improved, so a loss creeping down on a saturated accuracy does not hold training open forever."""

    def __init__(self, patience: int):
        self.patience = patience
        self.acc, self.loss, self.epoch, self.heads, self.state = -1.0, math.inf, 0, {}, None
        self.best_acc, self.improved = -1.0, 0  # for stopping: the best accuracy and the epoch it came

    def step(self, epoch: int, acc: float, loss: float, heads: dict[str, float], model: Any) -> bool:
        """Record one epoch's validation; True when training should stop."""
        if acc > self.acc or (acc == self.acc and loss < self.loss):
            self.acc, self.loss, self.epoch, self.heads = acc, loss, epoch, heads
            self.state = copy.deepcopy(model.state_dict())
        if acc > self.best_acc:
            self.best_acc, self.improved = acc, epoch
        return epoch - self.improved >= self.patience


def make_optimizer(model: Any, cfg: Any, steps_per_epoch: int) -> tuple[Any, Any]:
    """AdamW with a per-step schedule: linear warm-up over `warmup_epochs`, then cosine decay."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))


def train_epoch(
    model: Any, opt: Any, sched: Any, data: tuple, batch_size: int, gens: tuple, p_drop: float, ddp: Any = None
) -> float:
    """One pass over the training split in a seeded order; returns the mean loss per sample. With `ddp`
    (trainer/distributed.py) this rank trains on its share of each batch."""
    from edgefuse.trainer.models import modality_dropout

    inputs, masks, targets = data
    order_gen, drop_gen = gens
    model.train()
    total, count = 0.0, 0
    for idx in batches(len(masks), batch_size, order_gen, 2 if ddp is None else ddp.min_batch()):
        weight = 1.0
        if ddp is not None:
            idx, weight = ddp.shard(idx)
        mask = masks[idx]  # (B, M)
        if p_drop > 0:
            mask = modality_dropout(mask, p_drop, drop_gen)
        logits = model({m: x[idx] for m, x in inputs.items()}, mask)  # head -> (B, C)
        loss = loss_of(logits, targets, idx) + model.aux_loss()
        opt.zero_grad(set_to_none=True)
        (loss * weight).backward()
        opt.step()
        sched.step()
        total, count = total + loss.item() * len(idx), count + len(idx)
    return total / count if ddp is None else ddp.mean(total / count)


def train_val_splits(ds: Any, spec: ScenarioSpec, data_dir: str | Path) -> tuple[Any, Any]:
    check_dataset(ds, spec, data_dir)
    train_ds, val_ds = ds.subset("train"), ds.subset("val")
    for split, part in (("train", train_ds), ("val", val_ds)):
        if len(part) < 2:
            raise DataError(data_dir, f"the '{split}' split has {len(part)} samples; training needs train and val")
    return train_ds, val_ds


def train(
    spec: ScenarioSpec,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    fusion: str | None = None,
    only: str | None = None,
    drop: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    dataset: Any | None = None,
) -> dict[str, Any]:
    """Train a model for `spec` on the dataset folder `data_dir` (or an already loaded `dataset` of it).

    Writes `out_dir`/checkpoint.pt, metrics.json and tb/ and returns the metrics: the best epoch's validation
    accuracy (mean over heads of per-head accuracy) and loss, per-head accuracies, the history, the time taken.
    """
    from edgefuse.trainer.data import load_data
    from edgefuse.trainer.distributed import Distributed
    from edgefuse.trainer.models import build_model, count_params

    spec = apply_overrides(spec, epochs=epochs, fusion=fusion, seed=seed)
    masked = masked_modalities(spec, only, drop)
    cfg = spec.train
    seed_everything(cfg.seed)
    ddp = Distributed.from_env()  # None in one process; under torchrun, rank 0 alone validates, logs and saves
    torch.set_num_threads(cfg.threads if ddp is None else ddp.threads(cfg.threads))
    progress = progress and (ddp is None or ddp.is_main)
    ds = dataset if dataset is not None else load_data(spec, data_dir, progress=progress)
    train_ds, val_ds = train_val_splits(ds, spec, data_dir)

    norm = series_normalization(spec, train_ds)
    model = build_model(spec)
    model.set_normalization(norm)
    keep = torch.tensor([0.0 if m in masked else 1.0 for m in spec.modality_names])  # (M,)
    x_tr, m_tr, y_tr = to_tensors(train_ds)
    x_va, m_va, y_va = to_tensors(val_ds)
    m_tr, m_va = m_tr * keep, m_va * keep  # baselines: the masked modalities are never seen
    p_drop = 0.0 if only is not None else spec.model.modality_dropout
    gens = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)  # order, dropout
    net, evaluated = (model, model) if ddp is None else (ddp.wrap(model), ddp.evaluator(model))
    opt, sched = make_optimizer(model, cfg, len(batches(len(train_ds), cfg.batch_size, torch.Generator())))
    if ddp is not None and not ddp.is_main:
        data = (x_tr, m_tr, y_tr)
        return ddp.follow(lambda: train_epoch(net, opt, sched, data, cfg.batch_size, gens, p_drop, ddp), cfg.epochs)

    out = Path(out_dir)
    shutil.rmtree(out / "tb", ignore_errors=True)  # retraining into a run folder replaces its logs with the model
    writer = require("torch.utils.tensorboard", "TensorBoard logs").SummaryWriter(str(out / "tb"))
    stopper, history = EarlyStopping(cfg.patience), []
    t0 = time.perf_counter()
    bar = require("tqdm").tqdm(range(1, cfg.epochs + 1), desc=f"train {spec.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        train_loss = train_epoch(net, opt, sched, (x_tr, m_tr, y_tr), cfg.batch_size, gens, p_drop, ddp)
        val_loss, val_heads = validate(evaluated, x_va, m_va, y_va)
        val_acc = float(np.mean(list(val_heads.values())))
        lr = opt.param_groups[0]["lr"]
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
        )
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            writer.add_scalar(key.replace("_", "/", 1), history[-1][key], epoch)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        stop = stopper.step(epoch, val_acc, val_loss, val_heads, model)
        if stop if ddp is None else ddp.agree(stop):
            break
    writer.close()
    model.load_state_dict(stopper.state)
    model.eval()

    metrics = {
        "scenario": spec.name,
        "fusion": spec.model.fusion.method,
        "only": only,
        "drop": drop,
        "masked": masked,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "epochs_run": len(history),
        "stopped_early": len(history) < cfg.epochs,
        "best_epoch": stopper.epoch,
        "val_accuracy": stopper.acc,
        "val_loss": stopper.loss,
        "val_heads": stopper.heads,
        "params": count_params(model),
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "train_time_s": time.perf_counter() - t0,
        "history": history,
    }
    if ddp is not None:
        metrics["world_size"] = ddp.world
        model.cpu()
        ddp.close()
    save_run(out, spec, model, norm, metrics, data_dir=data_dir, n_samples=len(ds), masked=masked)
    return metrics


def cli_train(args: argparse.Namespace) -> int:
    """`edgefuse train`: train, then print where the run went and its validation accuracy."""
    if getattr(args, "nproc", 1) > 1:
        from edgefuse.trainer.distributed import launch

        return launch(args)  # torchrun runs this verb again in each process, without --nproc
    spec = load_spec(args.config)
    m = train(
        spec,
        args.data,
        args.out,
        epochs=args.epochs,
        fusion=args.fusion,
        only=args.only,
        drop=getattr(args, "drop", None),
        seed=args.seed,
    )
    if "rank" in m:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(
        f"{args.out}: {m['fusion']} fusion, {m['params']:,} params, val accuracy {m['val_accuracy']:.3f} "
        f"(best epoch {m['best_epoch']}/{m['epochs_run']}), {m['train_time_s']:.1f} s"
    )
    return 0
