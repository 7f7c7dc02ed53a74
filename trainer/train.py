"""Train a fused model on a dataset folder: `edgefuse train --config --data --out`.

One loop, top to bottom: AdamW, linear warm-up then cosine decay per step over an epoch budget sized from the data,
the sum of per-head losses (label-smoothed cross-entropy for class heads, BCE-with-logits for multilabel heads,
smooth L1 on standardized targets for regression heads, missing targets masked; edgefuse/heads.py) plus the fusion's
auxiliary (adversarial) loss plus the unimodal auxiliary heads' loss (the modality-imbalance remedy: every
modality's embedding must classify on its own, so the fused model cannot lean on one; cf. Gradient-Blending, Wang,
Tran & Feiszli, CVPR 2020), modality dropout and per-modality augmentation (trainer/augment.py) on training batches,
an exponential moving average of the weights (validated and kept), early stopping on the validation loss (the sum
over heads; reported beside the mean validation score over heads: accuracy for class heads, mAP for multilabel
heads, max(0, 1 - MAE / train std) for regression heads, reported as val_accuracy, which is the plain mean accuracy
when every head is a class head): the kept epoch is the one of lowest validation loss from the epoch where the
cosine decay is two thirds done (the rate below 30 % of its peak), patience counts from that same epoch, and no stop
comes before it (EarlyStopping), then temperature scaling of the class heads and per-label F1-maximizing thresholds
of the multilabel heads, both on the validation split only (trainer/calibrate.py, edgefuse/heads.py). With
`train.balanced` each class head's calibrated logits then get minus the log of the training split's class frequencies
(balance_scores: every class scored as equally likely; off by default, and a one-line note names it when a head's
largest training class has datacheck.IMBALANCE_NOTE times its smallest's samples). With
`train.pretrain` each modality first trains alone with the same recipe and seed and the fused model's encoders start
from those models (pretrain_encoders; off by default: on UTD-MHAD it scored lower, BENCHMARKS.md "Real data"). Seeds
fix python, NumPy and torch, and the batch order comes from a seeded generator, so the same seed gives the same
metrics.

With a `captions:` section the caption head trains in the same loop (trainer/caption.py): its teacher-forced cross-
entropy over every reference of each sample, times `captions.weight`, joins the loss; the decoder (and the fusion's
context entry) learn at CAPTION_LR_SCALE times the rate, since a language takes more steps than a label; its
teacher-forced next-word accuracy on validation counts as one more head in the validation score, which then decides
the kept epoch (score, then loss) instead of the loss, since the loss has no caption term. The reported
`val_accuracy` stays the mean score over the other heads. Captions train in one process (no --nproc). Baselines
reuse the same encoders and settings: `only=m` masks every other modality always (and turns modality dropout off),
`drop=m` masks m always. The run folder gets checkpoint.pt, metrics.json and TensorBoard logs (tb/).

`--seeds N` trains N seeds into OUT/seed-<n>/ (train_seeds); `--folds K` cross-validates into OUT/fold-<n>/, each
fold of the train and val data (whole groups or recordings; data.py cv_folds) validating in turn (train_folds).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.errors import DataError
from edgefuse.heads import HEAD_KINDS
from edgefuse.spec import ScenarioSpec, SpecError, load_spec, parse_spec, spec_to_dict
from edgefuse.trainer.checkpoint import Normalization, save_run
from edgefuse.trainer.datacheck import class_counts, classes_not_trained, imbalance

torch = require("torch", "training")
F = torch.nn.functional

EVAL_BATCH = 256  # inference batch for validation/test passes (memory, not accuracy)
CAPTION_LR_SCALE = 5.0  # the caption decoder's learning rate relative to train.lr


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
    extra = getattr(ds, "extra", {})
    for head, names in spec.multilabel.items():
        y = extra.get(head)
        if y is None or y.shape != (n, len(names)):
            raise DataError(where, f"targets['{head}'] missing or not of shape ({n}, {len(names)})")
    for head in spec.regression:
        y = extra.get(head)
        if y is None or y.shape != (n,):
            raise DataError(where, f"targets['{head}'] missing or not of shape ({n},)")


def to_tensors(ds: Any) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Zero-copy torch views of a Dataset: (inputs, mask (N, M), targets of every head: class heads (N,) int64,
    multilabel heads (N, K) float32, regression heads (N,) float32 with NaN = unknown)."""
    inputs = {m: torch.from_numpy(np.ascontiguousarray(x)) for m, x in ds.inputs.items()}
    mask = torch.from_numpy(np.ascontiguousarray(ds.mask, dtype=np.float32))  # (N, M)
    targets = {h: torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)) for h, y in ds.targets.items()}
    for h, y in getattr(ds, "extra", {}).items():
        targets[h] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    return inputs, mask, targets


