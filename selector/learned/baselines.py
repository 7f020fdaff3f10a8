"""Baselines for the learned selector, behind the same Ranker interface: an InstructMining-style linear fit from
indicators to subset labels, each single metric, and random."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from selector.learned.features import FeatureTransform, scalar_columns
from selector.learned.final import ClusterConfig
from selector.learned.model import LearnedSelector
from selector.learned.scorers import LinearScorer
from selector.core.rankers import MetricRanker, RandomRanker

__all__ = ["linear_selector", "single_metric_rankers", "RandomRanker"]


def linear_selector(features: FeatureTransform, subset_features: list[np.ndarray], labels: np.ndarray,
                    alpha: float = 1.0, clusters: ClusterConfig | None = ClusterConfig()) -> LearnedSelector:
    """InstructMining: ridge regression from a subset's mean feature vector to its label. Because the model is linear,
    the subset-level fit gives a per-sample score directly: w . x (same fitted features as the learned selector)."""
    return LearnedSelector(features, LinearScorer(alpha=alpha).fit(subset_features, labels), clusters,
                           source="linear-baseline")


# Metrics for which a LOWER value means a better sample when used alone (none of the built-in ones so far).
LOWER_IS_BETTER: frozenset[str] = frozenset()


def single_metric_rankers(table: pa.Table, metrics: list[str] | None = None) -> dict[str, MetricRanker]:
    """One `MetricRanker` per scalar metric column of the score table (each metric alone)."""
    names = metrics if metrics is not None else scalar_columns(table)
    return {m: MetricRanker((m,), lower_is_better=LOWER_IS_BETTER & {m}) for m in names}
