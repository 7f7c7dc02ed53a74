"""The head kinds: what a model head predicts, how it is trained and scored, and what the runtime publishes.

One registry (HEAD_KINDS) is the only list of head kinds; a spec declares heads in one section per kind:

  class       `labels:`      one label of several; softmax over the classes (temperature-scaled); accuracy
  multilabel  `multilabel:`  any subset of the labels; one sigmoid per label, per-label thresholds tuned on the
                             validation split (max F1); mAP and per-label F1
  regression  `regression:`  one number in the head's unit; the model learns standardized targets (train-split
                             mean/std kept in the model, so its output is in the unit); MAE and RMSE

Shared by trainer, deploy and runtime: nothing here imports torch or scikit-learn at module level (the runtime has
neither); the training-side methods import them when called.

Calibration: class heads get a softmax temperature fitted on the validation split (trainer/calibrate.py); multilabel
heads get no Platt/temperature scaling: their per-label thresholds, tuned on the same split, are what turns a
probability into a decision. Regression heads publish the value only (no interval).

A per-head validation score in [0, 1] (higher is better) lets early stopping compare epochs over mixed heads:
accuracy (class), mAP (multilabel), max(0, 1 - MAE / std) with std the training targets' standard deviation
(regression: 0 = no better than predicting the mean's typical error, 1 = exact).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class HeadKind:
    """One kind of head. `section` is its spec section, `output_prefix` names its ONNX output ("<prefix><head>")."""

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""
    output_prefix: ClassVar[str] = "scores_"
    meaning: ClassVar[str] = ""

    def labels(self, spec: Any, head: str) -> list[str]:
        """The names of the head's outputs, in output order."""
        raise NotImplementedError

    def size(self, spec: Any, head: str) -> int:
        """Width of the head's output layer."""
        return len(self.labels(spec, head))

    # -- training side (torch, scikit-learn imported when called) --------------------------------------------------
    def activation(self, z: Any) -> Any:
        """The model's head output (B, K) -> what the bundle outputs (probabilities, or values)."""
        return z

    def loss(self, z: Any, y: Any, smoothing: float = 0.0, scale: Any = None) -> Any:
        """Training loss of one head's output `z` against targets `y` (a torch scalar)."""
        raise NotImplementedError

    def metrics(self, y: np.ndarray, p: np.ndarray, labels: list[str], **kw: Any) -> dict[str, Any]:
        """Evaluation metrics of activated outputs `p` against targets `y`."""
        raise NotImplementedError

    def score(self, y: np.ndarray, p: np.ndarray, **kw: Any) -> float:
        """A validation score in [0, 1], higher is better (early stopping)."""
        raise NotImplementedError


