"""Event captions: DATA/captions.csv, the word tokenizer and vocabulary, training targets and the caption metrics.

    DATA/captions.csv     sample,caption    several rows (references) per sample allowed; samples may have none

Tokenizer (documented, and the same rule the manifest states): lower-case, words = runs of [a-z0-9']; a caption is
its words joined by single spaces. The vocabulary is built from the train split's references only: <pad> <bos> <eos>
<unk>, then every word seen at least `captions.min_count` times, most frequent first (ties alphabetically). It is
stored in the checkpoint and the bundle manifest, so decoding never needs the dataset.

Metrics, on the decoded captions against all references of each sample (kept libraries, not hand-written):
  BLEU-4   sacrebleu.corpus_bleu (13a tokenization, lower-cased), reported in [0, 1] (sacrebleu's value / 100)
  ROUGE-L  rouge_score's RougeScorer("rougeL").score_multi: F-measure against the best-matching reference, mean
           over samples
CIDEr is not reported: its reference implementation (pycocoevalcap) ships as a ~100 MB wheel of Java jars for
tokenizers and other metrics we do not use, plus pycocotools; no smaller maintained package implements it. The
report scores the best constant caption (the most frequent reference) beside the model's, for scale.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import DataError

CAPTIONS_FILE = "captions.csv"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
TOKENIZER_RULE = "lower-case; words = runs of [a-z0-9']; the caption is its words joined by single spaces"
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The tokenizer: lower-cased runs of [a-z0-9']."""
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """A caption as the metrics and the vocabulary see it: its words joined by single spaces."""
    return " ".join(words(text))


class Vocabulary:
    """Word <-> id; ids 0-3 are <pad> <bos> <eos> <unk>."""

    def __init__(self, itos: list[str]):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a caption vocabulary starts with {list(SPECIALS)}, got {itos[:4]}")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, captions: list[list[str]], min_count: int = 1) -> Vocabulary:
        """From the references of the training samples: words seen >= min_count times, most frequent first."""
        counts = Counter(w for refs in captions for ref in refs for w in words(ref))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """<bos> word ids (at most max_tokens) <eos>."""
        ids = [self.stoi.get(w, UNK) for w in words(text)[:max_tokens]]
        return [BOS, *ids, EOS]

    def decode(self, ids: list[int]) -> str:
        """Word ids (no specials expected; any are dropped) -> the caption text."""
        return " ".join(self.itos[i] for i in ids if i >= len(SPECIALS))


# ---------------------------------------------------------------------------------------------------------------------
# captions.csv


def read_captions(root: str | Path, ids: list[str]) -> list[list[str]] | None:
    """References per sample, in the order of `ids` (labels.csv's); None when the folder has no captions.csv.

    DataError (one line: file, line, problem) on an unreadable file, a missing column, a row with too few values, a
    sample not in labels.csv, or a caption without any word.
    """
    path = Path(root) / CAPTIONS_FILE
    if not path.is_file():
        return None
    index = {s: i for i, s in enumerate(ids)}
    out: list[list[str]] = [[] for _ in ids]
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise DataError(path, "empty: expected a header row sample,caption")
            missing = [c for c in ("sample", "caption") if c not in header]
            if missing:
                raise DataError(path, f"missing column(s) {missing}; the header is {header}")
            cs, cc = header.index("sample"), header.index("caption")
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(cs, cc):
                    raise DataError(path, f"line {line}: {len(row)} values for {len(header)} columns")
                sample, caption = row[cs].strip(), row[cc].strip()
                if sample not in index:
                    raise DataError(path, f"line {line}: unknown sample '{sample}' (not in labels.csv)")
                if not words(caption):
                    raise DataError(path, f"line {line} (sample '{sample}'): empty caption (no word of [a-z0-9'])")
                out[index[sample]].append(caption)
    except csv.Error as err:
        raise DataError(path, f"line {reader.line_num}: not valid CSV ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read: {err}") from None
    return out


