"""`edgefuse check-data`: load a dataset exactly as training will and summarise it, before any training starts.

The loader's own checks run (every bad file is one DataError line naming it) and its notes print as in training
(validation held out, padded clips, held cells, windows outside every labelled range). Then one table per head:
samples per class and split; which modalities are present; groups and whether any sits in two splits; and the
warnings training would give (a class never in train, a head whose largest train class has IMBALANCE_NOTE times its
smallest's samples). It imports no torch (only what loading needs), so it answers in seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.spec import ScenarioSpec, load_spec

IMBALANCE_NOTE = 3.0  # largest / smallest train class at which training (trainer/train.py) and this check note it
SPLIT_ORDER = ("train", "val", "test")


def class_counts(spec: ScenarioSpec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Class head -> (n_classes,) samples per class of `targets` (head -> (N,) class ids), in the spec's order."""
    return {h: np.bincount(np.asarray(targets[h], dtype=np.int64), minlength=len(c)) for h, c in spec.labels.items()}


def classes_not_trained(spec: ScenarioSpec, train_targets: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Class head -> its classes with no sample in `train_targets` (a model never shown them cannot predict them;
    e.g. a split by person where only the test people did an activity). Heads missing none are left out."""
    out = {}
    for head, seen in class_counts(spec, train_targets).items():
        missing = [c for c, k in zip(spec.labels[head], seen, strict=True) if k == 0]
        if missing:
            out[head] = missing
    return out


def imbalance(counts: np.ndarray) -> tuple[int, int] | None:
    """(smallest, largest) class of `counts` among those with samples, when the largest has IMBALANCE_NOTE times the
    smallest's samples (classes with none are warned about apart); None otherwise."""
    seen = np.flatnonzero(counts)
    if len(seen) < 2:
        return None
    lo, hi = seen[np.argmin(counts[seen])], seen[np.argmax(counts[seen])]
    return (int(lo), int(hi)) if counts[hi] >= IMBALANCE_NOTE * counts[lo] else None


def summary(spec: ScenarioSpec, ds: Any) -> dict[str, Any]:
    """Counts of a loaded Dataset: per split, per modality present, per class and split for each class head,
    positives per label for multilabel heads, known targets for regression heads, groups, and warnings."""
    splits = [s for s in SPLIT_ORDER if (ds.split == s).any()]
    out: dict[str, Any] = {
        "scenario": spec.name,
        "samples": len(ds),
        "splits": {s: int((ds.split == s).sum()) for s in splits},
        "modalities": {m: int(ds.mask[:, j].sum()) for j, m in enumerate(spec.modality_names)},
        "heads": {},
        "warnings": [],
    }
    if any("#" in i for i in ds.ids):  # windows cut from recordings (train.window_hop_s)
        from edgefuse.trainer.data import recording_name

        per = np.unique([recording_name(i) for i in ds.ids], return_counts=True)[1]  # windows per recording
        out["recordings"] = len(per)
        out["windows_per_recording"] = {"min": int(per.min()), "median": float(np.median(per)), "max": int(per.max())}
    not_trained = classes_not_trained(spec, {h: y[ds.split == "train"] for h, y in ds.targets.items()})
    per_split = {sp: class_counts(spec, {h: y[ds.split == sp] for h, y in ds.targets.items()}) for sp in SPLIT_ORDER}
    for head, classes in spec.labels.items():
        table = {c: {sp: int(per_split[sp][head][k]) for sp in splits} for k, c in enumerate(classes)}
        out["heads"][head] = {"kind": "labels", "classes": table}
        train = per_split["train"][head]
        if missing := not_trained.get(head):
            out["warnings"].append(f"{head}: no 'train' sample of {missing}: the model cannot learn to predict them")
        if (pair := imbalance(train)) is not None:
            lo, hi = pair
            out["warnings"].append(
                f"{head}: 'train' classes range from {train[lo]} samples ({classes[lo]}) to {train[hi]} "
                f"({classes[hi]}); train.balanced: true scores every class as equally likely"
            )
    for head, names in spec.multilabel.items():
        y = np.asarray(ds.extra[head])  # (N, K)
        table = {c: {s: int(y[ds.split == s, k].sum()) for s in splits} for k, c in enumerate(names)}
        out["heads"][head] = {"kind": "multilabel", "positives": table}
    for head in spec.regression:
        y = np.asarray(ds.extra[head], dtype=float)
        out["heads"][head] = {
            "kind": "regression",
            "known": {s: int(np.isfinite(y[ds.split == s]).sum()) for s in splits},
            "range": [float(np.nanmin(y)), float(np.nanmax(y))] if np.isfinite(y).any() else None,
        }
    if getattr(ds, "group", None) is not None:
        g = ds.group
        shared = sorted(str(x) for x in np.unique(g) if len(set(ds.split[g == x])) > 1)
        out["groups"] = {
            "n": int(len(np.unique(g))),
            "per_split": {s: int(len(np.unique(g[ds.split == s]))) for s in splits},
            "in_two_splits": shared,
        }
    return out


def render(s: dict[str, Any], where: str) -> str:
    """The summary as plain text, one table per head."""
    splits = list(s["splits"])
    per = ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())
    lines = [f"{where}: {s['samples']:,} samples ({per})"]
    if "recordings" in s:
        w = s["windows_per_recording"]
        lines[0] += (
            f", windows of {s['recordings']:,} recordings ({w['min']:,} to {w['max']:,} each, median {w['median']:g})"
        )
    present = "; ".join(
        f"{m} {n:,}" + (f" ({s['samples'] - n:,} missing)" if n < s["samples"] else "")
        for m, n in s["modalities"].items()
    )
    lines.append(f"modalities present: {present}")
    for head, h in s["heads"].items():
        if h["kind"] == "regression":
            known = ", ".join(f"{k} {v:,}" for k, v in h["known"].items())
            span = f"; from {h['range'][0]:g} to {h['range'][1]:g}" if h["range"] else ""
            lines += ["", f"{head} (regression): known targets {known}{span}"]
            continue
        rows = h["classes"] if h["kind"] == "labels" else h["positives"]
        width = max(len(c) for c in rows) + 2
        lines += ["", f"{head} ({h['kind']}{', positives' if h['kind'] == 'multilabel' else ''})"]
        lines.append(" " * width + "".join(f"{sp:>8}" for sp in splits))
        lines += [c.ljust(width) + "".join(f"{row.get(sp, 0):>8,}" for sp in splits) for c, row in rows.items()]
    if "groups" in s:
        g = s["groups"]
        per = ", ".join(f"{k} {v}" for k, v in g["per_split"].items())
        shared = ", ".join(g["in_two_splits"][:5]) + (", ..." if len(g["in_two_splits"]) > 5 else "")
        lines += ["", f"groups: {g['n']} ({per}); in two splits: {shared or 'none'}"]
    lines += [""] + [f"warning: {w}" for w in s["warnings"]] if s["warnings"] else []
    return "\n".join(lines)


def cli_check_data(args: argparse.Namespace) -> int:
    from edgefuse.trainer.data import load_data

    spec = load_spec(args.config)
    ds = load_data(spec, args.data, progress=False)
    s = summary(spec, ds)
    print(render(s, str(args.data)))
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0
