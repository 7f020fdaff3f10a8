"""Per-sample gradients reduced by a seeded random projection, and LESS's Adam update direction.

Pure tensor code with no model knowledge: `per_sample_gradients(loss_of, items, params, projector)` works for the
tiny one-layer test model and for a LoRA-wrapped VLM alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

PROJECTIONS = ("rademacher", "gaussian")
_CHUNK = 4096  # input rows of the projection matrix generated (and held in float32) at a time


@dataclass(frozen=True)
class AdamState:
    """The warm-up optimiser's moments for the trainable parameters, flattened in parameter order."""

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def adam_direction(grad: torch.Tensor, state: AdamState) -> torch.Tensor:
    """The update Adam would take from `state` after seeing `grad` (LESS's training-sample feature): the moments
    advanced one step, m / (sqrt(v) + eps), without bias correction, as LESS computes it."""
    m = state.beta1 * state.exp_avg + (1 - state.beta1) * grad
    v = state.beta2 * state.exp_avg_sq + (1 - state.beta2) * grad * grad
    return m / (v.sqrt() + state.eps)


class Projector:
    """x -> x @ R / sqrt(dim) with R an (n_in, dim) random matrix fixed by `seed` (Johnson-Lindenstrauss: inner
    products and cosines are kept in expectation).

    "rademacher" (default; TRAK's choice too): entries +-1, stored as int8, so a 16k x 8192 matrix takes 128 MiB
    instead of 512; "gaussian": N(0, 1) entries, stored as float32. Both give the same distance guarantees; the
    Rademacher one is cheaper to hold. The matrix is built in row chunks from per-chunk generators, so its entries
    depend only on (seed, chunk) and not on how the work is split. When `dim >= n_in` the projection is skipped
    (`identity`): it can only add noise.
    """

    def __init__(self, n_in: int, dim: int = 8192, seed: int = 0, kind: str = "rademacher"):
        if kind not in PROJECTIONS:
            raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got {kind!r}")
        self.n_in, self.seed, self.kind = int(n_in), int(seed), kind
        self.identity = dim >= n_in
        self.dim = self.n_in if self.identity else int(dim)
        self._chunks: list[torch.Tensor] = []
        if not self.identity:
            for k, start in enumerate(range(0, self.n_in, _CHUNK)):
                rows = min(_CHUNK, self.n_in - start)
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
                if kind == "rademacher":
                    self._chunks.append((torch.randint(0, 2, (rows, self.dim), generator=g, dtype=torch.int8) * 2 - 1))
                else:
                    self._chunks.append(torch.randn(rows, self.dim, generator=g))

    def matrix(self) -> torch.Tensor:
        """R / sqrt(dim) in float32 (for tests; the projection itself never materialises it whole)."""
        if self.identity:
            return torch.eye(self.n_in)
        return torch.cat([c.float() for c in self._chunks]) / self.dim ** 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Project rows of `x` (batch, n_in) -> (batch, dim), float32."""
        x = x.float().reshape(-1, self.n_in)
        if self.identity:
            return x.clone()
        out = torch.zeros(x.shape[0], self.dim)
        for k, chunk in enumerate(self._chunks):
            out += x[:, k * _CHUNK:k * _CHUNK + chunk.shape[0]] @ chunk.float()
        return out / self.dim ** 0.5


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """d loss / d params, concatenated into one vector (zeros for parameters the loss does not reach)."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def per_sample_gradients(loss_of: Callable[[object], torch.Tensor], items: Iterable, params: Sequence[torch.Tensor],
                         projector: Projector, adam: AdamState | None = None) -> np.ndarray:
    """(len(items), projector.dim) projected gradients, one backward pass per item.

    One backward per sample, not torch.func's vmap: HF vision-language models (data-dependent image-token scatter,
    peft wrappers) do not run under vmap, and a loop costs the same backward passes. With `adam`, each gradient is
    first turned into Adam's update direction (LESS's feature for training samples)."""
    rows = []
    for item in items:
        g = flat_grad(loss_of(item), params).detach()
        if adam is not None:
            g = adam_direction(g, adam)
        rows.append(g)
    if not rows:
        return np.zeros((0, projector.dim), np.float32)
    return projector(torch.stack(rows)).numpy()


