"""Every fusion method on tiny real models: shapes, gradients, mask semantics, determinism and ONNX Runtime parity."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgefuse.spec import FUSION_METHODS, ScenarioSpec, parse_spec
from edgefuse.trainer.models import FUSIONS, build_model
from edgefuse.trainer.models.fusion import TENSOR_MAX_FEATURES, tensor_fusion_dim
from edgefuse.trainer.models.onnx import to_onnx

IMAGE = {"kind": "image", "rate_hz": 5, "shape": [12, 12], "channels": 3}
AUDIO = {"kind": "audio", "rate_hz": 4000, "window_s": 0.125, "channels": 1}  # 500 samples
SERIES = {"kind": "series", "rate_hz": 10, "window_s": 2.0, "channels": ["a", "b", "c"]}
TEXT = {"kind": "text", "rate_hz": 1, "shape": [6]}
ENCODERS = {
    "cam": {"type": "dwcnn", "width": 4, "stages": 2},
    "mic": {"type": "logmel_cnn", "n_fft": 64, "hop": 32, "n_mels": 8, "width": 4},
    "env": {"type": "cnn1d", "width": 8, "kernel": 3, "layers": 2},
    "can": {"type": "gru", "hidden": 8},
    "words": {"type": "hashed_embedding", "buckets": 50, "width": 8},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_spec(method: str = "attention", with_text: bool = False) -> ScenarioSpec:
    """image + audio + series (cnn1d); with_text: image + audio + series (gru) + text."""
    modalities = {"cam": IMAGE, "mic": AUDIO, "can": SERIES, "words": TEXT} if with_text else {}
    modalities = modalities or {"cam": IMAGE, "mic": AUDIO, "env": SERIES}
    return parse_spec(
        {
            "name": "tiny",
            "modalities": modalities,
            "labels": {"event": ["x", "y", "z"], "urgent": ["no", "yes"]},
            "model": {
                "dim": 8,
                "encoders": {m: ENCODERS[m] for m in modalities},
                "fusion": {"method": method, "heads": 2, "rank": 3, "tensor_dim": 4},
            },
        },
        "tiny",
    )


def random_inputs(spec: ScenarioSpec, batch: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in spec.modalities.items():
        if m.kind == "text":
            out[name] = torch.randint(0, 50, (batch, *m.input_shape), generator=gen)  # some 0 = padding
        else:
            out[name] = torch.rand((batch, *m.input_shape), generator=gen) * 2 - 1
    return out


def model_for(method: str, with_text: bool = False, seed: int = 0) -> tuple[ScenarioSpec, torch.nn.Module]:
    torch.manual_seed(seed)
    spec = tiny_spec(method, with_text)
    return spec, build_model(spec)


def test_every_spec_method_is_registered():
    assert set(FUSIONS) == set(FUSION_METHODS)


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_output_shapes_per_head(method):
    spec, model = model_for(method)
    out = model(random_inputs(spec, 4, 0), torch.ones(4, 3))
    assert list(out) == ["event", "urgent"]
    assert out["event"].shape == (4, 3) and out["urgent"].shape == (4, 2)
    assert model.aux_loss().shape == ()


def _masked_mask(n_modalities: int) -> torch.Tensor:
    mask = torch.ones(5, n_modalities)  # (B, M)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = 0
    mask[3, :2] = 0
    mask[4, -1] = 0
    return mask


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_gradients_reach_present_encoders_only(method):
    spec, model = model_for(method)
    model.train()
    mask = torch.tensor([[1.0, 0.0, 1.0]] * 4)  # the microphone is missing in every row
    out = model(random_inputs(spec, 4, 1), mask)
    loss = sum(torch.nn.functional.cross_entropy(v, torch.zeros(4, dtype=torch.long)) for v in out.values())
    (loss + model.aux_loss()).backward()
    for name in ("cam", "env"):
        grads = [p.grad for p in model.encoders[name].parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reached the {name} encoder"
    for p in model.encoders["mic"].parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_gradients_reach_present_rows_only(method):
    spec, model = model_for(method)
    model.train()
    mask = _masked_mask(3)  # a different modality missing per row
    inputs = {k: v.requires_grad_() for k, v in random_inputs(spec, 5, 1).items()}
    out = model(inputs, mask)
    (sum(v.square().sum() for v in out.values()) + model.aux_loss()).backward()
    for i, name in enumerate(spec.modality_names):
        per_row = inputs[name].grad.abs().flatten(1).sum(dim=1)  # (B,)
        assert (per_row[mask[:, i] == 0] == 0).all(), f"gradient reached masked {name} inputs"
        assert per_row[mask[:, i] == 1].sum() > 0, f"no gradient reached present {name} inputs"


@pytest.mark.parametrize("with_text", [False, True], ids=["img-audio-series", "img-audio-gru-text"])
@pytest.mark.parametrize("method", FUSION_METHODS)
def test_masked_inputs_do_not_influence_outputs(method, with_text):
    spec, model = model_for(method, with_text)
    mask = _masked_mask(len(spec.modalities))
    inputs = random_inputs(spec, 5, 2)
    changed = {}
    for i, (name, x) in enumerate(inputs.items()):
        other = random_inputs(spec, 5, 3)[name] * (50 if x.is_floating_point() else 1)  # very different values
        keep = mask[:, i].bool().reshape((-1,) + (1,) * (x.dim() - 1))
        changed[name] = torch.where(keep, x, other)
    for training in (False, True):  # in training mode too: masked inputs must not even move BatchNorm stats
        model.train(training)
        torch.manual_seed(7)
        a = model(inputs, mask)
        aux_a = model.aux_loss()
        torch.manual_seed(7)
        b = model(changed, mask)
        for head in a:
            torch.testing.assert_close(a[head], b[head], rtol=0, atol=1e-6)
        torch.testing.assert_close(aux_a, model.aux_loss(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_all_masked_rows_are_finite(method):
    spec, model = model_for(method)
    mask = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    for training in (False, True):
        model.train(training)
        out = model(random_inputs(spec, 3, 4), mask)
        assert all(torch.isfinite(v).all() for v in out.values())
        assert torch.isfinite(model.aux_loss())


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_eval_mode_is_deterministic(method):
    spec, model = model_for(method)
    model.eval()
    inputs, mask = random_inputs(spec, 3, 5), _masked_mask(3)[:3]
    a, b = model(inputs, mask), model(inputs, mask)
    for head in a:
        assert torch.equal(a[head], b[head])


def test_adversarial_aux_loss_is_weighted_discriminator_loss():
    spec, model = model_for("adversarial")
    model.train()
    model(random_inputs(spec, 6, 6), torch.ones(6, 3))
    aux = model.aux_loss().detach()
    # an untrained discriminator over 3 modalities is near chance: CE ~ ln 3, times the configured weight 0.1
    assert 0.05 < float(aux) < 0.2
    model.eval()
    model(random_inputs(spec, 6, 6), torch.ones(6, 3))
    assert float(model.aux_loss()) == 0.0


def test_adversarial_gradient_is_reversed_into_the_shared_projection():
    spec, model = model_for("adversarial")
    model.train()
    model(random_inputs(spec, 6, 6), torch.ones(6, 3))
    model.aux_loss().backward()
    fusion = model.fusion
    disc = fusion.discriminator[0].weight.grad
    assert disc is not None and disc.abs().sum() > 0  # the discriminator learns to classify
    assert fusion.weight.grad is not None and fusion.weight.grad.abs().sum() > 0  # projections receive the reversal


def test_tensor_fusion_dim_keeps_the_product_small():
    assert tensor_fusion_dim(8, 3) == 8  # 729 features
    assert tensor_fusion_dim(8, 4) == 4  # 625 features
    for m in range(1, 7):
        assert (tensor_fusion_dim(8, m) + 1) ** m <= TENSOR_MAX_FEATURES or tensor_fusion_dim(8, m) == 1


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_onnx_runtime_matches_torch(method, tmp_path):
    with_text = method in ("attention", "low_rank")  # the text + GRU graph, for two methods
    spec, model = model_for(method, with_text)
    model.eval()
    desc = to_onnx(model, spec, tmp_path / "m.onnx")
    assert [t["name"] for t in desc["inputs"]] == [*spec.modality_names, "mask"]
    assert [t["name"] for t in desc["outputs"]] == ["scores_event", "scores_urgent"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        inputs = random_inputs(spec, batch, 10 + batch)
        mask = _masked_mask(len(spec.modalities))[:batch] if batch > 1 else torch.ones(1, len(spec.modalities))
        feed = {k: v.numpy() for k, v in inputs.items()} | {"mask": mask.numpy()}
        got = session.run(None, feed)
        with torch.inference_mode():
            want = model(inputs, mask)
        for head, scores in zip(spec.heads, got, strict=True):
            assert scores.shape == (batch, len(spec.labels[head]))
            np.testing.assert_allclose(scores, want[head].softmax(dim=1).numpy(), atol=1e-4, rtol=0)
