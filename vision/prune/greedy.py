"""Greedy coreset orders on a feature matrix: herding (argmin) and k-center greedy, in O(n) extra memory.

Both take an (n, d) tensor and return the indices picked, in order. k-center runs on whatever device the features are
on (pass CUDA tensors to use a GPU) and keeps the features' dtype; herding is `selector.core.herding` (NumPy, CPU),
shared with COINCIDE's within-cluster sampling so that the codebase has one herding. Neither ever materialises an
n x d temporary or a budget x n distance matrix: each step is one matrix-vector product over the features, streamed
in row blocks.

Distances are expanded around the mean m of the rows, ||x - c||^2 = ||x - m||^2 - 2 (x - m).(c - m) + ||c - m||^2,
with (x - m).(c - m) = x.(c - m) - m.(c - m): the same single matvec as the plain expansion, but the squared norms
are those of centred rows, so float32 loses far fewer digits to cancellation when features sit far from the origin.
"""
from __future__ import annotations

import torch
from selector.core.progress import progress_bar

from selector.core.herding import DEFAULT_BLOCK, herding_order as core_herding_order

__all__ = ["herding_order", "kcenter_order", "row_sqnorms"]


def row_sqnorms(x: torch.Tensor, block: int = DEFAULT_BLOCK, centre: torch.Tensor | None = None) -> torch.Tensor:
    """||x_i - centre||^2 for each row (centre defaults to 0), block by block (no full-size temporary)."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block] if centre is None else x[s:s + block] - centre
        out[s:s + block] = torch.einsum("ij,ij->i", xb, xb)
    return out


def _matvec(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, block: int) -> torch.Tensor:
    for s in range(0, x.shape[0], block):
        torch.mv(x[s:s + block], w, out=out[s:s + block])
    return out


def herding_order(x: torch.Tensor, budget: int | None = None, *, block: int = DEFAULT_BLOCK,
                  progress: bool = False) -> torch.Tensor:
    """Herding (argmin, incremental running sum): `selector.core.herding.herding_order`, the codebase's one
    herding, on a tensor. It runs in NumPy on the CPU; the picked indices come back on the features' device."""
    order = core_herding_order(x.detach().cpu().numpy(), budget, block=block, progress=progress)
    return torch.from_numpy(order).to(x.device)


def kcenter_order(x: torch.Tensor, budget: int | None = None, *, start: int | None = None,
                  block: int = DEFAULT_BLOCK, progress: bool = False) -> torch.Tensor:
    """k-center greedy (Sener & Savarese 2018): repeatedly pick the row farthest from its nearest picked centre.

    Starts from `start`, or by default from the row nearest the mean (as the DC authors do). Keeps one vector of
    squared distances to the nearest centre (O(n) memory), updated per pick with
    ||x - c||^2 (expanded around the mean, see the module docstring) streamed in row blocks.
    """
    n = x.shape[0]
    k = n if budget is None else min(int(budget), n)
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    m = x.mean(0)
    sqn = row_sqnorms(x, block, centre=m)  # ||x - m||^2
    dots = torch.empty(n, dtype=x.dtype, device=x.device)
    if start is None:
        start = int(torch.argmin(sqn))
    mind = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    order = torch.empty(k, dtype=torch.long, device=x.device)
    i = start
    for t in progress_bar(range(k), desc="k-center", disable=not progress, leave=False):
        order[t] = i
        cm = x[i] - m
        _matvec(x, cm, dots, block)  # x.(c - m); subtract m.(c - m) to get (x - m).(c - m)
        dots -= torch.dot(m, cm)
        torch.minimum(mind, (sqn - 2 * dots + sqn[i]).clamp_(min=0), out=mind)
        mind[i] = -1.0  # picked rows never come back (-1 survives later minima), even if duplicates leave all at 0
        i = int(torch.argmax(mind))
    return order
