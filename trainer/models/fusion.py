"""Fusion methods: (B, M, D) modality tokens + (B, M) presence mask -> per-head logits.

Every method is a small module registered in FUSIONS under its spec name and built as
`cls(n_modalities, dim, classes, cfg, dropout)`, where `classes` maps head -> class count. Most methods reduce the
tokens to one fused vector and share the per-head linear classifiers of `Fusion`; "late" classifies each modality.

Mask contract (FusionModel enforces the first half): a masked modality's token is already the model's learned
"missing" token, so it carries nothing of the masked input. Methods that pool over modalities exclude masked ones
(attention masks them as keys, max/softmax/mean pool over present ones only); tensor and low-rank fusion replace a
masked modality by the neutral vector [0, ..., 0, 1], which drops it from the product. A row with no modality
present yields finite logits (the heads' biases, or a function of the missing tokens only).

Masked scores use -1e4, not -inf: exp(-1e4) is exactly 0 in float32 (and -1e4 fits in float16 for TensorRT), and a
softmax over an all-masked row stays finite instead of becoming NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from edgefuse.spec import FusionSpec, register_fusion_name

NEG = -1e4  # score for a masked modality; see the module docstring
TENSOR_MAX_FEATURES = 1024  # tensor fusion: cap on (tensor_dim + 1) ** M, the outer product's size


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(B, M, D), (B, M) -> (B, D) mean over present modalities; zeros for a row with none."""
    return (x * mask.unsqueeze(2)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def _per_modality_linear(n_modalities: int, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Weights (M, d_in, d_out) and bias (M, 1, d_out) of M independent linear maps, applied by one batched matmul."""
    weight = torch.empty(n_modalities, d_in, d_out)
    for w in weight:
        nn.init.xavier_uniform_(w)
    return nn.Parameter(weight), nn.Parameter(torch.zeros(n_modalities, 1, d_out))


def _apply_per_modality(z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(B, M, d_in) -> (B, M, d_out), modality m through its own linear map."""
    return (torch.matmul(z.transpose(0, 1), weight) + bias).transpose(0, 1)  # (B, M, d_out)


class Fusion(nn.Module):
    """Base of the methods that fuse tokens into one (B, d_fused) vector; subclasses implement `fuse`."""

    def __init__(self, d_fused: int, classes: dict[str, int], dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({h: nn.Linear(d_fused, n) for h, n in classes.items()})

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor, mask: Tensor) -> dict[str, Tensor]:
        fused = self.drop(self.fuse(z, mask))  # (B, d_fused)
        return {h: head(fused) for h, head in self.heads.items()}  # head -> (B, n_classes)

    def aux_loss(self) -> Tensor | None:
        """Extra training loss of the last forward (adversarial only)."""
        return None


class ConcatFusion(Fusion):
    """Early fusion: concatenate the M tokens (missing ones as the learned missing token), then an MLP."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.mlp = nn.Sequential(nn.Linear(n_modalities * dim, dim), nn.GELU())

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        return self.mlp(z.flatten(1))  # (B, D)


class LateFusion(nn.Module):
    """Late fusion: a linear classifier per modality and head; logits averaged over present modalities."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.names = list(classes)
        self.sizes = [classes[h] for h in self.names]
        # all heads of all modalities as one batched map: (M, D, sum of classes)
        self.weight, self.bias = _per_modality_linear(n_modalities, dim, sum(self.sizes))

    def forward(self, z: Tensor, mask: Tensor) -> dict[str, Tensor]:
        logits = _apply_per_modality(self.drop(z), self.weight, self.bias)  # (B, M, sum C)
        mean = _masked_mean(logits, mask)  # (B, sum C)
        return dict(zip(self.names, torch.split(mean, self.sizes, dim=1), strict=True))

    def aux_loss(self) -> Tensor | None:
        return None


class _MultiHeadAttention(nn.Module):
    """Multi-head attention over modality tokens; masked keys get an additive NEG bias (see the module docstring)."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, dim // n_heads
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, key_bias: Tensor, query: Tensor | None = None) -> Tensor:
        """Self-attention over `tokens` (B, M, D), or attention of a learned `query` (1, L, D), already in the
        projected space, over them; key_bias (B, 1, 1, M). Returns (B, L, D)."""
        b, m, _ = tokens.shape
        qkv = self.qkv(tokens).reshape(b, m, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # (3, B, h, M, d)
        q, k, v = qkv.unbind(0)  # (B, h, M, d) each
        if query is not None:
            q = query.reshape(1, query.shape[1], self.n_heads, self.d_head).transpose(1, 2)  # (1, h, L, d)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.d_head**-0.5 + key_bias  # (B, h, L, M)
        attended = torch.matmul(scores.softmax(dim=3), v)  # (B, h, L, d)
        return self.out(attended.transpose(1, 2).flatten(2))  # (B, L, D)


def _key_bias(mask: Tensor) -> Tensor:
    """(B, M) presence -> (B, 1, 1, M) additive attention bias: 0 for present keys, NEG for masked ones."""
    return ((1.0 - mask) * NEG)[:, None, None, :]


class AttentionFusion(Fusion):
    """One pre-norm transformer layer across modality tokens (present ones as keys), then a masked mean."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.position = nn.Parameter(torch.randn(n_modalities, dim) * 0.02)  # which modality a token is
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _MultiHeadAttention(dim, cfg.heads)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        x = z + self.position  # (B, M, D)
        h = self.norm1(x)
        x = x + self.attn(h, _key_bias(mask))  # (B, M, D)
        x = x + self.ffn(self.norm2(x))  # (B, M, D)
        return _masked_mean(x, mask)  # (B, D)


class AttentionPoolFusion(Fusion):
    """A learned query attends over the modality tokens (present ones as keys)."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.position = nn.Parameter(torch.randn(n_modalities, dim) * 0.02)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = _MultiHeadAttention(dim, cfg.heads)

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        return self.attn(self.norm(z + self.position), _key_bias(mask), self.query)[:, 0]  # (B, D)


class MaxAlignFusion(Fusion):
    """Modality-specific projections into a shared space, element-wise max over present modalities."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.weight, self.bias = _per_modality_linear(n_modalities, dim, dim)

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        shared = _apply_per_modality(z, self.weight, self.bias)  # (B, M, D)
        present = mask.unsqueeze(2) > 0.5  # (B, M, 1)
        best = torch.where(present, shared, torch.full_like(shared, NEG)).amax(dim=1)  # (B, D)
        return best * mask.amax(dim=1, keepdim=True)  # (B, D); zeros for a row with nothing present


class WeightedAlignFusion(Fusion):
    """Shared-space projections, summed with a softmax gate computed over present modalities."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.weight, self.bias = _per_modality_linear(n_modalities, dim, dim)
        self.gate = nn.Sequential(nn.Tanh(), nn.Linear(dim, 1))

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        shared = _apply_per_modality(z, self.weight, self.bias)  # (B, M, D)
        scores = self.gate(shared).squeeze(2) + (1.0 - mask) * NEG  # (B, M)
        fused = (scores.softmax(dim=1).unsqueeze(2) * shared).sum(dim=1)  # (B, D)
        return fused * mask.amax(dim=1, keepdim=True)  # (B, D)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


class AdversarialFusion(Fusion):
    """Shared-space projections averaged over present modalities, made modality-invariant adversarially.

    A discriminator learns to tell which modality a projected token came from; the gradient-reversal layer makes
    the projections (and encoders) work against it. Its cross-entropy over present tokens, times
    `adversarial_weight`, is `aux_loss()`; it is computed in training mode only (not part of inference or export).
    """

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.weight, self.bias = _per_modality_linear(n_modalities, dim, dim)
        self.discriminator = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_modalities))
        self.loss_weight = cfg.adversarial_weight
        self._aux: Tensor | None = None

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        shared = _apply_per_modality(z, self.weight, self.bias)  # (B, M, D)
        self._aux = self._discriminator_loss(shared, mask) if self.training else None
        return _masked_mean(shared, mask)  # (B, D)

    def _discriminator_loss(self, shared: Tensor, mask: Tensor) -> Tensor:
        b, m, _ = shared.shape
        logits = self.discriminator(_GradientReversal.apply(shared))  # (B, M, M)
        target = torch.arange(m, device=shared.device).expand(b, m)  # (B, M): token m came from modality m
        ce = nn.functional.cross_entropy(logits.reshape(b * m, m), target.reshape(-1), reduction="none")
        per_token = mask.reshape(-1)  # (B*M,)
        return self.loss_weight * (ce * per_token).sum() / per_token.sum().clamp(min=1.0)

    def aux_loss(self) -> Tensor | None:
        return self._aux


def tensor_fusion_dim(requested: int, n_modalities: int) -> int:
    """The per-modality size tensor fusion uses: `requested`, lowered until (t + 1) ** M <= TENSOR_MAX_FEATURES.

    With the default 8: 2 or 3 modalities keep 8 (81, 729 features), 4 use 4 (625), 5 use 3 (1024).
    """
    t = requested
    while t > 1 and (t + 1) ** n_modalities > TENSOR_MAX_FEATURES:
        t -= 1
    return t


class TensorFusion(Fusion):
    """Tensor fusion: project each token to t dims, outer product of the [z_m, 1] vectors, then an MLP.

    A masked modality contributes the neutral [0, ..., 0, 1], which keeps only the other modalities' sub-products.
    t is `tensor_dim`, reduced automatically (tensor_fusion_dim) so the (t + 1) ** M product stays small.
    """

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.n_modalities, self.t = n_modalities, tensor_fusion_dim(cfg.tensor_dim, n_modalities)
        self.weight, self.bias = _per_modality_linear(n_modalities, dim, self.t)
        n_features = (self.t + 1) ** n_modalities
        self.mlp = nn.Sequential(nn.LayerNorm(n_features), nn.Linear(n_features, dim), nn.GELU())

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        small = _apply_per_modality(z, self.weight, self.bias) * mask.unsqueeze(2)  # (B, M, t); masked -> 0
        ones = torch.ones_like(small[:, :, :1])  # (B, M, 1)
        v = torch.cat([small, ones], dim=2)  # (B, M, t+1); masked -> [0, ..., 0, 1]
        product = v[:, 0]  # (B, t+1)
        for i in range(1, self.n_modalities):
            product = (product.unsqueeze(2) * v[:, i].unsqueeze(1)).flatten(1)  # (B, (t+1)^(i+1))
        return self.mlp(product)  # (B, D)


class LowRankFusion(Fusion):
    """Low-rank multimodal fusion (LMF): rank-r factors per modality over [z_m, 1], product over modalities, summed
    over rank. A masked modality's [0, ..., 0, 1] selects its factors' bias row, a learned constant."""

    def __init__(self, n_modalities: int, dim: int, classes: dict[str, int], cfg: FusionSpec, dropout: float):
        super().__init__(dim, classes, dropout)
        self.n_modalities, self.rank, self.dim = n_modalities, cfg.rank, dim
        self.factors = nn.Parameter(torch.randn(n_modalities, dim + 1, cfg.rank * dim) * (dim + 1) ** -0.5)
        self.rank_weight = nn.Parameter(torch.full((cfg.rank, 1), 1.0 / cfg.rank))
        self.norm = nn.LayerNorm(dim)

    def fuse(self, z: Tensor, mask: Tensor) -> Tensor:
        ones = torch.ones_like(z[:, :, :1])  # (B, M, 1)
        v = torch.cat([z * mask.unsqueeze(2), ones], dim=2)  # (B, M, D+1); masked -> [0, ..., 0, 1]
        per_modality = torch.matmul(v.transpose(0, 1), self.factors)  # (M, B, r*D)
        product = per_modality[0]
        for i in range(1, self.n_modalities):
            product = product * per_modality[i]  # (B, r*D)
        fused = torch.matmul(product.reshape(-1, self.rank, self.dim).transpose(1, 2), self.rank_weight)  # (B, D, 1)
        return self.norm(fused.squeeze(2))  # (B, D)


def register_fusion(name: str, description: str = "") -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a fusion method under `name`, selectable as model.fusion.method in any spec. The
    class is built as cls(n_modalities, dim, classes, cfg, dropout) and returns head -> logits (see the docstring)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        FUSIONS[name] = cls
        register_fusion_name(name, description or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return add


FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "late": LateFusion,
    "attention": AttentionFusion,
    "attention_pool": AttentionPoolFusion,
    "max_align": MaxAlignFusion,
    "weighted_align": WeightedAlignFusion,
    "adversarial": AdversarialFusion,
    "tensor": TensorFusion,
    "low_rank": LowRankFusion,
}
