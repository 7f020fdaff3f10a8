"""Herding and k-center greedy as rankers, on the embeddings of a chosen model.

features="trained" embeds with the proxy net trained over its schedule (DeepCore-style), "random" with an untrained
proxy (seeded), "pixels" uses the flattened images. The reference code ignores the chosen model; here it is the
`proxy` setting. Selection is per class (`per_class=True`, the DC authors' choice) or over the whole set. k-center's
greedy search runs on `proxy.device` (default: CUDA when present); herding is the codebase's one herding,
`selector.core.herding` (NumPy, on the CPU).

Score direction: both are greedy orders, scored 1 - j/k for the j-th of k picks (first pick = 1, higher = keep).
Per class, `select` with class groups then takes each class's first picks, exactly the per-class greedy subset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.nets import default_device
from vision.prune.base import ProxyConfig, make_ranking, order_scores, train_proxy
from vision.prune.greedy import herding_order, kcenter_order
from vision.train import embeddings

__all__ = ["extract_features", "HerdingRanker", "KCenterRanker", "FEATURE_SPACES"]

FEATURE_SPACES = ("trained", "random", "pixels")


def extract_features(data: ImageData, features: str, proxy: ProxyConfig, seed: int) -> torch.Tensor:
    """(n, d) float32 features of `data` in the chosen space, on the CPU."""
    if features == "pixels":
        return data.images.flatten(1).float()
    if features not in FEATURE_SPACES:
        raise ValueError(f"features must be one of {FEATURE_SPACES}, got {features!r}")
    net = train_proxy(data, proxy, seed=seed, stop_at=0 if features == "random" else None)
    return embeddings(net, data)


def _greedy_scores(feats: torch.Tensor, labels: np.ndarray, per_class: bool, fn, budget: int | float | None,
                   device: torch.device) -> np.ndarray:
    n = len(labels)
    scores = np.full(n, np.nan)
    parts = [np.flatnonzero(labels == c) for c in np.unique(labels)] if per_class else [np.arange(n)]
    for idx in parts:
        k = None if budget is None else (int(budget) if isinstance(budget, int) else int(np.ceil(budget * len(idx))))
        x = feats[torch.as_tensor(idx)].to(device)
        order = fn(x, k).cpu().numpy()
        scores[idx] = order_scores(order, len(idx))
    return scores


@dataclass(frozen=True)
class _GreedyRanker:
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    features: str = "trained"
    per_class: bool = True
    budget: int | float | None = None  # picks per class (or overall); None orders everything
    seed: int = 0

    def rank_features(self, data: ImageData, feats: torch.Tensor) -> Ranking:
        device = torch.device(self.proxy.device) if self.proxy.device else default_device()
        scores = _greedy_scores(feats, data.labels.numpy(), self.per_class, self._order, self.budget, device)
        return make_ranking(data, scores, self.name, self.per_class, self)

    def rank(self, data: ImageData) -> Ranking:
        return self.rank_features(data, extract_features(data, self.features, self.proxy, self.seed))


@dataclass(frozen=True)
class HerdingRanker(_GreedyRanker):
    """Herding (argmin, incremental running sum) per class on the chosen model's embeddings."""

    name = "herding"

    @staticmethod
    def _order(x: torch.Tensor, k: int | None) -> torch.Tensor:
        return herding_order(x, k)


@dataclass(frozen=True)
class KCenterRanker(_GreedyRanker):
    """k-center greedy per class (or global), starting from the point nearest the (class) mean."""

    name = "kcenter"

    @staticmethod
    def _order(x: torch.Tensor, k: int | None) -> torch.Tensor:
        return kcenter_order(x, k)
