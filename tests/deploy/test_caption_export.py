"""The caption head in a bundle: the step model next to model.onnx, the context output, token-for-token parity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgefuse.deploy.backends import load_backend
from edgefuse.deploy.bundle import load_bundle
from edgefuse.deploy.caption import STEP_FILE, torch_decode
from edgefuse.deploy.export import dataset_feeds, export_bundle, take
from edgefuse.runtime.caption import Captioner
from edgefuse.spec import parse_spec
from edgefuse.trainer.checkpoint import load_run
from edgefuse.trainer.data import load_dataset
from edgefuse.trainer.synth import write_dataset
from edgefuse.trainer.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _specs import smart_home_test_scale  # noqa: E402


def caption_spec():
    """smart_home shrunk to test size (32x32 frames, 0.5 s of 8 kHz audio; benchmarks/_specs.py), with a small caption
    head."""
    d = smart_home_test_scale()
    d["train"].update(batch_size=32, threads=2)
    d["captions"] = {"max_tokens": 12, "hidden": 32, "embed": 16}
    return parse_spec(d, "tiny smart_home with captions")


@pytest.fixture(scope="module")
def cap_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("capbundle")
    spec = caption_spec()
    data = write_dataset(spec, root / "data", 160, seed=1, progress=False)
    train(spec, data, root / "run", epochs=8, progress=False)
    export_bundle(root / "run", root / "bundle", data)
    return spec, data, root / "run", root / "bundle"


def test_bundle_has_the_step_model_and_the_context_output(cap_bundle):
    spec, _, run, bundle = cap_bundle
    man = json.loads((bundle / "manifest.json").read_text())
    cap = man["caption"]
    assert cap["file"] == STEP_FILE and (bundle / STEP_FILE).is_file() and STEP_FILE in man["files"]
    assert cap["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and cap["max_tokens"] == 12
    assert cap["vocab"] == torch.load(run / "checkpoint.pt", weights_only=True)["caption_vocab"]
    assert "token for token" in cap["parity"]
    ctx = [o for o in man["outputs"] if o["name"] == cap["context_output"]]
    assert ctx and ctx[0]["shape"] == [-1, 32] and ctx[0]["labels"] == []
    load_bundle(bundle)  # every file, the step model included, matches its sha256


def test_onnx_step_decoding_equals_torch_token_for_token(cap_bundle):
    spec, data, run, bundle = cap_bundle
    _, model, _ = load_run(run)
    ds = load_dataset(spec, data, progress=False)
    feeds = take(dataset_feeds(ds), slice(0, 48))  # train, val and test samples alike
    backend = load_backend(bundle, backend="onnxruntime", precision="fp32")
    man = load_bundle(bundle).manifest
    context = backend.run(feeds)[man.caption.context_output]  # (N, H) from the ONNX main model
    captioner = Captioner(bundle, man.caption)
    got, want = captioner.decode_ids(context), torch_decode(model, feeds)
    assert got == want
    assert sum(len(ids) for ids in got) > 48  # real words were decoded, not only end-of-caption
    assert len({tuple(ids) for ids in got}) > 1
    texts = captioner.captions(context)
    assert all(set(t.split()) <= set(man.caption.vocab[4:]) for t in texts)


def test_torch_backend_outputs_the_same_context(cap_bundle):
    spec, data, _, bundle = cap_bundle
    ds = load_dataset(spec, data, progress=False)
    feeds = take(dataset_feeds(ds), slice(0, 8))
    ort_out = load_backend(bundle, backend="onnxruntime").run(feeds)
    torch_out = load_backend(bundle, backend="torch").run(feeds)
    assert np.abs(ort_out["caption_context"] - torch_out["caption_context"]).max() < 1e-4
