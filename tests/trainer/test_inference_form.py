"""The inference form of a model (BatchNorm folded, channels-last weights) computes what the trained model does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgefuse.deploy.export import random_feeds
from edgefuse.spec import load_spec
from edgefuse.trainer.models import build_model
from edgefuse.trainer.models.inference import fold_batchnorm, for_inference

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NORMS)]


@pytest.mark.parametrize("scenario", ["smart_home", "driving", "customer_service"])
def test_inference_form_matches_the_trained_model(scenario, one_thread):
    spec = load_spec(CONFIGS / f"{scenario}.yaml")
    torch.manual_seed(0)
    model = build_model(spec).eval()
    norms = _norms(model)
    for bn in norms:  # statistics far from the identity, so a wrong fold cannot pass unnoticed
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.25, 4.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    fast = for_inference(model)
    assert len(_norms(fast)) < len(norms)  # conv -> BN pairs folded (an input BatchNorm with no conv before stays)
    assert len(_norms(model)) == len(norms)  # on a copy: the trained model is untouched
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters())
    feeds = random_feeds(spec, 8, seed=1)  # the export parity check's inputs; some rows have a modality masked
    inputs = {m: torch.from_numpy(feeds[m]) for m in spec.modalities}
    mask = torch.from_numpy(feeds["mask"])
    assert 0 < mask.mean() < 1
    with torch.inference_mode():
        want, got = model(inputs, mask), fast(inputs, mask)
    assert want.keys() == got.keys()
    for head in want:
        assert torch.allclose(want[head], got[head], atol=1e-5, rtol=1e-4), head


def test_fold_refuses_a_model_in_training_mode():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    x = torch.randn(5, 2, 9)
    model.eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2.0)
    want = model(x)
    assert fold_batchnorm(model) == 1 and isinstance(model[1], nn.Identity)
    assert torch.allclose(model(x), want, atol=1e-6)
