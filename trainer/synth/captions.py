"""Compositional captions of synthetic episodes, with template combinations held out of training.

A generator describes an episode as slots (what happens, the light, what else is going on), each a list of
paraphrases; a caption takes one paraphrase per slot, in order, so an episode has as many references as
combinations. Combination (i_1, ..., i_k) is *held out* when i_1 + ... + i_k is odd: the train and val splits'
captions.csv rows are the even combinations, the test split's the odd ones. Every paraphrase is seen in training
(a slot with several paraphrases meets both parities through the others), but no test reference is a sentence the
model was trained on: held-out scores measure recombining known parts, not recalling whole sentences.
"""

from __future__ import annotations

import itertools


def references(slots: list[list[str]]) -> list[tuple[str, bool]]:
    """Every combination of one paraphrase per slot, as (caption, held out) in a fixed order."""
    out = []
    for combo in itertools.product(*(range(len(s)) for s in slots)):
        text = " ".join(slots[k][i] for k, i in enumerate(combo))
        out.append((text, sum(combo) % 2 == 1))
    return out


def split_references(refs: list[tuple[str, bool]], split: str) -> list[str]:
    """The references a sample of `split` gets: held-out combinations for test, the others for train and val."""
    return [text for text, held_out in refs if held_out == (split == "test")]
