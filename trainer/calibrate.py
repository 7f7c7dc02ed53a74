"""Calibration: temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) and the
expected calibration error.

One scalar temperature T per head is fitted on held-out (validation) logits by minimizing the NLL of softmax(z / T)
with L-BFGS over log T; it never changes which class wins, only how confident the scores are. T is kept within
[0.25, 10]: on a validation split the model gets entirely right the NLL keeps falling as T -> 0, and an unbounded fit
would publish a score of 1.0 for every later mistake.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

T_MIN, T_MAX = 0.25, 10.0


def fit_temperature(logits: Tensor, y: Tensor, max_iter: int = 100) -> float:
    """The T > 0 that minimizes cross-entropy(logits / T, y) on these samples: (N, C) float, (N,) int64."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, T_MIN, T_MAX)) if np.isfinite(t) else 1.0


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the sample-weighted mean over equal-width confidence bins of |accuracy - mean confidence| (N, C), (N,)."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if len(y) == 0:
        return 0.0
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    which = np.minimum((conf * bins).astype(int), bins - 1)  # bin of each sample; conf = 1 goes in the last
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return float(ece)


def nll(logits: Tensor, y: Tensor) -> float:
    """Mean negative log-likelihood of the true class."""
    return float(torch.nn.functional.cross_entropy(logits.double(), y))
