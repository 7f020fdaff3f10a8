"""Greedy coreset orders on a feature matrix: herding (argmin) and k-center greedy, in O(n) extra memory.

Both take an (n, d) tensor and return the indices picked, in order. They run on whatever device the features are on
(pass CUDA tensors to use a GPU) and keep the features' dtype. Neither ever materialises an n x d temporary or a
budget x n distance matrix: each step is one matrix-vector product over the features, streamed in row blocks.

Distances are expanded around the mean m of the rows, ||x - c||^2 = ||x - m||^2 - 2 (x - m).(c - m) + ||c - m||^2,
with (x - m).(c - m) = x.(c - m) - m.(c - m): the same single matvec as the plain expansion, but the squared norms
are those of centred rows, so float32 loses far fewer digits to cancellation when features sit far from the origin.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

__all__ = ["herding_order", "kcenter_order", "row_sqnorms"]

DEFAULT_BLOCK = 65536


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
    """Herding (Welling 2009, iCaRL form): pick, without replacement, the x minimising
    || mu - (S + x) / (t + 1) ||, where mu is the mean of all rows and S the running sum of the t rows picked so far.

    That is argmin_x ||w - x||^2 with w = (t + 1) mu - S, i.e. ||x - mu||^2 - 2 x . (w - mu) up to a constant: each
    step is one matrix-vector product; S is updated incrementally (never recomputed). Note: argmin (DeepCore's argmax is a bug).
    """
    n = x.shape[0]
    k = n if budget is None else min(int(budget), n)
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    mu = x.mean(0)
    sqn = row_sqnorms(x, block, centre=mu)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    dots = torch.empty(n, dtype=x.dtype, device=x.device)
    order = torch.empty(k, dtype=torch.long, device=x.device)
    for t in tqdm(range(k), desc="herding", disable=not progress, leave=False):
        # ||w - x||^2 with w = (t+1) mu - S, expanded around mu (constants dropped): ||x - mu||^2 - 2 x.(w - mu)
        _matvec(x, t * mu - running, dots, block)
        cost = sqn - 2 * dots
        cost.masked_fill_(taken, float("inf"))
        i = int(torch.argmin(cost))
        order[t] = i
        taken[i] = True
        running += x[i]
    return order


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
    for t in tqdm(range(k), desc="k-center", disable=not progress, leave=False):
        order[t] = i
        cm = x[i] - m
        _matvec(x, cm, dots, block)  # x.(c - m); subtract m.(c - m) to get (x - m).(c - m)
        dots -= torch.dot(m, cm)
        torch.minimum(mind, (sqn - 2 * dots + sqn[i]).clamp_(min=0), out=mind)
        mind[i] = -1.0  # picked rows never come back (-1 survives later minima), even if duplicates leave all at 0
        i = int(torch.argmax(mind))
    return order
