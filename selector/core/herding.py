"""Herding (Welling 2009, iCaRL form) on a NumPy feature matrix: the one herding of the codebase.

`vision.prune` (the herding pruning ranker) and `selector.core.coincide` (within-cluster sampling) both call
`herding_order`. It is linear-kernel herding, i.e. greedy minimisation of the MMD between the picked rows and all rows
with a linear kernel: the picked set's mean tracks the full mean as closely as possible at every size.
"""
from __future__ import annotations

import numpy as np

__all__ = ["herding_order", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 65536


def _centred_sqnorms(x: np.ndarray, mu: np.ndarray, block: int) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block] - mu
        out[s:s + block] = np.einsum("ij,ij->i", xb, xb)
    return out


def herding_order(x: np.ndarray, budget: int | None = None, *, block: int = DEFAULT_BLOCK,
                  progress: bool = False) -> np.ndarray:
    """Row indices picked by herding, in order: each step adds, without replacement, the row x minimising
    || mu - (S + x) / (t + 1) ||, where mu is the mean of all rows and S the running sum of the t rows picked.

    That is argmin_x ||w - x||^2 with w = (t + 1) mu - S, i.e. ||x - mu||^2 - 2 x.(w - mu) up to a constant, so each
    step is one matrix-vector product streamed over row blocks (no n x d temporary; O(n) extra memory). S is
    updated incrementally. Squared norms are taken around mu, which keeps float32 cancellation small for features
    far from the origin. Note: argmin (DeepCore's argmax is a known bug). Keeps the input's float dtype.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"herding needs an (n, d) matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n = x.shape[0]
    k = n if budget is None else max(0, min(int(budget), n))
    order = np.empty(k, dtype=np.int64)
    if k == 0:
        return order
    mu = x.mean(0)
    sqn = _centred_sqnorms(x, mu, block)
    running = np.zeros_like(mu)
    taken = np.zeros(n, dtype=bool)
    dots = np.empty(n, dtype=x.dtype)
    steps = range(k)
    if progress:
        from selector.core.progress import progress_bar

        steps = progress_bar(steps, desc="herding", leave=False)
    for t in steps:
        w = t * mu - running  # (w - mu) with w = (t + 1) mu - S
        for s in range(0, n, block):
            np.dot(x[s:s + block], w, out=dots[s:s + block])
        cost = sqn - 2 * dots
        cost[taken] = np.inf
        i = int(np.argmin(cost))
        order[t] = i
        taken[i] = True
        running += x[i]
    return order
