"""Forgetting events (Toneva et al., ICLR 2019) as a training hook and a ranker.

A forgetting event is a correct -> incorrect flip between two consecutive presentations of an example during
training. Examples never classified correctly count as MOST forgotten: they get (largest count seen) + 1, a finite
stand-in for Toneva's "infinite" so scores stay JSON-safe (DeepCore gives them 0, which prunes them first: a bug).

Score direction: score = forgetting count, higher = keep. Pruning drops the least-forgotten ("unforgettable":
learned and never forgotten) examples first. Equal counts are ordered by when the example was first learned (later =
harder = kept first), a tie-break of ours (Toneva et al. leave ties unordered): on an easy set such as digits 92-94%
of examples are never forgotten, and without it the count cannot rank them at all (BENCHMARKS.md, issue 20).
The tie-break stays below one count, so it never reorders different counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from selector.core.ranking import Ranking
from vision.data import ImageData
from vision.prune.base import ProxyConfig, make_ranking, train_proxy
from vision.train import BatchInfo, Hook

__all__ = ["ForgettingTracker", "ForgettingRanker"]


class ForgettingTracker(Hook):
    """Counts forgetting events per training example from the loop's per-batch outputs."""

    def __init__(self, n: int):
        self.n = n
        self.previous = torch.zeros(n, dtype=torch.bool)  # correct at the last presentation
        self.events = torch.zeros(n, dtype=torch.long)
        self.learned = torch.zeros(n, dtype=torch.bool)  # correct at least once
        self.presentations = torch.zeros(n, dtype=torch.long)
        self.first_learned = torch.zeros(n, dtype=torch.long)  # presentation (1-based) first correct; 0: not yet

    def on_batch(self, batch: BatchInfo) -> None:
        idx = batch.indices.cpu()
        labels = batch.labels.argmax(1) if batch.labels.ndim == 2 else batch.labels
        correct = (batch.logits.argmax(1) == labels).cpu()
        self.events[idx] += (self.previous[idx] & ~correct).long()
        self.presentations[idx] += 1
        newly = correct & ~self.learned[idx]
        self.first_learned[idx[newly]] = self.presentations[idx[newly]]
        self.learned[idx] |= correct
        self.previous[idx] = correct

    def counts(self) -> torch.Tensor:
        """Forgetting events per example; never-learned examples get max(count) + 1 (most forgotten)."""
        counts = self.events.clone()
        top = int(counts.max()) if self.n else 0
        counts[~self.learned] = top + 1
        return counts

    def lateness(self) -> torch.Tensor:
        """When each example was first learned, as a share of the schedule in [0, 1): 0 = at its first
        presentation; never-learned examples get the largest value."""
        span = float(self.presentations.max()) + 1 if self.n else 1.0
        first = torch.where(self.learned, self.first_learned, self.presentations + 1).double()
        return (first - 1).clamp(min=0) / span


@dataclass(frozen=True)
class ForgettingRanker:
    """Train `runs` proxy nets over the full schedule while counting forgetting events; score = mean count."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    runs: int = 1
    seed: int = 0
    balance: bool = True

    def scores(self, data: ImageData) -> np.ndarray:
        counts = torch.zeros(len(data), dtype=torch.float64)
        late = torch.zeros(len(data), dtype=torch.float64)
        for r in range(self.runs):
            tracker = ForgettingTracker(len(data))
            train_proxy(data, self.proxy, seed=self.seed * 1000 + r, hooks=[tracker])
            counts += tracker.counts().double()
            late += tracker.lateness()
        # Mean counts differ by at least 1/runs; the mean lateness (< 1) is scaled below that, so it only breaks ties.
        return (counts / self.runs + late / self.runs / (self.runs + 1)).numpy()

    def rank(self, data: ImageData) -> Ranking:
        return make_ranking(data, self.scores(data), "forgetting", self.balance, self)