class ClassKind(HeadKind):
    name, section = "class", "labels"
    meaning = "softmax probabilities over `labels`, in that order; each row sums to 1"

    def labels(self, spec: Any, head: str) -> list[str]:
        return list(spec.labels[head])

    def activation(self, z: Any) -> Any:
        return z.softmax(dim=1)

    def loss(self, z: Any, y: Any, smoothing: float = 0.0, scale: Any = None) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(z, y, label_smoothing=smoothing)

    def metrics(self, y: np.ndarray, p: np.ndarray, labels: list[str], **kw: Any) -> dict[str, Any]:
        """Accuracy and macro F1 (scikit-learn); the eval report adds per-class scores and the confusion matrix."""
        from sklearn.metrics import f1_score

        pred = p.argmax(1)
        return {"accuracy": self.score(y, p), "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}

    def score(self, y: np.ndarray, p: np.ndarray, **kw: Any) -> float:
        return float((p.argmax(1) == y).mean()) if len(y) else 0.0


class MultilabelKind(HeadKind):
    name, section = "multilabel", "multilabel"
    meaning = "sigmoid probabilities, one per label in `labels` order; a label is on when >= its entry of `thresholds`"

    def labels(self, spec: Any, head: str) -> list[str]:
        return list(spec.multilabel[head])

    def activation(self, z: Any) -> Any:
        return z.sigmoid()

    def loss(self, z: Any, y: Any, smoothing: float = 0.0, scale: Any = None) -> Any:
        import torch.nn.functional as F

        target = y * (1 - smoothing) + 0.5 * smoothing  # (B, K) label smoothing towards 0.5
        return F.binary_cross_entropy_with_logits(z, target)

    def metrics(self, y: np.ndarray, p: np.ndarray, labels: list[str], **kw: Any) -> dict[str, Any]:
        """mAP (mean over labels with a positive of scikit-learn's average precision), per-label AP, and
        precision/recall/F1 at `thresholds` (kw; 0.5 when not given)."""
        from sklearn.metrics import f1_score, precision_score, recall_score

        thresholds = np.asarray(kw.get("thresholds") or [0.5] * len(labels))
        pred = p >= thresholds[None, :]  # (N, K)
        aps = average_precisions(y, p)
        per_label = {}
        for k, name in enumerate(labels):
            yt, yp = y[:, k].astype(int), pred[:, k].astype(int)
            per_label[name] = {
                "ap": aps[k],
                "threshold": float(thresholds[k]),
                "precision": float(precision_score(yt, yp, zero_division=0)),
                "recall": float(recall_score(yt, yp, zero_division=0)),
                "f1": float(f1_score(yt, yp, zero_division=0)),
                "support": int(yt.sum()),
            }
        used = [a for a in aps if a is not None]
        return {
            "mAP": float(np.mean(used)) if used else 0.0,
            "macro_f1": float(np.mean([v["f1"] for v in per_label.values()])),
            "exact_match": float((pred == (y > 0.5)).all(axis=1).mean()) if len(y) else 0.0,
            "per_label": per_label,
        }

    def score(self, y: np.ndarray, p: np.ndarray, **kw: Any) -> float:
        used = [a for a in average_precisions(y, p) if a is not None]
        return float(np.mean(used)) if used else 0.0


class RegressionKind(HeadKind):
    name, section, output_prefix = "regression", "regression", "value_"
    meaning = "the predicted value in `unit`, shape (B, 1)"

    def labels(self, spec: Any, head: str) -> list[str]:
        return [head]

    def loss(self, z: Any, y: Any, smoothing: float = 0.0, scale: Any = None) -> Any:
        """Smooth L1 on standardized values ((z - y) / train std), over the samples whose target is known."""
        import torch.nn.functional as F

        known = ~y.isnan()  # (B,)
        if not bool(known.any()):
            return z.sum() * 0.0  # keeps the graph (DDP) without a contribution
        return F.smooth_l1_loss(z[known, 0] / scale, y[known] / scale)

    def metrics(self, y: np.ndarray, p: np.ndarray, labels: list[str], **kw: Any) -> dict[str, Any]:
        """MAE and RMSE (scikit-learn) over the samples with a known target, in the head's unit."""
        from sklearn.metrics import mean_absolute_error, root_mean_squared_error

        known = ~np.isnan(y)
        if not known.any():
            return {"mae": None, "rmse": None, "n": 0, "unit": kw.get("unit", "")}
        yt, yp = y[known], p.reshape(len(p), -1)[known, 0]
        mean_only = float(np.abs(yt - kw.get("train_mean", yt.mean())).mean())
        return {
            "mae": float(mean_absolute_error(yt, yp)),
            "rmse": float(root_mean_squared_error(yt, yp)),
            "mae_predicting_train_mean": mean_only,
            "n": int(known.sum()),
            "unit": kw.get("unit", ""),
        }

    def score(self, y: np.ndarray, p: np.ndarray, **kw: Any) -> float:
        known = ~np.isnan(y)
        if not known.any():
            return 0.0
        mae = float(np.abs(y[known] - p.reshape(len(p), -1)[known, 0]).mean())
        return max(0.0, 1.0 - mae / float(kw.get("std") or 1.0))


HEAD_KINDS: dict[str, HeadKind] = {}


def register_head_kind(kind: HeadKind) -> HeadKind:
    """Add a head kind to the registry under its name."""
    HEAD_KINDS[kind.name] = kind
    return kind


for _kind in (ClassKind(), MultilabelKind(), RegressionKind()):
    register_head_kind(_kind)


def average_precisions(y: np.ndarray, p: np.ndarray) -> list[float | None]:
    """Per label (column), scikit-learn's average precision; None for a label without a positive sample."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y) > 0.5
    return [float(average_precision_score(y[:, k], p[:, k])) if y[:, k].any() else None for k in range(y.shape[1])]


def tune_thresholds(y: np.ndarray, p: np.ndarray) -> list[float]:
    """Per label, the probability threshold that maximizes F1 on (y, p) (the validation split); 0.5 for a label
    without positives. A label is on when its probability is >= the threshold."""
    from sklearn.metrics import precision_recall_curve

    out = []
    for k in range(y.shape[1]):
        yk = y[:, k] > 0.5
        if not yk.any() or yk.all():
            out.append(0.5)
            continue
        precision, recall, thr = precision_recall_curve(yk, p[:, k])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        out.append(float(thr[int(np.argmax(f1))]))
    return out


# -- runtime post-processing (NumPy only) -----------------------------------------------------------------------------


def labels_on(probs: np.ndarray, labels: list[str], thresholds: list[float]) -> list[str]:
    """The labels whose probability is at or above their threshold, in label order."""
    return [lb for lb, p, t in zip(labels, probs.tolist(), thresholds, strict=True) if p >= t]


def clip_value(value: float, lo: float | None, hi: float | None) -> float:
    """A regression output clipped to the head's declared range (either end optional)."""
    if lo is not None:
        value = max(lo, value)
    if hi is not None:
        value = min(hi, value)
    return value
