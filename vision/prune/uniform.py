"""The random baseline: uniform scores from a seed (every pruning benchmark reports it).

Score direction: meaningless by design; with class groups `select` keeps a random, class-balanced subset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.prune.base import make_ranking

__all__ = ["RandomImageRanker"]


@dataclass(frozen=True)
class RandomImageRanker:
    seed: int = 0
    balance: bool = True

    def rank(self, data: ImageData) -> Ranking:
        scores = np.random.default_rng(self.seed).random(len(data))
        return make_ranking(data, scores, "random", self.balance, self)
