"""The hashed tokenizer and image preparation that the trainer and the runtime share."""

from __future__ import annotations

import numpy as np

from edgefuse.preprocess import prepare_image, prepare_text
from edgefuse.spec import ModalitySpec
from edgefuse.text import hash_tokens, words


def test_tokens_are_stable_case_insensitive_and_padded():
    a = hash_tokens("Cancel my SUBSCRIPTION please", max_tokens=12, buckets=4096, ngrams=2)
    b = hash_tokens("cancel my subscription please", max_tokens=12, buckets=4096, ngrams=2)
    assert a.dtype == np.int64 and a.shape == (12,)
    assert np.array_equal(a, b)
    assert (a[:7] > 0).all() and (a[7:] == 0).all()  # 4 words + 3 bigrams, then padding
    assert a.max() < 4096
    # CRC-32 (zlib/IEEE) based, so ids are fixed across processes and languages: 1 + crc32("billing") % 4095
    assert hash_tokens("billing", 1, 4096, 1)[0] == 4027


def test_tokens_truncate_and_split_words():
    assert words("It's broken -- AGAIN!") == ["it's", "broken", "again"]
    ids = hash_tokens(" ".join(f"w{i}" for i in range(50)), max_tokens=8, buckets=100, ngrams=1)
    assert (ids > 0).all() and ids.shape == (8,)
    assert (hash_tokens("", 4, 100)).tolist() == [0, 0, 0, 0]


def test_prepare_image_resizes_converts_bgr_to_rgb_and_scales():
    m = ModalitySpec(kind="image", rate_hz=10, shape=[4, 6], channels=3)
    frame = np.zeros((8, 12, 3), np.uint8)
    frame[..., 0] = 255  # blue in OpenCV's BGR order
    x = prepare_image(frame, m)
    assert x.shape == (3, 4, 6) and x.dtype == np.float32
    assert np.allclose(x[2], 1.0) and np.allclose(x[:2], 0.0)  # blue lands in the RGB tensor's last channel
    gray = ModalitySpec(kind="image", rate_hz=10, shape=[4, 6], channels=1)
    g = prepare_image(np.full((4, 6, 3), 128, np.uint8), gray)
    assert g.shape == (1, 4, 6) and np.allclose(g, 128 / 255)


def test_prepare_text_uses_the_spec_length():
    m = ModalitySpec(kind="text", rate_hz=1, shape=[5])
    assert prepare_text("my bill is wrong", m, buckets=64, ngrams=1).shape == (5,)