def target_stats(spec: ScenarioSpec, train_ds: Any) -> dict[str, tuple[float, float]]:
    """Per regression head, (mean, std) of its known training targets ((0, 1) when none is known)."""
    out = {}
    for h in spec.regression:
        y = train_ds.extra[h][~np.isnan(train_ds.extra[h])].astype(np.float64)
        out[h] = (float(y.mean()), float(y.std())) if len(y) else (0.0, 1.0)
    return out


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


def loss_of(
    logits: dict[str, Any], targets: dict[str, Any], idx: Any, smoothing: float = 0.0, model: Any = None
) -> Any:
    """Sum over heads of each head kind's loss (edgefuse/heads.py); without `model` every head is a class head."""
    net = unwrap(model)
    kinds = net.kinds if net is not None else {}
    total = 0
    for h, y in targets.items():
        kind = kinds.get(h, "class")
        scale = net.target_std[net.regression_heads.index(h)].to(y.device) if kind == "regression" else None
        total = total + HEAD_KINDS[kind].loss(logits[h], y[idx], smoothing, scale)
    return total


def unwrap(model: Any) -> Any:
    """The FusionModel inside DDP (`.module`) or rank 0's on-device validation adapter (`.model`)."""
    while model is not None and not hasattr(model, "kinds"):
        model = getattr(model, "module", None) or getattr(model, "model", None)
    return model


def schedule(cfg: Any, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, patience): the spec's, or sized from the data when unset (~3000 steps in [20, 120] epochs; patience
    a quarter of the budget, at least 5)."""
    epochs = cfg.epochs or int(np.clip(math.ceil(3000 / max(1, steps_per_epoch)), 20, 120))
    return epochs, cfg.patience or max(5, epochs // 4)


def decayed_epoch(cfg: Any, epochs: int) -> int:
    """The epoch by which the warm-up + cosine schedule is two thirds of the way through its decay (the learning
    rate below 30 % of its peak): early stopping keeps epochs and may end training from there on, not before."""
    return min(epochs, cfg.warmup_epochs + math.ceil((epochs - cfg.warmup_epochs) * 2 / 3))


class UnimodalHeads(torch.nn.Module):
    """One linear classifier per (modality, head) on the modality's embedding; training only, never exported."""

    def __init__(self, spec: ScenarioSpec, stats: dict[str, tuple[float, float]] | None = None):
        super().__init__()
        self.modalities, self.kinds = spec.modality_names, spec.head_kinds
        self.heads = list(self.kinds)
        # regression heads predict standardized values: (mean, std) of the training targets turn them into the unit
        self.stats = {h: stats.get(h, (0.0, 1.0)) if stats else (0.0, 1.0) for h in spec.regression}
        self.linear = torch.nn.ModuleDict(
            {
                f"{m}__{h}": torch.nn.Linear(spec.model.dim, HEAD_KINDS[k].size(spec, h))
                for m in self.modalities
                for h, k in self.kinds.items()
            }
        )

    def loss(self, tokens: Any, mask: Any, targets: dict[str, Any], idx: Any, smoothing: float) -> Any:
        """Mean over modalities of the summed per-head cross-entropy over the rows where the modality is present."""
        total, used = tokens.new_zeros(()), 0
        for i, m in enumerate(self.modalities):
            rows = mask[:, i] > 0.5  # (B,)
            if not bool(rows.any()):
                continue
            z = tokens[rows, i]  # (b, D)
            for h in self.heads:
                out, scale = self.linear[f"{m}__{h}"](z), None
                if h in self.stats:
                    mean, scale = self.stats[h]
                    out = out * scale + mean  # (b, 1) in the head's unit
                kind = HEAD_KINDS[self.kinds[h]]
                total = total + kind.loss(out, targets[h][idx][rows], smoothing, scale)
            used += 1
        return total / max(1, used)


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
    """(summed per-head loss, per-head score in [0, 1]) on a split: accuracy for class heads, mAP for multilabel
    heads, max(0, 1 - MAE / train std) for regression heads (edgefuse/heads.py)."""
    logits = predict_logits(model, inputs, mask)
    loss = float(loss_of(logits, targets, slice(None), 0.0, model))
    score, net = {}, unwrap(model)
    for h, y in targets.items():
        kind = HEAD_KINDS[net.kinds.get(h, "class")]
        std = float(net.target_std[net.regression_heads.index(h)]) if kind.name == "regression" else None
        score[h] = kind.score(y.numpy(), kind.activation(logits[h]).numpy(), std=std)
    return loss, score


