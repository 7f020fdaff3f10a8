"""GraNd (Paul et al., NeurIPS 2021): the norm of each example's loss gradient over ALL parameters.

GraNd(x, y) = || grad_theta CE(f_theta(x), y) ||_2, computed with per-sample gradients from `torch.func`
(`vmap(grad(...))` over a `functional_call`), not the last layer only; averaged over R seeded runs stopped at
epoch E (E = 0 scores at initialisation, as in the paper's GraNd-at-init).

Score direction: higher GraNd = keep. The net is scored in eval mode, so BatchNorm (ResNet-18) uses running
statistics and each example's gradient is independent of the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.prune.base import ProxyConfig, make_ranking, mean_over_proxies

__all__ = ["grand_scores", "GraNdRanker"]


def grand_scores(net: nn.Module, data: ImageData, batch_size: int = 128) -> torch.Tensor:
    """Per-example full-parameter gradient norms of the cross-entropy, float64 on the CPU."""
    net.eval()
    device = next(net.parameters()).device
    params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def loss_one(p, b, x, y):
        logits = functional_call(net, (p, b), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_sample_grad = vmap(grad(loss_one), in_dims=(None, None, 0, 0))
    out = []
    for i in range(0, len(data), batch_size):
        x = data.images[i:i + batch_size].to(device)
        y = data.labels[i:i + batch_size].to(device)
        grads = per_sample_grad(params, buffers, x, y)
        sq = sum(g.flatten(1).double().pow(2).sum(1) for g in grads.values())
        out.append(sq.sqrt().cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


@dataclass(frozen=True)
class GraNdRanker:
    """Mean GraNd over `runs` proxy nets stopped at epoch `epoch` (0 = at initialisation)."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    epoch: int = 10
    runs: int = 10
    seed: int = 0
    balance: bool = True
    batch_size: int = 128

    def scores(self, data: ImageData) -> np.ndarray:
        return mean_over_proxies(data, self.proxy, seed=self.seed, runs=self.runs, epoch=self.epoch,
                                 score=lambda net, d: grand_scores(net, d, self.batch_size))

    def rank(self, data: ImageData) -> Ranking:
        return make_ranking(data, self.scores(data), "grand", self.balance, self)
