"""The caption decoder: a one-layer LSTM over words, conditioned on the fused context vector of a FusionModel.

    context  (B, H) float32: tanh of the fusion's "caption" entry (FusionModel.last_context), H = captions.hidden
    tokens   (B, L) int64 word ids, <bos> first (trainer/caption.py's Vocabulary)

The context starts the LSTM (h0 = context, c0 = 0) and is also fed with every word, so the decoder cannot drift
away from what the sensors saw. Training runs the whole sequence at once (teacher forcing, `forward`); inference
runs `step` once per word, the form exported to ONNX (deploy/caption.py) and driven by the runtime
(runtime/caption.py), so torch and ONNX Runtime decode with the same function.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CaptionDecoder(nn.Module):
    """LSTM word decoder; `forward` for teacher-forced training, `step` for one greedy decoding step."""

    def __init__(self, vocab_size: int, hidden: int, embed: int, dropout: float = 0.0):
        super().__init__()
        self.vocab_size, self.hidden = vocab_size, hidden
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed + hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, context: Tensor, tokens: Tensor) -> Tensor:
        """(B, H) context, (B, L) input words -> (B, L, V) logits of each next word."""
        x = self.embed(tokens)  # (B, L, E)
        x = torch.cat([x, context.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)  # (B, L, E+H)
        state = (context.unsqueeze(0).contiguous(), torch.zeros_like(context).unsqueeze(0))  # (1, B, H) each
        y, _ = self.lstm(x, state)  # (B, L, H)
        return self.out(self.drop(y))  # (B, L, V)

    def step(self, token: Tensor, h: Tensor, c: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One word: (B,) previous word, (B, H) state h and c, (B, H) context -> (B, V) logits, new h, new c."""
        x = torch.cat([self.embed(token), context], dim=1).unsqueeze(1)  # (B, 1, E+H)
        y, (h2, c2) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))  # (B, 1, H), (1, B, H) x2
        return self.out(y[:, 0]), h2[0], c2[0]


@torch.inference_mode()
def greedy_decode(decoder: CaptionDecoder, context: Tensor, bos: int, eos: int, max_tokens: int) -> list[list[int]]:
    """Greedy word ids per row (without <bos>/<eos>): argmax of each step until <eos> or `max_tokens` words."""
    b = context.shape[0]
    h, c = context, torch.zeros_like(context)  # (B, H) each
    token = torch.full((b,), bos, dtype=torch.long)
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for _ in range(max_tokens):
        logits, h, c = decoder.step(token, h, c, context)  # (B, V)
        token = logits.argmax(dim=1)  # (B,)
        for i in torch.nonzero(~done & (token != eos)).flatten().tolist():
            out[i].append(int(token[i]))
        done |= token == eos
        if bool(done.all()):
            break
    return out
