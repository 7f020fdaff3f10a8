"""Rankers over a score table: one metric, a weighted mix of normalised metrics, or random."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import to_numpy

from selector.core.normalize import fit_normaliser
from selector.core.ranking import Ranking


@dataclass(frozen=True)
class MetricRanker:
    """Rank by the mean of normalised metric columns (weights optional). A record missing a metric is scored on the
    metrics it has; one missing all of them gets NaN and ranks last. `lower_is_better` lists metrics to negate."""

    metrics: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    normalise: str = "robust-z"
    lower_is_better: frozenset[str] = field(default_factory=frozenset)

    def rank(self, scores: pa.Table) -> Ranking:
        missing = [m for m in self.metrics if m not in scores.column_names]
        if missing:
            raise KeyError(f"score table has no column(s) {missing}; it has {scores.column_names}")
        cols = []
        for m in self.metrics:
            col = scores.column(m)
            if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
                raise ValueError(f"metric {m!r} is an embedding, not a score; rank with the learned selector instead")
            v = to_numpy(pc.cast(col, pa.float64()), null=np.nan)
            cols.append(-v if m in self.lower_is_better else v)
        w = np.ones(len(self.metrics)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if len(w) != len(self.metrics):
            raise ValueError(f"{len(w)} weights for {len(self.metrics)} metrics")
        if len(cols) == 1:  # the weighted mean of one score is the score (NaN where missing, or everywhere if w = 0)
            combined = cols[0] * np.sign(w[0]) if w[0] else np.full(len(cols[0]), np.nan)
            return Ranking(ids=scores.column("id"), scores=combined, source=self.metrics[0])
        x = np.stack(cols, axis=1)
        x = fit_normaliser(x, self.normalise).transform(x)
        present = ~np.isnan(x)
        num = np.where(present, x, 0.0) @ w
        den = present.astype(np.float64) @ np.abs(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            combined = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        return Ranking(ids=scores.column("id"), scores=combined, source="+".join(self.metrics))


@dataclass(frozen=True)
class RandomRanker:
    """Uniformly random scores from `seed`: the baseline every benchmark reports."""

    seed: int = 0

    def rank(self, scores: pa.Table) -> Ranking:
        ids = np.asarray(scores.column("id").to_pylist(), dtype=object)
        return Ranking(ids=ids, scores=np.random.default_rng(self.seed).random(len(ids)), source="random")