class EarlyStopping:
    """Keeps the state with the best validation loss (`by="loss"`; or score, then loss: `by="score"`) among the
    epochs from `min_epochs` on, and stops `patience` epochs after that kept epoch: the epoch reported as best, the
    one restored and the one patience counts from are the same.

    `min_epochs` is where the learning rate has decayed (decayed_epoch): before it, a small validation split's
    accuracy and loss plateau and dip by chance while the rate is high, and keeping or stopping there keeps an
    under-trained model (measured on UTD-MHAD and DSADS, BENCHMARKS.md "Real data"). The loss is the default
    criterion: on a validation split of ~100 samples accuracy ties and jumps by whole samples, the loss does not."""

    def __init__(self, patience: int, min_epochs: int = 0, by: str = "loss"):
        self.patience, self.min_epochs, self.by = patience, min_epochs, by
        self.acc, self.loss, self.epoch, self.heads, self.state = -1.0, math.inf, 0, {}, None

    def better(self, acc: float, loss: float) -> bool:
        if self.by == "loss":
            return loss < self.loss
        return acc > self.acc or (acc == self.acc and loss < self.loss)

    def step(self, epoch: int, acc: float, loss: float, heads: dict[str, float], model: Any) -> bool:
        """Record one epoch's validation; True when training should stop."""
        if epoch >= self.min_epochs and (self.state is None or self.better(acc, loss)):
            self.acc, self.loss, self.epoch, self.heads = acc, loss, epoch, heads
            self.state = copy.deepcopy(model.state_dict())
        return epoch >= self.min_epochs and epoch - self.epoch >= self.patience


