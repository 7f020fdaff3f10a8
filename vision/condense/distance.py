"""Matching distances of the condensation family.

`gradient_distance` is DC's layer-wise gradient distance: for each parameter tensor, flatten to one row per output
unit (conv: out x in*k*k; linear: out x in), and sum over rows of (1 - cosine similarity) between the real and the
synthetic gradient. 1-d tensors (biases, norm affine parameters) contribute nothing, as in the reference. "mse" and
"cos" (one cosine over all gradients flattened) are the reference's alternatives.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["layer_distance", "gradient_distance", "mean_embedding_distance"]

_EPS = 1e-6


def layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """Sum over output rows of (1 - cos(g_real_row, g_syn_row)); zero for 1-d tensors."""
    if g_real.dim() == 1:
        return g_real.new_zeros(())
    a = g_real.reshape(g_real.shape[0], -1)
    b = g_syn.reshape(g_syn.shape[0], -1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + _EPS)
    return (1.0 - cos).sum()


def gradient_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor],
                      metric: str = "ours") -> torch.Tensor:
    """Distance between two lists of per-parameter gradients (one class's real and synthetic gradients)."""
    if len(g_real) != len(g_syn):
        raise ValueError(f"gradient lists differ in length: {len(g_real)} vs {len(g_syn)}")
    if metric == "ours":
        return sum(layer_distance(a, b) for a, b in zip(g_real, g_syn))
    if metric == "mse":
        return sum(((a - b) ** 2).sum() for a, b in zip(g_real, g_syn))
    if metric == "cos":
        a = torch.cat([t.reshape(-1) for t in g_real])
        b = torch.cat([t.reshape(-1) for t in g_syn])
        return 1.0 - (a * b).sum() / (a.norm() * b.norm() + _EPS)
    raise ValueError(f"unknown gradient distance {metric!r}; choose 'ours', 'mse' or 'cos'")


def mean_embedding_distance(e_real: torch.Tensor, e_syn: torch.Tensor) -> torch.Tensor:
    """DM's loss for a stack of classes: sum over classes of ||mean real embedding - mean synthetic embedding||^2.

    e_real: (C, n_real, D), e_syn: (C, n_syn, D)."""
    return ((e_real.mean(1) - e_syn.mean(1)) ** 2).sum()
