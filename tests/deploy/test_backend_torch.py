"""torch backend against ONNX Runtime on a real exported bundle: same top-1, probabilities within 1e-4.

The bundle is exported by `export_bundle` from a checkpoint of a seeded, untrained FusionModel of the
customer_service scenario (audio + hashed text + optional camera, three heads): a real graph with int64 and float
inputs, exported and parity-checked the way `edgefuse export` does it, without spending seconds on training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch backend needs torch (the `train` extra)")

from edgefuse.deploy.backends import load_backend  # noqa: E402
from edgefuse.deploy.backends.torch import TorchBackend  # noqa: E402
from edgefuse.deploy.bundle import load_bundle  # noqa: E402
from edgefuse.deploy.export import export_bundle, random_feeds  # noqa: E402
from edgefuse.errors import BundleError, InputError  # noqa: E402
from edgefuse.spec import load_spec  # noqa: E402
from edgefuse.trainer.checkpoint import save_run  # noqa: E402
from edgefuse.trainer.models import build_model  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOL = 1e-4


def export_tiny_bundle(root: Path, config: str = "customer_service.yaml") -> Path:
    """A real bundle (model.onnx + model.pt + manifest) of a seeded, untrained model of `config`."""
    spec = load_spec(CONFIGS / config)
    torch.manual_seed(0)
    model = build_model(spec)
    save_run(root / "run", spec, model, {}, {}, data_dir=root, n_samples=0, masked=[])
    export_bundle(root / "run", root / "bundle", precisions=["fp32"], parity_samples=8)
    return root / "bundle"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_bundle(tmp_path_factory.mktemp("torch_backend"))


@pytest.fixture(scope="module")
def backends(bundle: Path):
    tb, ob = load_backend(bundle, backend="torch"), load_backend(bundle, backend="onnxruntime")
    yield tb, ob
    tb.close()
    ob.close()


def feeds(bundle: Path, n: int, seed: int) -> dict[str, np.ndarray]:
    return random_feeds(load_bundle(bundle).spec, n, seed=seed)


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == np.float32
        assert np.abs(a[k] - b[k]).max() <= TOL, k
        assert (a[k].argmax(1) == b[k].argmax(1)).all(), k


@pytest.mark.parametrize("n", [1, 4])
def test_torch_matches_onnxruntime(bundle: Path, backends, n: int):
    tb, ob = backends
    assert tb.name == "torch" and tb.device.type == "cpu"
    f = feeds(bundle, n, seed=n)
    got, ref = tb.run(f), ob.run(f)
    assert set(got) == {"scores_intent", "scores_sentiment", "scores_escalate"}
    assert got["scores_intent"].shape == (n, 6) and got["scores_sentiment"].shape == (n, 3)
    assert np.allclose(got["scores_escalate"].sum(1), 1.0, atol=1e-5)  # probabilities, not logits
    assert_same(got, ref)


def test_run_pipelined_equals_run(bundle: Path, backends):
    tb, _ = backends
    batches = [feeds(bundle, n, seed=10 + n) for n in (1, 4, 3)]
    piped = list(tb.run_pipelined(iter(batches)))
    assert len(piped) == 3
    for b, p in zip(batches, piped, strict=True):
        one = tb.run(b)
        for k in one:
            np.testing.assert_array_equal(one[k], p[k])


def test_missing_modality_is_masked_out(bundle: Path, backends):
    """A sample whose camera is masked gives the same scores whatever the camera tensor holds."""
    tb, ob = backends
    f = feeds(bundle, 2, seed=3)
    f["mask"][:, 2] = 0.0  # camera absent (spec order: voice, transcript, camera)
    g = {k: v.copy() for k, v in f.items()}
    g["camera"] = np.random.default_rng(9).random(g["camera"].shape, dtype=np.float32)
    assert_same(tb.run(f), tb.run(g))
    assert_same(tb.run(f), ob.run(f))


def test_bad_feeds_name_the_tensor(bundle: Path, backends):
    tb, _ = backends
    f = feeds(bundle, 2, seed=0)
    f["transcript"] = f["transcript"].astype(np.int32)
    with pytest.raises(InputError, match=r"input 'transcript': dtype int32, expected int64"):
        tb.run(f)
    f = feeds(bundle, 2, seed=0)
    del f["voice"]
    with pytest.raises(InputError, match=r"missing input 'voice'"):
        tb.run(f)


def test_refusals(bundle: Path, tmp_path: Path):
    b = load_bundle(bundle)
    with pytest.raises(BundleError, match=r"not int8 on cpu"):
        TorchBackend(b, precision="int8")
    with pytest.raises(BundleError, match=r"not fp16 on cpu"):
        TorchBackend(b, precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(BundleError, match=r"cuda_graphs needs device='cuda'"):
            TorchBackend(b, cuda_graphs=True)
        with pytest.raises(BundleError, match=r"torch sees no CUDA device"):
            TorchBackend(b, device="cuda")
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(BundleError, match=r"model\.pt: cannot rebuild the model from it"):
        TorchBackend(load_bundle(broken, verify=False))
    (broken / "model.pt").unlink()
    with pytest.raises(BundleError, match=r"model\.pt: missing"):
        TorchBackend(load_bundle(broken, verify=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device; torch sees none here")
@pytest.mark.parametrize("n", [1, 4])
def test_cuda_graphs_match_onnxruntime(bundle: Path, backends, n: int):
    _, ob = backends
    with TorchBackend(load_bundle(bundle), device="cuda", cuda_graphs=True) as gb:
        f = feeds(bundle, n, seed=20 + n)
        first, again = gb.run(f), gb.run(f)  # capture, then replay of the captured graph
        assert_same(first, ob.run(f))
        for k in first:
            np.testing.assert_array_equal(first[k], again[k])
        other = feeds(bundle, n, seed=40 + n)  # the same graph replayed on new inputs
        assert_same(gb.run(other), ob.run(other))
        assert sorted(gb._graphs) == [n]


def test_warm_up_runs_every_encoder_capture_will_run(bundle: Path):
    # capture runs every encoder (the branch-free path); the example batch here has one modality absent in every
    # row, which the eager forward skips, so only an all-present warm-up reaches that encoder before capture
    from edgefuse.deploy.backends.torch import load_torch_model, warm_up

    model = load_torch_model(load_bundle(bundle))
    ran: list[str] = []
    for m in model.modalities:
        model.encoders[m].register_forward_hook(lambda *_, m=m: ran.append(m))
    f = feeds(bundle, 3, seed=5)
    absent = 0
    f["mask"][:, absent] = 0.0
    f["mask"][:, 1] = 1.0  # every row keeps a modality
    tensors = {k: torch.from_numpy(v) for k, v in f.items()}
    with torch.inference_mode():
        model({m: tensors[m] for m in model.modalities}, tensors["mask"])
        assert model.modalities[absent] not in ran  # the eager path skips an encoder absent in every row
        ran.clear()
        warm_up(lambda t: model({m: t[m] for m in model.modalities}, t["mask"]), tensors, iters=2)
    assert sorted(set(ran)) == sorted(model.modalities) and len(ran) == 2 * len(model.modalities)
    assert (tensors["mask"][:, absent] == 0).all()  # the capture's own inputs are left as given


def test_torch_backend_describes_what_runs_and_takes_device_strings(bundle: Path):
    with load_backend(bundle, backend="torch", device="cpu") as b:
        assert b.describe() == {
            "name": "torch",
            "precision": "fp32",
            "reason": "asked",
            "device": "cpu",
            "file": "model.pt",
            "detail": "eager",
        }
    with pytest.raises(BundleError, match="runs on cpu or cuda"):
        load_backend(bundle, backend="torch", device="dla:0")
