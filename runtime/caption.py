"""Captions at the edge: greedy decoding of a bundle's caption step model with ONNX Runtime and NumPy (no torch).

The main model publishes a context vector (the manifest's `caption.context_output`, (B, hidden)); the step model
(`caption.file`) maps (previous word, h, c, context) to next-word logits and the new state. Decoding, as the
manifest's `caption.rule` states: h = context, c = 0, token = bos; up to max_tokens steps of argmax; stop at eos.
Rows of a batch decode together; a finished row keeps stepping (its words are ignored) until all are done.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgefuse.deploy.backends.onnxruntime import session_options
from edgefuse.errors import BundleError
from edgefuse.manifest import CaptionManifest


class Captioner:
    """The caption step model of a bundle; `captions(context)` -> one caption per row."""

    def __init__(self, bundle_dir: str | Path, cap: CaptionManifest, threads: int | None = 1):
        self.cap = cap
        path = Path(bundle_dir) / cap.file
        so = session_options(threads)  # threads=1 by default: a step is a few small matmuls, more only add hand-offs
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own types; name the file
            raise BundleError(f"{path}: ONNX Runtime cannot load the caption step model: {err}") from None
        got = sorted(i.name for i in self.session.get_inputs())
        if got != sorted(cap.inputs):
            raise BundleError(f"{path}: step model inputs {got} do not match the manifest's {sorted(cap.inputs)}")
        self.tokens_decoded = 0  # words stepped, over all calls (for the time per token)
        self.decode_s = 0.0

    def decode_ids(self, context: np.ndarray) -> list[list[int]]:
        """(B, hidden) float32 context -> word ids per row, without bos/eos."""
        cap = self.cap
        context = np.ascontiguousarray(context, dtype=np.float32)
        b = context.shape[0]
        h, c = context.copy(), np.zeros_like(context)
        token = np.full(b, cap.bos, dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(b)]
        done = np.zeros(b, dtype=bool)
        t0 = time.perf_counter()
        steps = 0
        for _ in range(cap.max_tokens):
            logits, h, c = self.session.run(cap.outputs, {"token": token, "h": h, "c": c, "context": context})
            steps += 1
            token = logits.argmax(axis=1).astype(np.int64)  # (B,)
            for i in np.flatnonzero(~done & (token != cap.eos)):
                out[i].append(int(token[i]))
            done |= token == cap.eos
            if done.all():
                break
        self.decode_s += time.perf_counter() - t0
        self.tokens_decoded += steps
        return out

    def text(self, ids: list[int]) -> str:
        """Word ids -> the caption: words joined by single spaces (markers dropped)."""
        markers = {self.cap.bos, self.cap.eos, self.cap.pad, self.cap.unk}
        return " ".join(self.cap.vocab[i] for i in ids if i not in markers)

    def captions(self, context: np.ndarray) -> list[str]:
        """(B, hidden) context -> one caption per row."""
        return [self.text(ids) for ids in self.decode_ids(context)]
