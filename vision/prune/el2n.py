"""EL2N (Paul et al., NeurIPS 2021): the error L2 norm early in training.

EL2N(x, y) = || softmax(f(x)) - onehot(y) ||_2, measured on nets stopped at epoch E of their schedule and averaged
over R independently seeded runs (the paper: E about 20, R = 10).

Score direction: higher EL2N = harder example = keep. Pruning drops the easiest (lowest EL2N) first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.prune.base import ProxyConfig, make_ranking, mean_over_proxies
from vision.train import predict

__all__ = ["el2n_scores", "EL2NRanker"]


def el2n_scores(net: nn.Module, data: ImageData, batch_size: int = 1024) -> torch.Tensor:
    """Per-example EL2N of `net` (eval mode) on `data`, float64 on the CPU."""
    logits = predict(net, data.images, batch_size=batch_size).double()
    onehot = F.one_hot(data.labels, logits.shape[1]).double()
    return torch.linalg.vector_norm(logits.softmax(1) - onehot, dim=1)


@dataclass(frozen=True)
class EL2NRanker:
    """Mean EL2N over `runs` proxy nets, each trained to epoch `epoch` of the proxy schedule."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    epoch: int = 10
    runs: int = 10
    seed: int = 0
    balance: bool = True

    def scores(self, data: ImageData) -> np.ndarray:
        return mean_over_proxies(data, self.proxy, seed=self.seed, runs=self.runs, epoch=self.epoch,
                                 score=el2n_scores)

    def rank(self, data: ImageData) -> Ranking:
        return make_ranking(data, self.scores(data), "el2n", self.balance, self)
