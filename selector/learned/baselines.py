"""Baselines for the learned selector, behind the same Ranker interface: an InstructMining-style linear fit from
indicators to subset labels, each single metric, and random."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.learned.features import FeatureTransform, scalar_columns
from selector.learned.final import ClusterConfig
from selector.learned.model import cluster_groups
from selector.core.rankers import MetricRanker, RandomRanker
from selector.core.ranking import Ranking

__all__ = ["LinearSelector", "single_metric_rankers", "RandomRanker"]


class LinearSelector:
    """InstructMining: ridge regression from a subset's mean feature vector to its label. Because the model is linear,
    the subset-level fit gives a per-sample score directly: w . x (same fitted features as the learned selector)."""

    source = "linear-baseline"

    def __init__(self, features: FeatureTransform, alpha: float = 1.0, clusters: ClusterConfig | None = ClusterConfig()):
        self.features = features
        self.alpha = alpha
        self.clusters = clusters
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    def fit(self, subset_features: list[np.ndarray], labels: np.ndarray) -> "LinearSelector":
        from sklearn.linear_model import Ridge

        x = np.stack([f.mean(axis=0) for f in subset_features])
        model = Ridge(alpha=self.alpha).fit(x, np.asarray(labels, dtype=np.float64))
        self.coef, self.intercept = model.coef_.astype(np.float64), float(model.intercept_)
        return self

    def predict(self, table: pa.Table) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LinearSelector.predict called before fit")
        return self.features.transform(table).astype(np.float64) @ self.coef + self.intercept

    def rank(self, table: pa.Table) -> Ranking:
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        return Ranking(ids=ids, scores=self.predict(table), groups=cluster_groups(table, self.features, self.clusters),
                       source=self.source, meta={"coef": dict(zip(self.features.feature_names, self.coef.tolist()))})

    def save(self, out_dir: str | Path) -> Path:
        from selector.core.io import atomic_write

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.features.save(out_dir / "features.json")
        atomic_write(out_dir / "linear.json", [json.dumps({
            "alpha": self.alpha, "coef": self.coef.tolist(), "intercept": self.intercept,
            "feature_names": self.features.feature_names,
            "clusters": asdict(self.clusters) if self.clusters else None}, indent=2).encode()])
        return out_dir

    @classmethod
    def load(cls, path: str | Path) -> "LinearSelector":
        path = Path(path)
        d = json.loads((path / "linear.json").read_text())
        obj = cls(FeatureTransform.load(path / "features.json"), d["alpha"],
                  ClusterConfig(**d["clusters"]) if d["clusters"] else None)
        obj.coef, obj.intercept = np.asarray(d["coef"]), float(d["intercept"])
        return obj


# Metrics for which a LOWER value means a better sample when used alone (none of the built-in ones so far).
LOWER_IS_BETTER: frozenset[str] = frozenset()


def single_metric_rankers(table: pa.Table, metrics: list[str] | None = None) -> dict[str, MetricRanker]:
    """One `MetricRanker` per scalar metric column of the score table (each metric alone)."""
    names = metrics if metrics is not None else scalar_columns(table)
    return {m: MetricRanker((m,), lower_is_better=LOWER_IS_BETTER & {m}) for m in names}
