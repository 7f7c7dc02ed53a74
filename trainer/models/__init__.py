"""Compact fused models: per-modality encoders, an in-model log-mel front end, the fusion library, ONNX export.

    from edgefuse.trainer.models import build_model
    model = build_model(spec)                      # a FusionModel
    logits = model(inputs, mask)                   # head -> (B, n_classes)

edgefuse.trainer.models.onnx.to_onnx exports a trained model for deploy/.
"""

from edgefuse.trainer.models.encoders import ENCODERS, register_encoder
from edgefuse.trainer.models.fusion import FUSIONS, register_fusion
from edgefuse.trainer.models.model import FusionModel, build_model, count_params, modality_dropout, spec_problems

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "FusionModel",
    "build_model",
    "count_params",
    "modality_dropout",
    "register_encoder",
    "register_fusion",
    "spec_problems",
]
