"""Input loss curvature (Garg & Roy, CVPR 2023), estimated with Rademacher probes.

The estimator (no official code exists; this is what we compute):

    Curv(x, y) = (1/n) * sum_{i=1..n} || grad_x l(x + h v_i, y) - grad_x l(x, y) ||_2

with l the cross-entropy of the net (eval mode), v_i independent Rademacher vectors (+1/-1 per input element,
drawn from a seeded generator), h = 1e-3 and n = 10 (the authors' helper). Each term is about h * ||H v_i||, a
finite-difference Hessian-vector product, so Curv/h estimates the mean ||H v|| (whose square has expectation
||H||_F^2); the constant 1/h does not change the ranking and is left out, as in the formula. Gradients are taken in
float64 by default: with h = 1e-3 a float32 difference loses most of its digits.

Low curvature = clean, typical examples; high curvature = atypical or mislabelled. Score direction: by default
(keep="low", the paper's "samples with low loss curvature improve data efficiency") score = -curvature, so the
flattest examples are kept; keep="high" keeps the most curved instead.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.prune.base import ProxyConfig, make_ranking, train_proxy

__all__ = ["curvature_scores", "CurvatureRanker"]


def _input_grad(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    # Sum over the batch: in eval mode every example's loss depends on its own input only, so the gradient of the
    # sum with respect to x[j] is example j's own input gradient.
    loss = F.cross_entropy(net(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def curvature_scores(net: nn.Module, data: ImageData, *, h: float = 1e-3, n: int = 10, seed: int = 0,
                     batch_size: int = 256, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-example curvature estimate (see the module docstring), float64 on the CPU."""
    device = next(net.parameters()).device
    model = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, len(data), batch_size):
        x = data.images[i:i + batch_size].to(device=device, dtype=dtype)
        y = data.labels[i:i + batch_size].to(device)
        g0 = _input_grad(model, x, y)
        total = torch.zeros(len(x), dtype=torch.float64, device=device)
        for _ in range(n):
            v = torch.randint(0, 2, x.shape, generator=gen, device=device).to(dtype) * 2 - 1
            g1 = _input_grad(model, x + h * v, y)
            total += torch.linalg.vector_norm((g1 - g0).flatten(1), dim=1).double()
        out.append((total / n).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


@dataclass(frozen=True)
class CurvatureRanker:
    """Mean curvature over `runs` proxy nets stopped at epoch `epoch`; keep="low" (default) or "high"."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    epoch: int = 10
    runs: int = 1
    h: float = 1e-3
    probes: int = 10
    keep: str = "low"
    seed: int = 0
    balance: bool = True

    def __post_init__(self):
        if self.keep not in ("low", "high"):
            raise ValueError(f"keep must be 'low' or 'high', got {self.keep!r}")

    def curvature(self, data: ImageData) -> np.ndarray:
        total = torch.zeros(len(data), dtype=torch.float64)
        for r in range(self.runs):
            net = train_proxy(data, self.proxy, seed=self.seed * 1000 + r, stop_at=self.epoch)
            total += curvature_scores(net, data, h=self.h, n=self.probes, seed=self.seed * 1000 + r)
        return (total / self.runs).numpy()

    def rank(self, data: ImageData) -> Ranking:
        curv = self.curvature(data)
        return make_ranking(data, -curv if self.keep == "low" else curv, "curvature", self.balance, self)
