"""Token- and attention-level sparsity for a timm Vision Transformer ("Peeling the Onion", Kong et al. AAAI 2023).

The model is timm's own `VisionTransformer` built with `OnionBlock` as its block class, so its parameters (and
state-dict keys) are exactly those of the dense timm ViT of the same config. Each block can

* **prune tokens** (token level): after its attention, keep the top `keep_ratio` patch tokens ranked by the [CLS]
  token's attention (mean over heads) and fuse the pruned ones into ONE token, their attention-weighted average
  (EViT-style). The [CLS] token is never a candidate for pruning. The sequence really gets shorter, so the block's
  MLP and every later block run on fewer tokens: this is where the training-time saving comes from.
* **sparsify attention** (attention level): each query row keeps only its strongest `attn_ratio` share of key
  connections (top-k on the pre-softmax scores, the rest masked to -inf before the softmax). The [CLS] key column is
  always kept, and the [CLS] query row stays dense because it is the token-level ranking signal and the classifier's
  input. With dense CPU kernels this removes no FLOPs (the full score matrix is still computed and a top-k is added);
  it is a regulariser / a model of what a sparse kernel could skip, not a speed-up here.

With `keep_ratio == attn_ratio == 1` a block calls timm's `Block.forward` unchanged, so the model equals the dense
ViT bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer

__all__ = [
    "OnionViTConfig", "OnionBlock", "build_onion_vit", "build_dense_vit", "configure_sparsity",
    "default_prune_blocks", "prune_tokens", "sparse_attention_mask", "token_counts",
]


def default_prune_blocks(depth: int) -> tuple[int, ...]:
    """EViT's placement scaled to `depth`: blocks at 1/4, 2/4 and 3/4 depth (DeiT-12: 3, 6, 9)."""
    return tuple(sorted({b for b in (depth // 4, depth // 2, (3 * depth) // 4) if 0 < b < depth}))


@dataclass(frozen=True)
class OnionViTConfig:
    """A small timm ViT plus its token- and attention-level sparsity.

    weight_init is timm's scheme: "jax" (Xavier-uniform linears, zero head) lets the ViT train under the shared
    loop's plain SGD; timm's default "" (trunc-normal std 0.02) leaves attention near uniform for a long time under
    SGD, and on 1.2k digits it stayed near chance for 8 epochs at every lr we tried. "jax" helps but does not make
    SGD reliable (one of three benchmark seeds still plateaued), so the onion run trains with AdamW by default.

    `prune_blocks=None` uses `default_prune_blocks(depth)`; `attn_blocks=None` sparsifies attention in every block.
    A level is off when its ratio is 1.0.
    """

    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    embed_dim: int = 96
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    keep_ratio: float = 1.0
    prune_blocks: tuple[int, ...] | None = None
    fuse_pruned: bool = True
    attn_ratio: float = 1.0
    attn_blocks: tuple[int, ...] | None = None
    weight_init: str = "jax"

    def __post_init__(self):
        for name in ("keep_ratio", "attn_ratio"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {value}")
        for name in ("prune_blocks", "attn_blocks"):
            blocks = getattr(self, name)
            if blocks is not None:
                bad = [b for b in blocks if not 0 <= b < self.depth]
                if bad:
                    raise ValueError(f"{name} {bad} outside 0..{self.depth - 1} (depth {self.depth})")
                object.__setattr__(self, name, tuple(int(b) for b in blocks))

    def timm_kwargs(self) -> dict:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                    num_classes=self.num_classes, embed_dim=self.embed_dim, depth=self.depth,
                    num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, drop_path_rate=self.drop_path_rate,
                    class_token=True, global_pool="token", qkv_bias=True, weight_init=self.weight_init)

    def resolved_prune_blocks(self) -> tuple[int, ...]:
        return default_prune_blocks(self.depth) if self.prune_blocks is None else self.prune_blocks

    def resolved_attn_blocks(self) -> tuple[int, ...]:
        return tuple(range(self.depth)) if self.attn_blocks is None else self.attn_blocks

    def dense(self) -> "OnionViTConfig":
        return replace(self, keep_ratio=1.0, attn_ratio=1.0)


def prune_tokens(x: torch.Tensor, cls_attn: torch.Tensor, keep_ratio: float,
                 fuse: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep [CLS] plus the top `keep_ratio` of the other tokens by `cls_attn`; fuse the rest into one token.

    x: (B, N, C) with [CLS] at position 0; cls_attn: (B, N-1), the [CLS] row's attention to tokens 1..N-1.
    Returns the shorter sequence ([CLS], kept tokens in their original order, then the fused token) and the kept
    positions of x, (B, 1 + k), always starting with 0. EViT rounds the kept count up: k = ceil(keep_ratio * (N-1)).
    """
    B, N, C = x.shape
    n = N - 1
    k = min(n, max(1, math.ceil(keep_ratio * n)))
    if k >= n:
        kept = torch.arange(N, device=x.device).expand(B, N)
        return x, kept
    top = cls_attn.topk(k, dim=1).indices.sort(dim=1).values + 1  # positions in x, ascending
    kept = torch.cat([torch.zeros(B, 1, dtype=top.dtype, device=x.device), top], dim=1)
    out = x.gather(1, kept.unsqueeze(-1).expand(B, k + 1, C))
    if fuse:
        dropped_mask = torch.ones(B, N, dtype=torch.bool, device=x.device)
        dropped_mask.scatter_(1, kept, False)
        # Attention-weighted average of the pruned tokens; the [CLS] slot has weight 0 via the mask.
        w = torch.cat([torch.zeros_like(cls_attn[:, :1]), cls_attn], dim=1) * dropped_mask
        fused = (w.unsqueeze(-1) * x).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1e-12).unsqueeze(-1)
        out = torch.cat([out, fused], dim=1)
    return out, kept


def sparse_attention_mask(scores: torch.Tensor, attn_ratio: float) -> torch.Tensor:
    """Boolean keep-mask (same shape as `scores`, (..., N, N)) with each query row's top `attn_ratio` keys.

    The [CLS] key (column 0) is always kept and the [CLS] query row (row 0) is kept whole. k = ceil(attn_ratio * N);
    rows whose scores tie at the k-th value keep the ties too.
    """
    N = scores.shape[-1]
    k = min(N, max(1, math.ceil(attn_ratio * N)))
    if k >= N:
        return torch.ones_like(scores, dtype=torch.bool)
    with torch.no_grad():
        ranked = scores.detach().float().clone()
        ranked[..., 0] = float("inf")  # [CLS] column always among the kept
        if ranked.device.type == "cpu":
            # The k-th largest score per row by numpy's introselect: for many short rows torch.topk on CPU is ~6x
            # slower (measured 24 ms vs 3.8 ms on 32x3x65x65), which would eat the whole attention-level budget.
            thr = torch.from_numpy(np.partition(ranked.numpy(), N - k, axis=-1)[..., N - k:N - k + 1])
        else:
            thr = ranked.topk(k, dim=-1).values[..., -1:]
        keep = ranked >= thr  # exactly k per row unless scores tie at the threshold
        keep[..., 0, :] = True
    return keep


def _qkv(attn: Attention, x: torch.Tensor):
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def _finish(attn: Attention, x_in: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """timm Attention's output path (head merge, norm, optional gate, projection, dropout)."""
    B, N, _ = x_in.shape
    out = out.transpose(1, 2).reshape(B, N, attn.attn_dim)
    out = attn.norm(out)
    if attn.gate is not None:
        out = out * attn.gate(x_in).sigmoid()
    return attn.proj_drop(attn.proj(out))


def attention_with_cls(attn: Attention, x: torch.Tensor, attn_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """timm `Attention.forward` plus the [CLS] row's attention to the other tokens (mean over heads), (B, N-1).

    timm does not expose attention weights, hence this re-implementation of its forward. Dense rows use the fused
    `scaled_dot_product_attention` kernel and compute only the [CLS] row's softmax on the side; with `attn_ratio < 1`
    the full score matrix is built, masked to each row's top keys, and softmaxed explicitly.
    """
    q, k, v = _qkv(attn, x)
    drop = attn.attn_drop.p if attn.training else 0.0
    if attn_ratio >= 1.0:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        cls = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(-1)[:, :, 0]
    else:
        scores = (q * attn.scale) @ k.transpose(-2, -1)
        keep = sparse_attention_mask(scores, attn_ratio)
        probs = scores.masked_fill(~keep, float("-inf")).softmax(-1)
        cls = probs[:, :, 0]
        out = attn.attn_drop(probs) @ v
    return _finish(attn, x, out), cls[..., 1:].mean(1)


class OnionBlock(Block):
    """timm `Block` with optional token pruning (after attention) and attention sparsity; same parameters.

    Set `keep_ratio`, `attn_ratio` and `fuse_pruned` on the instance (see `configure_sparsity`). When
    `record_kept` is true the last forward's kept positions are left in `last_kept` (for inspection and tests).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_ratio = 1.0
        self.attn_ratio = 1.0
        self.fuse_pruned = True
        self.record_kept = False
        self.last_kept: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if self.keep_ratio >= 1.0 and self.attn_ratio >= 1.0:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        if attn_mask is not None or is_causal:
            raise ValueError("OnionBlock with token pruning or attention sparsity takes no attn_mask / is_causal")
        a, cls_attn = attention_with_cls(self.attn, self.norm1(x), self.attn_ratio)
        x = x + self.drop_path1(self.ls1(a))
        if self.keep_ratio < 1.0:
            x, kept = prune_tokens(x, cls_attn, self.keep_ratio, self.fuse_pruned)
            if self.record_kept:
                self.last_kept = kept.detach()
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def configure_sparsity(model: VisionTransformer, config: OnionViTConfig) -> VisionTransformer:
    """Set each OnionBlock's ratios from `config` (token pruning in prune_blocks, attention sparsity in attn_blocks)."""
    prune = set(config.resolved_prune_blocks())
    sparse = set(config.resolved_attn_blocks())
    for i, blk in enumerate(model.blocks):
        if not isinstance(blk, OnionBlock):
            raise TypeError(f"block {i} is {type(blk).__name__}, not OnionBlock: build the model with build_onion_vit")
        blk.keep_ratio = config.keep_ratio if i in prune else 1.0
        blk.attn_ratio = config.attn_ratio if i in sparse else 1.0
        blk.fuse_pruned = config.fuse_pruned
    return model


def build_dense_vit(config: OnionViTConfig) -> VisionTransformer:
    """The plain timm ViT of the same shape (the dense reference)."""
    return VisionTransformer(**config.timm_kwargs())


def build_onion_vit(config: OnionViTConfig) -> VisionTransformer:
    """A timm ViT whose blocks are OnionBlocks configured from `config`; its state dict matches build_dense_vit's."""
    model = VisionTransformer(**config.timm_kwargs(), block_fn=OnionBlock)
    return configure_sparsity(model, config)


def token_counts(config: OnionViTConfig) -> list[tuple[int, int]]:
    """(tokens into attention, tokens into MLP) per block for one image: what the token level saves."""
    n = (config.img_size // config.patch_size) ** 2 + 1
    prune = set(config.resolved_prune_blocks())
    counts = []
    for i in range(config.depth):
        n_attn = n
        if i in prune and config.keep_ratio < 1.0:
            k = min(n - 1, max(1, math.ceil(config.keep_ratio * (n - 1))))
            if k < n - 1:
                n = 1 + k + (1 if config.fuse_pruned else 0)
        counts.append((n_attn, n))
    return counts
