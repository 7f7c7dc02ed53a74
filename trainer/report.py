"""Evaluation reports for people: PATH.json, PATH.md beside it and one confusion-matrix PNG per head."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def confusion_png(cm: list[list[int]], classes: list[str], title: str, path: str | Path) -> Path:
    """Plot a confusion matrix (rows = true, columns = predicted) with its counts, to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the edge box or in CI
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(cm)
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(fmt(v) for v in r) + " |" for r in rows),
        "",
    ]


def _pts(delta: float) -> str:
    return f"{100 * delta:+.1f}"


def _recording_lines(r: dict[str, Any]) -> list[str]:
    """With windows cut from long recordings: the scores per recording (all its windows' log-probabilities summed)."""
    rec = r.get("recordings")
    if rec is None:
        return []
    return [
        f"Per recording ({rec['n']} recordings, each decided by all its windows' log-probabilities summed): accuracy "
        f"{rec['accuracy']:.3f}, macro F1 {rec['macro_f1']:.3f}.",
        "",
    ]


def _group_lines(r: dict[str, Any]) -> list[str]:
    """With a `group` column in labels.csv: accuracy over the split's groups, the worst named."""
    g = r.get("groups")
    if g is None:
        return []
    acc = sorted(v["accuracy"] for v in g["per_group"].values())
    worst = g["per_group"][g["worst"]]
    how = "whole groups" if r["ci95"]["unit"] == "group" else f"{r['ci95']['unit']}s: one group"
    return [
        f"Per group ({g['n']} group{'s' * (g['n'] != 1)}; the 95 % intervals resample {how}): accuracy from "
        f"{acc[0]:.3f} (group '{g['worst']}', {worst['n']} samples) to {acc[-1]:.3f}, median "
        f"{statistics.median(acc):.3f}.",
        "",
    ]


def render_markdown(r: dict[str, Any], pngs: dict[str, str]) -> str:
    """The report as markdown; `pngs` maps head -> confusion PNG file name (relative to the .md)."""
    if not r["heads"]:  # no class head: the multilabel and regression sections only
        lat = r["latency_ms"]
        lines = [
            f"# Evaluation: {r['scenario']} ({r['fusion']} fusion)",
            "",
            f"Run `{r['run']}`, data `{r['data']}`, split `{r['split']}` ({r['n_test']} samples); {r['params']:,} "
            f"params; latency p50 / p99 {lat['p50']:.2f} / {lat['p99']:.2f} ms (batch 1, {lat['threads']} threads).",
            "",
        ]
        return "\n".join(lines + other_heads_markdown(r) + _anomaly_lines(r) + _caption_lines(r))
    lat = r["latency_ms"]
    lines = [
        f"# Evaluation: {r['scenario']} ({r['fusion']} fusion)",
        "",
        f"Run `{r['run']}`, data `{r['data']}`, split `{r['split']}` ({r['n_test']} samples).",
        "",
        *_table(
            ["accuracy (mean over heads)", "joint accuracy (all heads)", "macro F1", "params", "latency p50 / p99"],
            [
                [
                    r["accuracy"],
                    r["joint_accuracy"],
                    r["macro_f1"],
                    f"{r['params']:,}",
                    f"{lat['p50']:.2f} / {lat['p99']:.2f} ms (batch 1, {lat['threads']} threads)",
                ]
            ],
        ),
        *_recording_lines(r),
        *_group_lines(r),
        "## Modalities",
        "",
        "Ablation masks the modality at test time; *without* is a model trained without it; *only* is one trained "
        "on it alone.",
        "",
    ]
    rows = []
    for m, abl in r["ablation"].items():
        wo, un = r["without"].get(m), r["unimodal"].get(m)
        gap = "" if wo is None else _pts(abl - wo)
        rows.append([m, abl, "" if wo is None else wo, gap, "" if un is None else un])
    lines += _table(["modality", "ablation", "without", "ablation - without (pts)", "only"], rows)
    lines += ["## Robustness (noise on one modality)", ""]
    levels = [p["noise"] for p in next(iter(r["robustness"].values()))]
    lines += _table(
        ["modality", *(f"noise {lv:g}" for lv in levels)],
        [[m, *(p["accuracy"] for p in pts)] for m, pts in r["robustness"].items()],
    )
    for head, h in r["heads"].items():
        lines += [f"## Head `{head}`: accuracy {h['accuracy']:.3f}, macro F1 {h['macro_f1']:.3f}", ""]
        lines += _table(
            ["class", "precision", "recall", "F1", "support"],
            [[c, s["precision"], s["recall"], s["f1"], s["support"]] for c, s in h["per_class"].items()],
        )
        if head in pngs:
            lines += [f"![confusion matrix {head}]({pngs[head]})", ""]
    return "\n".join(lines + other_heads_markdown(r) + _anomaly_lines(r) + _caption_lines(r))


def _caption_lines(r: dict[str, Any]) -> list[str]:
    """The caption head's section (BLEU-4, ROUGE-L, examples), when the run has one."""
    if not r.get("captions"):
        return []
    from edgefuse.trainer.caption import caption_markdown

    return caption_markdown(r["captions"])


def _anomaly_lines(r: dict[str, Any]) -> list[str]:
    """The anomaly model's section (ROC-AUC per injected fault kind), when the run has one."""
    if "anomaly" not in r:
        return []
    from edgefuse.trainer.anomaly import anomaly_markdown

    return anomaly_markdown(r["anomaly"])


def other_heads_markdown(r: dict[str, Any]) -> list[str]:
    """The multilabel heads' per-label table (AP, threshold tuned on validation, precision, recall, F1) and the
    regression heads' MAE / RMSE."""
    lines: list[str] = []
    for head, h in r.get("multilabel", {}).items():
        lines += [
            f"## Multilabel head `{head}`: mAP {h['mAP']:.3f}, macro F1 {h['macro_f1']:.3f}, "
            f"exact match {h['exact_match']:.3f}",
            "",
            "Thresholds were tuned on the validation split (max F1 per label); F1 here is on the evaluated split.",
            "",
        ]
        lines += _table(
            ["label", "AP", "threshold", "precision", "recall", "F1", "support"],
            [
                [
                    lb,
                    "n/a" if s["ap"] is None else s["ap"],
                    s["threshold"],
                    s["precision"],
                    s["recall"],
                    s["f1"],
                    s["support"],
                ]
                for lb, s in h["per_label"].items()
            ],
        )
    rows = [
        [head, h["unit"] or "-", h["mae"], h["rmse"], h.get("mae_predicting_train_mean", ""), h["n"]]
        for head, h in r.get("regression", {}).items()
        if h["n"]
    ]
    if rows:
        lines += ["## Regression heads", ""]
        lines += _table(["head", "unit", "MAE", "RMSE", "MAE of predicting the training mean", "samples"], rows)
    return lines


def write_report(r: dict[str, Any], json_path: str | Path) -> list[Path]:
    """Write the JSON report, its markdown twin (same stem, .md) and confusion PNGs; returns the paths written."""
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2) + "\n")
    written = [path]
    pngs = {}
    for head, h in r["heads"].items():
        png = path.with_name(f"{path.stem}_confusion_{head}.png")
        written.append(confusion_png(h["confusion"], h["classes"], f"{r['scenario']}: {head}", png))
        pngs[head] = png.name
    md = path.with_suffix(".md")
    md.write_text(render_markdown(r, pngs) + "\n")
    written.append(md)
    return written
