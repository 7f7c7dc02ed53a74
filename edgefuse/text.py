"""Hashed tokenization of short text: no vocabulary, identical in the trainer and the runtime.

Words are lower-cased runs of letters, digits and apostrophes. Each word, and each word n-gram up to `ngrams`,
is hashed with CRC-32 into [1, buckets); 0 is padding. The model sees a fixed-length (max_tokens,) int64 vector.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def hash_tokens(text: str, max_tokens: int, buckets: int, ngrams: int = 2) -> np.ndarray:
    """Token ids for `text`: (max_tokens,) int64, unigrams first, then n-grams, zero-padded or cut."""
    ws = words(text)
    grams = list(ws)
    for n in range(2, ngrams + 1):
        grams += [" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    out = np.zeros(max_tokens, dtype=np.int64)
    for i, g in enumerate(grams[:max_tokens]):
        out[i] = 1 + zlib.crc32(g.encode()) % (buckets - 1)
    return out