def make_optimizer(params: Any, cfg: Any, epochs: int, steps_per_epoch: int) -> tuple[Any, Any]:
    """AdamW with a per-step schedule: linear warm-up over `warmup_epochs`, then cosine decay to the last epoch."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup, total = cfg.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))


def make_ema(model: Any, cfg: Any, steps_per_epoch: int) -> Any:
    """An exponential moving average of the weights and buffers over ~`ema_epochs` epochs; None when off."""
    if cfg.ema_epochs <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    decay = 1.0 - 1.0 / max(2.0, cfg.ema_epochs * steps_per_epoch)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_epoch(
    model: Any, step: Any, data: tuple, batch_size: int, gens: tuple, recipe: dict, ddp: Any = None
) -> float:
    """One pass over the training split in a seeded order; returns the mean loss per sample.

    `step` = (optimizer, scheduler, unimodal heads or None, EMA or None); `recipe` holds p_drop, smoothing,
    aux_weight, augment strength and the modality kinds. With `ddp` (trainer/distributed.py) this rank trains on
    its share of each batch.
    """
    from edgefuse.trainer.augment import augment_batch
    from edgefuse.trainer.models import modality_dropout

    inputs, masks, targets = data
    opt, sched, uni, ema = step
    order_gen, drop_gen = gens
    model.train()
    total, count = 0.0, 0
    for idx in batches(len(masks), batch_size, order_gen, 2 if ddp is None else ddp.min_batch()):
        weight = 1.0
        if ddp is not None:
            idx, weight = ddp.shard(idx)
        mask = masks[idx]  # (B, M)
        if recipe["p_drop"] > 0:
            mask = modality_dropout(mask, recipe["p_drop"], drop_gen)
        x = augment_batch(
            {m: v[idx] for m, v in inputs.items()},
            recipe["kinds"],
            recipe["augment"],
            drop_gen,
            recipe.get("rotate"),
            recipe.get("heading"),
        )
        logits = model(x, mask)  # head -> (B, C)
        loss = loss_of(logits, targets, idx, recipe["smoothing"], model) + model.aux_loss()
        if recipe.get("captions") is not None:  # the caption head (trainer/caption.py), on this forward's context
            from edgefuse.trainer.caption import caption_loss

            refs, counts, weight_c = recipe["captions"]
            loss = loss + weight_c * caption_loss(model, refs, counts, idx)
        if uni is not None:
            loss = loss + recipe["aux_weight"] * uni.loss(model.last_tokens, mask, targets, idx, recipe["smoothing"])
        opt.zero_grad(set_to_none=True)
        (loss * weight).backward()
        if ddp is not None and uni is not None:
            ddp.average_grads(uni.parameters())  # DDP averages the model's gradients; these heads are outside it
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(getattr(model, "module", model))
        total, count = total + loss.item() * len(idx), count + len(idx)
    return total / count if ddp is None else ddp.mean(total / count)


def calibrate(model: Any, inputs: dict[str, Any], mask: Any, targets: dict[str, Any]) -> dict[str, Any]:
    """Fit each head's temperature on these (validation) samples and set it in the model; returns the temperatures
    and the validation ECE and NLL before and after."""
    from edgefuse.trainer.calibrate import expected_calibration_error, fit_temperature, nll

    model.temperature.fill_(1.0)
    logits = predict_logits(model, inputs, mask)
    out: dict[str, Any] = {"temperature": {}, "val_ece_before": {}, "val_ece_after": {}, "val_nll_before": {}}
    out["val_nll_after"] = {}
    for k, h in enumerate(model.class_heads):
        y = targets[h]
        t = fit_temperature(logits[h], y)
        model.temperature[k] = t
        out["temperature"][h] = t
        for tag, z in (("before", logits[h]), ("after", logits[h] / t)):
            out[f"val_ece_{tag}"][h] = expected_calibration_error(z.softmax(-1).numpy(), y.numpy())
            out[f"val_nll_{tag}"][h] = nll(z, y)
    return out


def tune_thresholds(model: Any, inputs: dict[str, Any], mask: Any, targets: dict[str, Any]) -> dict[str, Any]:
    """Per multilabel head, the F1-maximizing threshold of each label on these (validation) samples, set in the
    model (stored with its weights); returns head -> {label: threshold}."""
    from edgefuse.heads import tune_thresholds as tune

    logits = predict_logits(model, inputs, mask)
    out = {}
    for h, (a, b) in model.label_slices.items():
        thr = tune(targets[h].numpy(), logits[h].sigmoid().numpy())
        model.thresholds[a:b] = torch.tensor(thr)
        out[h] = dict(zip(model.spec_labels[h], thr, strict=True))
    return out


def imbalance_notes(spec: ScenarioSpec, train_ds: Any, labels_csv: Path) -> list[str]:
    """One note per class head whose training classes are imbalanced (datacheck.imbalance: the largest has
    IMBALANCE_NOTE times the samples of the smallest), for a run without `train.balanced`."""
    notes = []
    for head, counts in class_counts(spec, train_ds.targets).items():
        if (pair := imbalance(counts)) is not None:
            lo, hi, classes = *pair, spec.labels[head]
            notes.append(
                f"note: {labels_csv}: the 'train' classes of {head} range from {counts[lo]} samples "
                f"({classes[lo]}) to {counts[hi]} ({classes[hi]}); its scores follow these frequencies "
                "(train.balanced: true scores every class as equally likely)"
            )
    return notes


def balance_scores(model: Any, counts: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """`train.balanced`: set each class head's bias to minus the log of its training class frequencies (centred),
    so its scores treat every class as equally likely: post-hoc logit adjustment (Menon et al., "Long-tail learning
    via logit adjustment", ICLR 2021), which maximizes balanced accuracy where the calibrated scores follow the
    training frequencies. A class with no training sample counts as one. Returns head -> bias."""
    out = {}
    for h, (a, b) in model.class_slices.items():
        freq = np.maximum(counts[h], 1) / np.maximum(counts[h], 1).sum()
        bias = -np.log(freq)
        bias -= bias.mean()
        model.class_bias[a:b] = torch.as_tensor(bias, dtype=torch.float32)
        out[h] = [float(v) for v in bias]
    return out


def train_val_splits(ds: Any, spec: ScenarioSpec, data_dir: str | Path) -> tuple[Any, Any]:
    check_dataset(ds, spec, data_dir)
    train_ds, val_ds = ds.subset("train"), ds.subset("val")
    for split, part in (("train", train_ds), ("val", val_ds)):
        if len(part) < 2:
            raise DataError(data_dir, f"the '{split}' split has {len(part)} samples; training needs train and val")
    return train_ds, val_ds


def caption_setup(spec: ScenarioSpec, ds: Any, train_ds: Any, val_ds: Any, data_dir: str | Path, ddp: Any) -> dict:
    """The caption head's vocabulary (train split only) and (refs, counts) tensors per split; {} without captions."""
    if spec.captions is None:
        return {}
    from edgefuse.trainer.caption import CAPTIONS_FILE, Vocabulary, reference_ids

    if ds.captions is None:
        raise DataError(Path(data_dir) / CAPTIONS_FILE, "missing: the spec has a captions: section (docs/dataset.md)")
    if not any(train_ds.captions):
        raise DataError(Path(data_dir) / CAPTIONS_FILE, "no caption for any sample of the train split")
    if ddp is not None:
        raise DataError(data_dir, "captions train in one process; run without --nproc")
    vocab = Vocabulary.build(train_ds.captions, spec.captions.min_count)
    out: dict[str, Any] = {"vocab": vocab}
    for split, part in (("train", train_ds), ("val", val_ds)):
        refs, counts = reference_ids(part.captions, vocab, spec.captions.max_tokens)
        out[split] = (torch.from_numpy(refs), torch.from_numpy(counts))
    return out


PRETRAIN_ONE_PROCESS = "unimodal pre-training runs in one process: leave out --nproc, or set train.pretrain: false"


def pretrain_encoders(
    spec: ScenarioSpec, model: Any, ds: Any, data_dir: str | Path, out_dir: Path, masked: list[str]
) -> dict[str, float]:
    """Unimodal pre-training: train one model per present modality on it alone, with this recipe and seed (into
    out_dir/only-<m>), and start the fused model's encoder of each modality from that model's. Returns
    modality -> that unimodal model's validation accuracy. The fused training then fine-tunes everything."""
    from edgefuse.trainer.checkpoint import load_run

    plain = spec.model_copy(update={"train": spec.train.model_copy(update={"pretrain": False})})
    scores = {}
    for m in spec.modality_names:
        if m in masked:
            continue
        run = out_dir / f"only-{m}"
        metrics = train(plain, data_dir, run, only=m, progress=False, dataset=ds)
        model.encoders[m].load_state_dict(load_run(run)[1].encoders[m].state_dict())
        scores[m] = metrics["val_accuracy"]
    return scores


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
    from edgefuse.trainer.augment import heading_plan, rotation_plan
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
    if ddp is None or ddp.is_main:
        for head, missing in classes_not_trained(spec, train_ds.targets).items():
            print(
                f"warning: {Path(data_dir) / 'labels.csv'}: no 'train' sample of {head} {missing}: the model cannot "
                "learn to predict them",
                file=sys.stderr,
            )
        # once per dataset: not again for each baseline eval trains on the same data
        for note in [] if cfg.balanced or masked else imbalance_notes(spec, train_ds, Path(data_dir) / "labels.csv"):
            print(note, file=sys.stderr)
    if not spec.head_kinds:  # an anomaly-only spec: no classifier to train (trainer/anomaly.py)
        from edgefuse.trainer.anomaly import train_anomaly

        if ddp is not None:
            raise SpecError(spec.name, [("--nproc", "an anomaly-only spec trains in one process")])

        return {"anomaly": train_anomaly(spec, ds, out_dir, data_dir, progress=progress)}

    norm = series_normalization(spec, train_ds)
    captions = caption_setup(spec, ds, train_ds, val_ds, data_dir, ddp)
    model = build_model(spec, captions["vocab"].itos if captions else None)
    model.set_normalization(norm)
    stats = target_stats(spec, train_ds)
    model.set_targets_normalization(stats)
    for enc in model.encoders.values():
        if hasattr(enc, "spec_augment"):
            enc.spec_augment = spec.model.augment
    pretrained = {}  # modality -> validation accuracy of the unimodal model its encoder starts from
    if cfg.pretrain and only is None and len(spec.modalities) - len(masked) > 1:
        if ddp is not None:
            raise SpecError(spec.name, [("train.pretrain", PRETRAIN_ONE_PROCESS)])
        pretrained = pretrain_encoders(spec, model, ds, data_dir, Path(out_dir) / "pretrain", masked)
    keep = torch.tensor([0.0 if m in masked else 1.0 for m in spec.modality_names])  # (M,)
    x_tr, m_tr, y_tr = to_tensors(train_ds)
    x_va, m_va, y_va = to_tensors(val_ds)
    m_tr, m_va = m_tr * keep, m_va * keep  # baselines: the masked modalities are never seen
    recipe = {
        "p_drop": 0.0 if only is not None else spec.model.modality_dropout,
        "smoothing": cfg.label_smoothing,
        "aux_weight": spec.model.unimodal_aux,
        "augment": spec.model.augment,
        "kinds": {m: spec.modalities[m].kind for m in spec.modality_names},
        "rotate": rotation_plan(spec),  # series: x/y/z triplets turned at random (model.rotate_deg)
        "heading": heading_plan(spec),  # series: magnetometers turned about gravity (model.heading_deg)
        "captions": (captions["train"][0], captions["train"][1], spec.captions.weight) if captions else None,  # type: ignore[union-attr]
    }
    # one modality seen: its unimodal head would only repeat the fused one
    uni = UnimodalHeads(spec, stats) if spec.model.unimodal_aux > 0 and len(spec.modalities) - len(masked) > 1 else None
    gens = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)  # order, dropout+aug
    steps_per_epoch = len(batches(len(train_ds), cfg.batch_size, torch.Generator()))
    n_epochs, patience = schedule(cfg, steps_per_epoch)
    params = list(model.parameters()) + (list(uni.parameters()) if uni is not None else [])
    if captions:  # the caption decoder learns a language from few steps: CAPTION_LR_SCALE times the base rate
        words = [p for n, p in model.named_parameters() if n.startswith(("caption.", "fusion.heads.caption."))]
        ids = {id(p) for p in words}
        params = [{"params": [p for p in params if id(p) not in ids]}]
        params.append({"params": words, "lr": cfg.lr * CAPTION_LR_SCALE})
    opt, sched = make_optimizer(params, cfg, n_epochs, steps_per_epoch)
    ema = make_ema(model, cfg, steps_per_epoch)
    kept = ema.module if ema is not None else model  # the weights validated, kept and saved
    net, evaluated = (model, kept) if ddp is None else (ddp.wrap(model), ddp.evaluator(kept))
    if uni is not None and ddp is not None and ddp.cuda:
        uni.to(ddp.device)
    step, data = (opt, sched, uni, ema), (x_tr, m_tr, y_tr)
    if ddp is not None and not ddp.is_main:
        return ddp.follow(lambda: train_epoch(net, step, data, cfg.batch_size, gens, recipe, ddp), n_epochs)

    out = Path(out_dir)
    shutil.rmtree(out / "tb", ignore_errors=True)  # retraining into a run folder replaces its logs with the model
    writer = require("torch.utils.tensorboard", "TensorBoard logs").SummaryWriter(str(out / "tb"))
    # with a caption head the score (which holds its next-word accuracy) decides: the validation loss has no caption term
    stopper = EarlyStopping(patience, decayed_epoch(cfg, n_epochs), by="score" if captions else "loss")
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = require("tqdm").tqdm(range(1, n_epochs + 1), desc=f"train {spec.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        train_loss = train_epoch(net, step, data, cfg.batch_size, gens, recipe, ddp)
        val_loss, val_heads = validate(evaluated, x_va, m_va, y_va)
        val_acc = float(np.mean(list(val_heads.values())))
        if captions:  # the caption head joins early stopping with its teacher-forced next-word accuracy
            from edgefuse.trainer.caption import token_accuracy

            val_heads = {**val_heads, "caption": token_accuracy(evaluated, x_va, m_va, *captions["val"])}
        lr = opt.param_groups[0]["lr"]
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
        )
        if captions:
            history[-1]["val_caption_token_accuracy"] = val_heads["caption"]
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            writer.add_scalar(key.replace("_", "/", 1), history[-1][key], epoch)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        stop = stopper.step(epoch, float(np.mean(list(val_heads.values()))), val_loss, val_heads, kept)
        if stop if ddp is None else ddp.agree(stop):
            break
    writer.close()
    if ddp is not None:
        model.cpu()
        kept.cpu()
    if ema is not None:
        model = ema.module
    model.load_state_dict(stopper.state)
    model.last_tokens = None
    model.eval()
    calibration = calibrate(model, x_va, m_va, y_va) if cfg.calibrate and model.class_heads else {}
    thresholds = tune_thresholds(model, x_va, m_va, y_va)  # validation only: the test split never sets them
    # after the temperature, which is fitted on the validation split's own class frequencies
    class_bias = (
        balance_scores(model, class_counts(spec, train_ds.targets)) if cfg.balanced and model.class_heads else {}
    )

    metrics = {
        "scenario": spec.name,
        "fusion": spec.model.fusion.method,
        "only": only,
        "drop": drop,
        "masked": masked,
        "seed": cfg.seed,
        "epochs": n_epochs,
        "patience": patience,
        "epochs_run": len(history),
        "stopped_early": len(history) < n_epochs,
        "best_epoch": stopper.epoch,
        "val_accuracy": float(np.mean([a for h, a in stopper.heads.items() if h in spec.labels])),
        "val_loss": stopper.loss,
        "val_heads": stopper.heads,
        "params": count_params(model),
        "n_train": len(train_ds),
        "n_val": len(val_ds),
        "train_time_s": time.perf_counter() - t0,
        **calibration,
        **({"class_bias": class_bias} if class_bias else {}),
        **({"thresholds": thresholds} if thresholds else {}),
        **({"pretrain_val_accuracy": pretrained} if pretrained else {}),
        **({"target_stats": {h: {"mean": m, "std": s} for h, (m, s) in stats.items()}} if stats else {}),
        "history": history,
    }
    if captions:
        metrics["caption_vocab_size"] = len(captions["vocab"])
    if ddp is not None:
        metrics["world_size"] = ddp.world
        ddp.close()
    save_run(out, spec, model, norm, metrics, data_dir=data_dir, n_samples=len(ds), masked=masked)
    if spec.anomaly is not None and not masked:  # the anomaly model trains after the classifier, same run folder
        from edgefuse.trainer.anomaly import train_anomaly

        metrics["anomaly"] = train_anomaly(spec, ds, out, data_dir, progress=progress)
    return metrics


