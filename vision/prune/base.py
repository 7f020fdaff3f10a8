"""What the pruning rankers share: the proxy model they train, and turning scores or greedy orders into a `Ranking`.

Every ranker here is a small frozen dataclass with `rank(data: ImageData) -> Ranking`. Ranking ids are the data's
`ids` (positions in the source dataset); groups are the class labels when `balance=True`, so `select` keeps the same
fraction of every class (set `balance=False` for one global cut).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.nets import build_net
from vision.train import Hook, TrainConfig, TrainResult, train

__all__ = ["ProxyConfig", "StopAt", "train_proxy", "make_ranking", "order_scores", "settings_of"]


@dataclass(frozen=True)
class ProxyConfig:
    """The proxy network a ranker trains (or embeds with) and its schedule.

    epochs is the length of the full schedule (lr x0.1 at half-way); rankers that score "at epoch E" stop there.
    width/depth apply to the ConvNet only.
    """

    net: str = "convnet"
    width: int = 128
    depth: int = 3
    epochs: int = 40
    lr: float = 0.01
    batch_size: int = 128
    device: str | None = None
    progress: bool = False

    def build(self, data: ImageData, seed: int) -> nn.Module:
        options = {"width": self.width, "depth": self.depth} if self.net.lower().startswith("convnet") else {}
        return build_net(self.net, data.channels, data.num_classes, data.image_size, seed=seed, **options)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=seed,
                           device=self.device, progress=self.progress)


class StopAt(Hook):
    """Stop training once `epochs` epochs have run (0 never trains: see `train_proxy`)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch(self, info) -> bool:
        return info.epoch + 1 >= self.epochs


def train_proxy(data: ImageData, proxy: ProxyConfig, seed: int, *, stop_at: int | None = None,
                hooks: Sequence[Hook] = ()) -> nn.Module:
    """A proxy net with weights from `seed`, trained on `data` under the full `proxy` schedule and stopped after
    `stop_at` epochs (None: the whole schedule; 0: returned untrained). Returned in eval mode."""
    net = proxy.build(data, seed)
    stop = proxy.epochs if stop_at is None else min(stop_at, proxy.epochs)
    if stop <= 0:
        if proxy.device:
            net.to(proxy.device)
        return net.eval()
    result: TrainResult = train(net, data, proxy.train_config(seed), hooks=[*hooks, StopAt(stop)])
    return result.net.eval()


def mean_over_proxies(data: ImageData, proxy: ProxyConfig, *, seed: int, runs: int, epoch: int,
                      score: Callable[[nn.Module, ImageData], torch.Tensor]) -> np.ndarray:
    """Average a per-example `score(net, data)` over `runs` proxy nets, each stopped at `epoch` (EL2N, GraNd)."""
    total = torch.zeros(len(data), dtype=torch.float64)
    for r in range(runs):
        total += score(train_proxy(data, proxy, seed=seed * 1000 + r, stop_at=epoch), data)
    return (total / runs).numpy()


def order_scores(order: np.ndarray, n: int) -> np.ndarray:
    """Scores for a greedy order over n items: the j-th of k picked gets 1 - j/k (first = 1); unpicked items NaN.

    Normalising by k makes per-class orders of different lengths interleave in proportion under a global cut.
    """
    scores = np.full(n, np.nan)
    k = len(order)
    if k:
        scores[np.asarray(order, dtype=np.int64)] = 1.0 - np.arange(k) / k
    return scores


def make_ranking(data: ImageData, scores: np.ndarray | torch.Tensor, source: str, balance: bool,
                 settings: Any = None) -> Ranking:
    """Wrap per-example scores (higher = keep) as a Ranking over `data.ids`, grouped by class when `balance`."""
    scores = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, float)
    groups = data.labels.numpy() if balance else None
    return Ranking(ids=data.ids.numpy(), scores=scores, groups=groups, source=source,
                   meta={"settings": settings_of(settings)} if settings is not None else {})


def settings_of(obj: Any) -> dict:
    """A JSON-ready dict of a ranker's settings."""
    if is_dataclass(obj):
        return {k: (settings_of(v) if isinstance(v, dict) else v) for k, v in asdict(obj).items()}
    return dict(obj)
