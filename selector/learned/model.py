"""`LearnedSelector`: the saved selector (fitted features + attention network + cluster settings) as a Ranker.

A selector directory holds `features.json` (the fitted normaliser and PCA: the same transform as in training),
`selector.safetensors` + `network.json` (weights, architecture, label standardisation, inference settings) and,
from training, `labels.json` and `history.json`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.errors import MmselectError
from selector.learned.features import FeatureTransform, vector_matrix
from selector.learned.final import ClusterConfig, spectral_groups
from selector.core.ranking import Ranking


@dataclass(frozen=True)
class InferenceConfig:
    subset_size: int = 40  # context size at inference: the training subsets' size
    passes: int = 8        # random partitions averaged per sample
    seed: int = 0


def cluster_groups(table: pa.Table, features: FeatureTransform, clusters: ClusterConfig | None) -> np.ndarray | None:
    """Spectral cluster labels on the image embedding column, or None when clustering is off or impossible."""
    col = features.config.image_embedding
    if clusters is None or clusters.k <= 1 or not col or col not in table.column_names:
        return None
    e = vector_matrix(table, col)
    bad = np.isnan(e).any(axis=1)
    if bad.any():  # documented rule: rows without an image embedding sit at the pool mean for clustering
        e[bad] = np.nanmean(e[~bad], axis=0) if (~bad).any() else 0.0
    return spectral_groups(e, clusters)


class LearnedSelector:
    """Rank a score table with a trained selector: higher predicted per-sample quality = keep."""

    source = "learned-selector"

    def __init__(self, features: FeatureTransform, model, inference: InferenceConfig = InferenceConfig(),
                 clusters: ClusterConfig | None = ClusterConfig(), meta: dict | None = None):
        self.features = features
        self.model = model
        self.inference = inference
        self.clusters = clusters
        self.meta = meta or {}

    def predict(self, table: pa.Table) -> np.ndarray:
        from selector.learned.network import score_pool

        x = self.features.transform(table)
        return score_pool(self.model, x, self.inference.subset_size, self.inference.passes, self.inference.seed)

    def rank(self, table: pa.Table) -> Ranking:
        scores = self.predict(table)
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        return Ranking(ids=ids, scores=scores, groups=cluster_groups(table, self.features, self.clusters),
                       source=self.source, meta={"imputed": dict(self.features.last_imputed)})

    def save(self, out_dir: str | Path) -> Path:
        from selector.learned.network import save_network

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.features.save(out_dir / "features.json")
        save_network(self.model, out_dir, {"inference": asdict(self.inference),
                                           "clusters": asdict(self.clusters) if self.clusters else None,
                                           **self.meta})
        return out_dir

    @classmethod
    def load(cls, path: str | Path) -> "LearnedSelector":
        from selector.learned.network import load_network

        path = Path(path)
        if not (path / "selector.safetensors").exists() or not (path / "features.json").exists():
            raise MmselectError(f"{path} is not a trained selector (expected selector.safetensors and features.json); "
                                f"train one with `mmselect train-selector --out {path}`")
        model, meta = load_network(path)
        clusters = meta.pop("clusters", None)
        inference = InferenceConfig(**meta.pop("inference", {}))
        meta.pop("network", None)
        return cls(FeatureTransform.load(path / "features.json"), model, inference,
                   ClusterConfig(**clusters) if clusters else None, meta)