def linear_per_sample_gradients(model: torch.nn.Module, params: Sequence[torch.Tensor],
                                losses_of: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    """(batch, sum of param sizes) per-sample gradients of `params` from ONE batched forward and backward pass.

    `losses_of()` runs the forward pass and returns one loss per sample (samples must not interact: no batch norm;
    padding that no real token attends to, as right padding under causal attention). Every parameter must be the
    weight of a bias-free `nn.Linear` (LoRA's A and B matrices are): its per-sample gradient is
    sum_t grad_out[b, t]^T input[b, t], computed from the input and output gradient the layer saw, the trick
    Opacus uses for differential privacy. Returns None when some parameter is not such a weight (the caller then
    falls back to `per_sample_gradients`' one backward pass per sample).
    """
    owner = {}
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and mod.weight.requires_grad and mod.bias is None:
            owner[id(mod.weight)] = mod
    if any(id(p) not in owner for p in params):
        return None
    mods = [owner[id(p)] for p in params]
    inputs: dict[int, torch.Tensor] = {}
    grads: dict[int, torch.Tensor] = {}
    calls: dict[int, int] = {}
    hooks = []

    def keep(m, i, o):
        inputs[id(m)] = i[0].detach()
        calls[id(m)] = calls.get(id(m), 0) + 1
        o.register_hook(lambda g: grads.__setitem__(id(m), g.detach()))

    for mod in mods:
        hooks.append(mod.register_forward_hook(keep))
    try:
        losses = losses_of()
        losses.sum().backward(inputs=list(params))
    finally:
        for h in hooks:
            h.remove()
    for p in params:
        p.grad = None
    if any(calls.get(id(m), 0) != 1 for m in mods):  # a layer used twice per pass: its input was overwritten
        return None
    n = len(losses)
    cols = []
    for mod in mods:
        a, g = inputs[id(mod)].float(), grads[id(mod)].float()
        a, g = a.reshape(n, -1, a.shape[-1]), g.reshape(n, -1, g.shape[-1])
        cols.append(torch.einsum("bto,bti->boi", g, a).reshape(n, -1))
    return torch.cat(cols, dim=1)


def project_gradients(grads: torch.Tensor, projector: Projector, adam: AdamState | None = None) -> np.ndarray:
    """Rows of per-sample gradients -> projected features (Adam update directions first, with `adam`)."""
    if adam is not None:
        grads = adam_direction(grads, adam)
    return projector(grads).numpy()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): cosines become dot products."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def mean_cosine(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each row of `features`, its mean cosine similarity to the rows of `targets` (the mean of unit target
    vectors, dotted with the unit feature: the same number without the n x m matrix)."""
    return unit_rows(features) @ unit_rows(targets).mean(axis=0)


def vote(group_scores: np.ndarray, percentile: float = 80.0) -> np.ndarray:
    """ICONS' vote: each group (column) votes for the records (rows) above its own `percentile` of scores; the
    result is the vote count plus, to break ties, the mean within-group rank scaled into [0, 0.5) (so it never
    outweighs one vote). NaN rows (unscored) stay NaN."""
    out = np.full(len(group_scores), np.nan)
    ok = ~np.isnan(group_scores).any(axis=1)
    if not ok.any():
        return out
    s = group_scores[ok]
    votes = (s > np.percentile(s, percentile, axis=0)).sum(axis=1)
    ranks = s.argsort(axis=0).argsort(axis=0) / max(len(s), 1)  # in [0, 1)
    out[ok] = votes + 0.5 * ranks.mean(axis=1)
    return out


__all__ = ["AdamState", "PROJECTIONS", "Projector", "adam_direction", "flat_grad", "linear_per_sample_gradients",
           "project_gradients", "mean_cosine", "per_sample_gradients",
           "unit_rows", "vote"]
