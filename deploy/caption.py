"""Export the caption head: the decoder's step as BUNDLE/caption.onnx, checked token for token against torch.

The main graph already outputs the decoder's context (trainer/models/onnx.py, CONTEXT_OUTPUT). The step model
takes (token (B,) int64, h, c, context (B, hidden) float32) and returns (logits (B, V), h_out, c_out); the runtime
drives it greedily (runtime/caption.py). The export check decodes held-out samples twice, with torch
(trainer/models/caption.py greedy_decode on the torch context) and with ONNX Runtime (the runtime's own Captioner on
the ONNX main model's context), and refuses the bundle unless every sample gets the same word ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgefuse._optional import require
from edgefuse.errors import BundleError
from edgefuse.manifest import CaptionManifest
from edgefuse.spec import ScenarioSpec

STEP_FILE = "caption.onnx"


def export_step(model: Any, path: Path, opset: int) -> None:
    """Write the decoder's `step` as an ONNX graph with a dynamic batch axis."""
    torch = require("torch", "export")
    from edgefuse.trainer.models.onnx import export_traced

    decoder = model.caption

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, token: Any, h: Any, c: Any, context: Any) -> Any:
            return self.decoder.step(token, h, c, context)

    hidden = decoder.hidden
    example = (torch.ones(2, dtype=torch.long), torch.zeros(2, hidden), torch.zeros(2, hidden), torch.zeros(2, hidden))
    names_in, names_out = ["token", "h", "c", "context"], ["logits", "h_out", "c_out"]
    export_traced(Step().eval(), example, path, names_in, names_out, opset)


def torch_decode(model: Any, feeds: dict[str, np.ndarray]) -> list[list[int]]:
    """Greedy word ids of the torch model (eval mode) for `feeds` (modality names + "mask")."""
    torch = require("torch", "export")
    from edgefuse.trainer.caption import BOS, EOS
    from edgefuse.trainer.models.caption import greedy_decode

    model.eval()
    with torch.inference_mode():
        model({m: torch.from_numpy(feeds[m]) for m in model.modalities}, torch.from_numpy(feeds["mask"]))
        return greedy_decode(model.caption, model.last_context, BOS, EOS, model.caption_max_tokens)


def export_caption(
    tmp: Path, model: Any, spec: ScenarioSpec, main_session: Any, feeds: dict[str, np.ndarray], source: str, opset: int
) -> CaptionManifest:
    """Write the step model into the bundle folder `tmp` and check ONNX decoding against torch on `feeds`."""
    from edgefuse.runtime.caption import Captioner
    from edgefuse.trainer.caption import BOS, EOS, PAD, UNK
    from edgefuse.trainer.models.onnx import CONTEXT_OUTPUT

    export_step(model, tmp / STEP_FILE, opset)
    cap = CaptionManifest(
        file=STEP_FILE,
        context_output=CONTEXT_OUTPUT,
        vocab=list(model.caption_vocab),
        bos=BOS,
        eos=EOS,
        pad=PAD,
        unk=UNK,
        max_tokens=spec.captions.max_tokens,  # type: ignore[union-attr]
        hidden=model.caption.hidden,
    )
    captioner = Captioner(tmp, cap)
    context = main_session.run([CONTEXT_OUTPUT], feeds)[0]  # (N, H) from the ONNX main model
    got, want = captioner.decode_ids(context), torch_decode(model, feeds)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a != b:
            raise BundleError(
                f"caption decoding in ONNX Runtime differs from torch on sample {i} of {source}: "
                f"{captioner.text(a)!r} vs {captioner.text(b)!r}; the caption export is wrong, not written"
            )
    cap.parity = f"ONNX Runtime greedy decoding equals torch token for token on {len(got)} samples of {source}"
    return cap