def reference_ids(captions: list[list[str]], vocab: Vocabulary, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Training targets: (N, R, max_tokens + 2) int64 <bos> words <eos> padded with <pad>, and (N,) reference counts
    (R = the most references any sample has; a sample with none has count 0 and is left out of the caption loss)."""
    r = max(1, max((len(refs) for refs in captions), default=1))
    out = np.zeros((len(captions), r, max_tokens + 2), dtype=np.int64)
    counts = np.array([len(refs) for refs in captions], dtype=np.int64)
    for i, refs in enumerate(captions):
        for j, ref in enumerate(refs):
            ids = vocab.encode(ref, max_tokens)
            out[i, j, : len(ids)] = ids
    return out, counts


# ---------------------------------------------------------------------------------------------------------------------
# metrics


def caption_metrics(hyps: list[str], refs: list[list[str]]) -> dict[str, Any]:
    """BLEU-4 and ROUGE-L (both in [0, 1]) of decoded captions against each sample's references.

    Samples without references are left out; `n` says how many were scored.
    """
    from edgefuse._optional import require

    sacrebleu = require("sacrebleu", "caption metrics")
    rouge_scorer = require("rouge_score.rouge_scorer", "caption metrics")
    pairs = [(normalize(h), [normalize(r) for r in rs]) for h, rs in zip(hyps, refs, strict=True) if rs]
    if not pairs:
        return {"n": 0, "bleu4": None, "rougeL": None}
    hyp = [h for h, _ in pairs]
    width = max(len(rs) for _, rs in pairs)
    # sacrebleu wants reference streams of equal length: a sample with fewer references repeats its first one,
    # which changes neither the clipped n-gram counts nor the closest reference length
    streams = [[rs[k] if k < len(rs) else rs[0] for _, rs in pairs] for k in range(width)]
    bleu = sacrebleu.corpus_bleu(hyp, streams, lowercase=True)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score_multi(rs, h)["rougeL"].fmeasure for h, rs in pairs]
    return {"n": len(pairs), "bleu4": bleu.score / 100.0, "rougeL": float(np.mean(rouge))}


def decode_captions(model: Any, inputs: dict[str, Any], mask: Any, batch_size: int = 256) -> list[str]:
    """Greedy captions of a FusionModel with a caption decoder, for every sample (torch, eval mode)."""
    import torch

    from edgefuse.trainer.models.caption import greedy_decode

    model.eval()
    vocab = Vocabulary(model.caption_vocab)
    max_tokens = model.caption_max_tokens
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(mask), batch_size):
            sl = slice(start, start + batch_size)
            model({m: torch.as_tensor(x[sl]) for m, x in inputs.items()}, torch.as_tensor(mask[sl]))
            ids = greedy_decode(model.caption, model.last_context, BOS, EOS, max_tokens)
            out += [vocab.decode(row) for row in ids]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# training


def caption_loss(model: Any, refs: Any, counts: Any, idx: Any) -> Any:
    """Teacher-forced cross-entropy over every reference of every sample of the rows `idx`, each sample weighted
    equally, on the context of the model's last forward over those rows; rows without references are left out."""
    import torch.nn.functional as F

    n = counts[idx]  # (B,)
    r = max(1, int(n.max()))
    seq = refs[idx, :r]  # (B, R, L)
    have = (torch_arange(r) < n.unsqueeze(1)).reshape(-1)  # (B*R,) real references
    if not bool(have.any()):
        return model.last_context.sum() * 0.0  # keeps the graph connected; nothing to learn from this batch
    context = model.last_context.repeat_interleave(r, dim=0)[have]  # (b, H)
    seq = seq.reshape(-1, seq.shape[-1])[have]  # (b, L)
    weight = (1.0 / n.clamp(min=1).float()).repeat_interleave(r)[have]  # (b,): each sample counts once
    logits = model.caption(context, seq[:, :-1])  # (b, L-1, V)
    target = seq[:, 1:]
    ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD, reduction="none")  # (b, L-1)
    per_ref = ce.sum(1) / (target != PAD).sum(1).clamp(min=1)  # (b,)
    return (per_ref * weight).sum() / weight.sum()


def torch_arange(n: int) -> Any:
    import torch

    return torch.arange(n)


def token_accuracy(model: Any, inputs: dict[str, Any], mask: Any, refs: Any, counts: Any, batch: int = 256) -> float:
    """Teacher-forced next-word accuracy on each sample's first reference (validation; eval mode): the caption
    head's share of the early-stopping score."""
    import torch

    model.eval()
    right, total = 0, 0
    with torch.inference_mode():
        for start in range(0, len(mask), batch):
            sl = slice(start, start + batch)
            rows = counts[sl] > 0
            if not bool(rows.any()):
                continue
            model({m: x[sl] for m, x in inputs.items()}, mask[sl])
            seq = refs[sl, 0][rows]  # (b, L)
            pred = model.caption(model.last_context[rows], seq[:, :-1]).argmax(-1)  # (b, L-1)
            target = seq[:, 1:]
            keep = target != PAD
            right += int((pred[keep] == target[keep]).sum())
            total += int(keep.sum())
    return right / max(1, total)


# ---------------------------------------------------------------------------------------------------------------------
# the eval report


def caption_report(model: Any, inputs: dict[str, Any], mask: Any, refs: list[list[str]], examples: int = 5) -> dict:
    """The `captions` section of `edgefuse eval`: BLEU-4 and ROUGE-L of greedy captions, the best constant caption
    (the most frequent reference) for scale, and a few examples."""
    hyps = decode_captions(model, inputs, mask)
    scored = caption_metrics(hyps, refs)
    common = Counter(r for rs in refs for r in rs).most_common(1)
    const = caption_metrics([common[0][0]] * len(hyps), refs) if common else {"bleu4": None, "rougeL": None}
    return {
        **scored,
        "constant_caption": {"caption": common[0][0] if common else None, **{k: const[k] for k in ("bleu4", "rougeL")}},
        "cider": "not computed: pycocoevalcap (its reference implementation) is a ~100 MB wheel of Java jars",
        "examples": [{"caption": h, "references": rs} for h, rs in zip(hyps[:examples], refs[:examples], strict=True)],
    }


def caption_markdown(c: dict[str, Any]) -> list[str]:
    """The report's captions section as markdown lines."""
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        "## Captions",
        "",
        f"Greedy captions of {c['n']} samples against all their references (BLEU-4: sacrebleu; ROUGE-L: rouge-score).",
        "",
        "| captions | BLEU-4 | ROUGE-L |",
        "|---|---|---|",
        f"| the model's | {fmt(c['bleu4'])} | {fmt(c['rougeL'])} |",
        f'| constant: "{c["constant_caption"]["caption"]}" | {fmt(c["constant_caption"]["bleu4"])} | '
        f"{fmt(c['constant_caption']['rougeL'])} |",
        "",
    ]
    for ex in c["examples"]:
        lines += [f'- "{ex["caption"]}" (references: {"; ".join(ex["references"][:3])})']
    return [*lines, ""]
