"""The ONNX Runtime backend and the Backend interface, on a real exported bundle and real ORT sessions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from _tiny import make_run

from edgefuse._optional import MissingDependency
from edgefuse.deploy.backends import check_feeds, load_backend
from edgefuse.deploy.export import export_bundle, random_feeds, take
from edgefuse.errors import BundleError, InputError
from edgefuse.trainer.checkpoint import load_run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    make_run(run_dir, steps=20)
    out = tmp_path_factory.mktemp("b") / "bundle"
    export_bundle(run_dir, out, None, ["fp32", "fp16"])
    spec, model, _ = load_run(run_dir)
    return out, spec, model


@pytest.fixture(scope="module")
def backend(setup):
    with load_backend(setup[0], backend="onnxruntime", threads=1) as be:
        yield be


def test_run_matches_torch(setup, backend):
    _, spec, model = setup
    feeds = random_feeds(spec, 6, seed=11)
    out = backend.run(feeds)
    assert backend.name == "onnxruntime" and backend.precision == "fp32"
    assert "CPUExecutionProvider" in backend.providers
    assert set(out) == {"scores_event", "scores_urgent"} and out["scores_event"].shape == (6, 3)
    np.testing.assert_allclose(out["scores_urgent"].sum(1), 1.0, atol=1e-5)
    with torch.inference_mode():
        logits = model({m: torch.from_numpy(feeds[m]) for m in spec.modality_names}, torch.from_numpy(feeds["mask"]))
    np.testing.assert_allclose(out["scores_event"], logits["event"].softmax(1).numpy(), atol=1e-4)


def test_fp16_backend_agrees_with_fp32(setup, backend):
    out, spec, _ = setup
    feeds = random_feeds(spec, 4, seed=12)
    with load_backend(out, backend="onnxruntime", precision="fp16") as be16:
        assert be16.precision == "fp16"
        p16 = be16.run(feeds)["scores_event"]
    assert np.abs(p16 - backend.run(feeds)["scores_event"]).max() < 1e-2


def test_auto_picks_onnxruntime_without_an_engine(setup):
    with load_backend(setup[0]) as be:
        assert be.name == "onnxruntime"


def test_run_pipelined_gives_the_same_results_as_run(setup, backend):
    feeds = random_feeds(setup[1], 20, seed=13)
    parts = [take(feeds, slice(a, b)) for a, b in ((0, 1), (1, 9), (9, 20))]
    piped = list(backend.run_pipelined(iter(parts)))
    assert [p["scores_event"].shape[0] for p in piped] == [1, 8, 11]
    for got, part in zip(piped, parts, strict=True):
        np.testing.assert_array_equal(got["scores_event"], backend.run(part)["scores_event"])


def test_run_pipelined_raises_a_bad_batch_after_the_good_ones(setup, backend):
    good = random_feeds(setup[1], 2, seed=14)
    bad = {**good, "mask": good["mask"].astype(np.float64)}
    results = backend.run_pipelined([good, bad])
    assert next(results)["scores_event"].shape == (2, 3)
    with pytest.raises(InputError, match="'mask': dtype float64, expected float32"):
        next(results)


def test_run_pipelined_stopped_early_releases_its_thread(setup, backend):
    feeds = random_feeds(setup[1], 4, seed=16)
    before = threading.active_count()
    results = backend.run_pipelined(iter([feeds] * 50))
    assert next(results)["scores_event"].shape == (4, 3)
    results.close()  # the consumer walks away with 49 batches unread
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("env"), r"missing input 'env' \(float32, shape \[-1, 2, 20\]\)"),
        (lambda f: f.update(camera=f["cam"]), r"unknown input 'camera'; the model takes"),
        (lambda f: f.update(text=f["text"].astype(np.int32)), r"'text': dtype int32, expected int64"),
        (
            lambda f: f.update(cam=f["cam"][:, :1]),
            r"'cam': shape \[3, 1, 16, 16\], expected \[-1, 3, 16, 16\] \(axis 1\)",
        ),
        (
            lambda f: f.update(mic=f["mic"][:, 0]),
            r"'mic': rank 2 \(shape \[3, 1000\]\), expected shape \[-1, 1, 1000\]",
        ),
        (lambda f: f.update(mask=f["mask"][:2]), r"'mask': batch size 2 disagrees with 'cam' \(batch size 3\)"),
        (lambda f: f.update(env=f["env"].tolist()), r"'env': expected a numpy array, got list"),
    ],
)
def test_bad_feeds_name_the_tensor(setup, backend, change, message):
    feeds = random_feeds(setup[1], 3, seed=15)
    change(feeds)
    with pytest.raises(InputError, match=message):
        backend.run(feeds)


def test_check_feeds_returns_the_batch_size(setup, backend):
    assert check_feeds(random_feeds(setup[1], 7), backend.inputs) == 7


def test_load_errors_say_what_to_do(setup):
    out = setup[0]
    with pytest.raises(BundleError, match="no int8 variant in this bundle"):
        load_backend(out, backend="onnxruntime", precision="int8")
    with pytest.raises(BundleError, match="unknown backend 'openvino'; choose from auto, onnxruntime"):
        load_backend(out, backend="openvino")
    with pytest.raises(BundleError, match="unknown precision 'bf16'"):
        load_backend(out, precision="bf16")
    # no TensorRT on this host: the error says what to install or build, whichever is missing
    with pytest.raises((BundleError, MissingDependency), match=r"edgefuse\[trt\]|tensorrt|engine"):
        load_backend(out, backend="tensorrt")
