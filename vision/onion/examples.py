"""Example-level sparsity: a dynamic active training subset ("Peeling the Onion", Kong et al. AAAI 2023).

A random `drop` share of the training set is set aside before training. Every `every` epochs (at most `max_swaps`
times) the `n_swap` least-forgotten active examples are moved out, chosen through the shared ranking interface
(`selector.core.ranking.select` on a forgetting `Ranking`, higher score = keep), and the same number are drawn at random
from the set-aside pool back in. The active set's size never changes, and every swap is logged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selector.core.ranking import Ranking, select

__all__ = ["ExampleLevelConfig", "Swap", "DynamicExampleSelector"]


@dataclass(frozen=True)
class ExampleLevelConfig:
    """drop: share of the training set set aside at the start (the paper: 20%).
    every / max_swaps: swap after every `every` epochs, at most `max_swaps` times (the paper: 30 and 5).
    swap_share: examples moved per swap, as a share of the set-aside pool (our choice; the paper restores "the same
    amount" it removes without fixing it here).
    """

    drop: float = 0.2
    every: int = 30
    max_swaps: int = 5
    swap_share: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.drop < 1.0:
            raise ValueError(f"drop must lie in [0, 1), got {self.drop}")
        if self.every < 1 or self.max_swaps < 0:
            raise ValueError(f"every must be >= 1 and max_swaps >= 0, got {self.every} and {self.max_swaps}")
        if not 0.0 <= self.swap_share <= 1.0:
            raise ValueError(f"swap_share must lie in [0, 1], got {self.swap_share}")


@dataclass(frozen=True)
class Swap:
    """One update of the active set (positions into the training set)."""

    epoch: int  # epochs completed when the swap happened
    removed: np.ndarray  # least-forgotten active examples moved to the pool
    removed_scores: np.ndarray  # their ranking scores (forgetting counts)
    restored: np.ndarray  # pool examples moved back in

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "removed": self.removed.tolist(), "restored": self.restored.tolist(),
                "removed_scores": self.removed_scores.tolist()}


class DynamicExampleSelector:
    """Holds the active set and the set-aside pool over `n` training examples (positions 0..n-1)."""

    def __init__(self, n: int, config: ExampleLevelConfig = ExampleLevelConfig()):
        self.n = n
        self.config = config
        self._rng = np.random.default_rng(config.seed)
        n_drop = int(np.floor(config.drop * n + 0.5))
        if n_drop >= n:
            raise ValueError(f"drop={config.drop} would set aside all {n} examples")
        perm = self._rng.permutation(n)
        self.dropped = np.sort(perm[:n_drop])
        self.active = np.sort(perm[n_drop:])
        self.n_swap = int(np.floor(config.swap_share * n_drop + 0.5))
        self.swaps: list[Swap] = []

    def due(self, epochs_done: int) -> bool:
        """Whether a swap is scheduled after `epochs_done` epochs."""
        c = self.config
        return (self.n_swap > 0 and epochs_done > 0 and epochs_done % c.every == 0
                and len(self.swaps) < c.max_swaps)

    def swap_epochs(self, epochs: int) -> list[int]:
        """The epoch counts after which swaps are scheduled in a run of `epochs` epochs (never after the last)."""
        c = self.config
        if self.n_swap == 0:
            return []
        return [e for e in range(c.every, epochs, c.every)][:c.max_swaps]

    def swap(self, ranking: Ranking, epochs_done: int) -> Swap:
        """Move the `n_swap` lowest-ranked active examples out and as many random pool examples in.

        `ranking.ids` are training-set positions and must cover the active set (extra ids are ignored). The kept
        active examples are chosen by `select` (with the ranking's groups, if any, for per-class quotas).
        """
        ids = np.asarray(ranking.ids).astype(np.int64)
        on = np.isin(ids, self.active)
        if on.sum() != len(self.active):
            missing = np.setdiff1d(self.active, ids[on])
            raise ValueError(f"the ranking misses {len(missing)} active examples (e.g. {missing[:5].tolist()})")
        groups = None if ranking.groups is None else ranking.groups[on]
        active_ranking = Ranking(ids[on], ranking.scores[on], groups, ranking.source)
        k = min(self.n_swap, len(self.dropped))
        kept = select(active_ranking, len(self.active) - k, seed=self.config.seed + len(self.swaps))
        keep_mask = kept.mask(len(active_ranking))
        removed = active_ranking.ids[~keep_mask]
        removed_scores = active_ranking.scores[~keep_mask]
        restored = np.sort(self._rng.choice(self.dropped, size=k, replace=False))
        self.active = np.sort(np.concatenate([active_ranking.ids[keep_mask], restored]))
        self.dropped = np.sort(np.concatenate([np.setdiff1d(self.dropped, restored), removed]))
        order = np.argsort(removed)
        record = Swap(epochs_done, removed[order], removed_scores[order], restored)
        self.swaps.append(record)
        return record
