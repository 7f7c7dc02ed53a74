"""The runtime publishes captions: a real bundle with a caption step model, live sources, real ZeroMQ."""

from __future__ import annotations

import numpy as np
import pytest
from test_pipeline import TINY, run_live

from edgefuse.runtime.caption import Captioner
from edgefuse.runtime.pipeline import BoundModel
from edgefuse.spec import parse_spec, spec_to_dict

VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "someone", "knocks"]


def caption_spec():
    d = spec_to_dict(parse_spec(TINY))
    d["captions"] = {"max_tokens": 5, "hidden": 8, "embed": 4}
    return parse_spec(d)


def make_bundle(root, word: int):
    """A bundle whose decoder always says vocabulary word `word` (output weights zero, that word's bias high)."""
    torch = pytest.importorskip("torch")
    from edgefuse.deploy.export import export_bundle
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    torch.manual_seed(0)
    spec = caption_spec()
    model = build_model(spec, VOCAB).eval()
    with torch.no_grad():
        model.caption.out.weight.zero_()
        model.caption.out.bias.fill_(-5.0)
        model.caption.out.bias[word] = 5.0
    save_run(root / "run", spec, model, {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", parity_samples=4)
    return root / "bundle"


@pytest.fixture(scope="module")
def knock_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("capknock"), VOCAB.index("knocks"))


def test_live_results_carry_the_caption_over_zeromq(knock_bundle):
    spec = caption_spec()
    model = BoundModel.load(knock_bundle, backend="onnxruntime")
    assert [h for _, h, _ in model.heads] == ["event"]  # the context output is no classification head
    summary, got = run_live(spec, model, 2.0)
    assert summary["errors"] == [] and summary["ticks"] >= 10 and len(got) >= summary["ticks"] - 3
    for msg, _ in got:
        # max_tokens words of the forced word: the runtime stops at max_tokens, joins words with spaces
        assert msg.payload["caption"] == "knocks knocks knocks knocks knocks"
        assert set(msg.payload["scores"]["event"]) == {"quiet", "loud"}
    assert model.captioner.tokens_decoded >= 5 * summary["batches"]


def test_end_of_caption_at_once_publishes_an_empty_caption(tmp_path):
    bundle = make_bundle(tmp_path, VOCAB.index("<eos>"))
    model = BoundModel.load(bundle, backend="onnxruntime")
    context = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    cap = Captioner(bundle, model.captioner.cap)
    assert cap.captions(context) == ["", "", ""] and cap.tokens_decoded == 1  # one step: every row ended
    model.close()