def seed_dirs(out_dir: str | Path) -> list[Path]:
    """The per-seed run folders (OUT/seed-<n>) of a `train --seeds` run, in seed order."""
    found = [p for p in Path(out_dir).glob("seed-*") if (p / "checkpoint.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]) if p.name.split("-", 1)[1].isdigit() else 0)


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def train_seeds(spec: ScenarioSpec, data_dir: str | Path, out_dir: str | Path, seeds: int, **kw: Any) -> dict[str, Any]:
    """Train `seeds` runs (seeds s, s+1, ...; s = kw seed or the spec's) into OUT/seed-<n>/; writes OUT/seeds.json."""
    import json

    from edgefuse.trainer.data import load_data

    first = kw.pop("seed", None)
    first = spec.train.seed if first is None else first
    ds = kw.pop("dataset", None) or load_data(spec, data_dir, progress=kw.get("progress", True))
    runs = [
        train(spec, data_dir, Path(out_dir) / f"seed-{s}", seed=s, dataset=ds, **kw)
        for s in range(first, first + seeds)
    ]
    summary = {
        "seeds": [m["seed"] for m in runs],
        "val_accuracy": mean_std([m["val_accuracy"] for m in runs]),
        "train_time_s": mean_std([m["train_time_s"] for m in runs]),
        "runs": [{k: m[k] for k in ("seed", "val_accuracy", "best_epoch", "epochs_run", "train_time_s")} for m in runs],
    }
    Path(out_dir, "seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train_folds(spec: ScenarioSpec, data_dir: str | Path, out_dir: str | Path, folds: int, **kw: Any) -> dict[str, Any]:
    """Cross-validate: train once per fold of the train and val samples (trainer/data.py cv_folds: whole groups, or
    recordings, held out together), that fold validating and the rest training, into OUT/fold-<n>/; the test split
    is untouched. Writes OUT/folds.json: each fold's validation samples, units and accuracy, and their mean +- std."""
    import dataclasses
    import json

    from edgefuse.trainer.data import cv_folds, fold_units, load_data

    if folds < 2:
        raise DataError("--folds", f"{folds}: cross-validation needs at least 2 folds")
    ds = kw.pop("dataset", None) or load_data(spec, data_dir, progress=kw.get("progress", True))
    unit, masks = cv_folds(ds, folds)
    names = fold_units(ds)[1]  # which group or recording each sample is (None: samples)
    if len(masks) < 2:
        raise DataError(data_dir, f"--folds needs at least 2 {unit}s outside the test split, found {len(masks)}")
    runs = []
    for n, val in enumerate(masks, start=1):
        split = np.where(ds.split == "test", "test", np.where(val, "val", "train"))
        m = train(spec, data_dir, Path(out_dir) / f"fold-{n}", dataset=dataclasses.replace(ds, split=split), **kw)
        entry = {
            "fold": n,
            "val_samples": int(val.sum()),
            "val_accuracy": m["val_accuracy"],
            "best_epoch": m["best_epoch"],
        }
        if names is not None:  # which groups or recordings validated
            entry[f"val_{unit}s"] = sorted({str(x) for x in names[val]})
        runs.append(entry)
    summary = {"unit": unit, "val_accuracy": mean_std([r["val_accuracy"] for r in runs]), "folds": runs}
    Path(out_dir, "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def cli_train(args: argparse.Namespace) -> int:
    """`edgefuse train`: train, then print where the run went and its validation accuracy."""
    if getattr(args, "nproc", 1) > 1 and getattr(args, "folds", None):
        raise DataError("--folds", "cross-validation runs in one process; not with --nproc")
    if getattr(args, "nproc", 1) > 1:
        from edgefuse.trainer.distributed import launch

        return launch(args)  # torchrun runs this verb again in each process, without --nproc
    spec = load_spec(args.config)
    if getattr(args, "folds", None):
        kw = {"epochs": args.epochs, "fusion": args.fusion, "only": args.only, "drop": getattr(args, "drop", None)}
        s = train_folds(spec, args.data, args.out, args.folds, seed=args.seed, **kw)
        for r in s["folds"]:
            names = r.get(f"val_{s['unit']}s", [])
            who = f", {len(names)} {s['unit']}(s): {', '.join(names[:5])}{', ...' * (len(names) > 5)}" if names else ""
            print(
                f"  fold {r['fold']}: validates on {r['val_samples']:,} samples{who}; val accuracy {r['val_accuracy']:.3f}"
            )
        va = s["val_accuracy"]
        print(
            f"{args.out}: {len(s['folds'])} folds by {s['unit']} in fold-<n>/, cross-validated accuracy "
            f"{va['mean']:.3f} +- {va['std']:.3f}"
        )
        return 0
    if getattr(args, "seeds", None):
        kw = {"epochs": args.epochs, "fusion": args.fusion, "only": args.only, "drop": getattr(args, "drop", None)}
        s = train_seeds(spec, args.data, args.out, args.seeds, seed=args.seed, **kw)
        va = s["val_accuracy"]
        print(f"{args.out}: seeds {s['seeds']} in seed-<n>/, val accuracy {va['mean']:.3f} +- {va['std']:.3f}")
        return 0
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
    if "anomaly" in m:
        a = m["anomaly"]
        print(
            f"{args.out}: anomaly model, {a['params']:,} params, val error {a['val_error']:.3f}, fused threshold "
            f"{a['thresholds']['fused']:.2f} (q {a['thresholds']['quantile']}), {a['train_time_s']:.1f} s"
        )
        if "fusion" not in m:
            return 0
    print(
        f"{args.out}: {m['fusion']} fusion, {m['params']:,} params, val accuracy {m['val_accuracy']:.3f} "
        f"(best epoch {m['best_epoch']} of {m['epochs_run']} run), {m['train_time_s']:.1f} s"
    )
    return 0
