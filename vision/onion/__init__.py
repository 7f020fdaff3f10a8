"""Tri-level redundancy reduction for ViT training ("Peeling the Onion", Kong et al., AAAI 2023).

    from vision.onion import OnionConfig, OnionViTConfig, ExampleLevelConfig, run_onion
    result = run_onion(splits, OnionConfig(vit=OnionViTConfig(keep_ratio=0.7, attn_ratio=0.3),
                                           example=ExampleLevelConfig(drop=0.2, every=4, max_swaps=3)))

- `vit`: token level (keep the top keep_ratio patch tokens by [CLS] attention, fuse the rest into one token) and
  attention level (keep each query's strongest attn_ratio share of connections) inside a timm ViT.
- `examples`: example level (a dynamic active subset swapped by forgetting counts through `selector.core.ranking.select`).
- `run`: one training run with any mix of levels through `vision.train.train`, timed.
- `command`: `mmselect onion`.

Names are imported lazily so that `mmselect --help` does not import timm.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "OnionViTConfig": "vit", "OnionBlock": "vit", "build_onion_vit": "vit", "build_dense_vit": "vit",
    "configure_sparsity": "vit", "prune_tokens": "vit", "sparse_attention_mask": "vit", "token_counts": "vit",
    "default_prune_blocks": "vit",
    "ExampleLevelConfig": "examples", "DynamicExampleSelector": "examples", "Swap": "examples",
    "OnionConfig": "run", "OnionResult": "run", "run_onion": "run",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vision.onion.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vision.onion' has no attribute {name!r}")
