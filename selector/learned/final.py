"""Final selection: spectral clusters on image embeddings as groups, so each cluster gets a proportional quota >= 1
filled by predicted score. The budget and quotas are enforced by the shared `selector.core.ranking.select`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from selector.core.ranking import Ranking, Selection, select
from selector.learned.features import vector_matrix


@dataclass(frozen=True)
class ClusterConfig:
    k: int = 10
    n_neighbors: int = 10
    seed: int = 0


def spectral_groups(embeddings: np.ndarray, config: ClusterConfig = ClusterConfig()) -> np.ndarray:
    """Cluster label per row: sklearn SpectralClustering with a nearest-neighbours affinity (InstructionGPT-4's)."""
    from sklearn.cluster import SpectralClustering

    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if np.isnan(x).any():
        raise ValueError("spectral clustering needs complete embeddings; impute missing rows first")
    k = min(config.k, n - 1)  # as many clusters as rows: the spectral embedding's eigsh needs k < n (scipy refuses)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    sc = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=min(config.n_neighbors, n - 1),
                            assign_labels="kmeans", random_state=config.seed)
    return sc.fit_predict(x).astype(np.int64)


def image_matrix(table: pa.Table, col: str) -> np.ndarray:
    """The image embedding column as a matrix; a row without an embedding sits at the pool mean (documented rule)."""
    e = vector_matrix(table, col)
    bad = np.isnan(e).any(axis=1)
    if bad.any():
        e[bad] = np.nanmean(e[~bad], axis=0) if (~bad).any() else 0.0
    return e


def cluster_groups(table: pa.Table, col: str | None, clusters: ClusterConfig | None) -> np.ndarray | None:
    """Spectral cluster labels on the image embedding column `col`, or None when clustering is off or impossible."""
    if clusters is None or clusters.k <= 1 or not col or col not in table.column_names:
        return None
    return spectral_groups(image_matrix(table, col), clusters)


def clustered_select(ranking: Ranking, embeddings: np.ndarray, budget: int | float,
                     config: ClusterConfig = ClusterConfig(), seed: int = 0) -> tuple[Selection, np.ndarray]:
    """Spectral clusters as groups, then the shared proportional-quota `select`. Returns (selection, groups)."""
    groups = spectral_groups(embeddings, config)
    return select(ranking, budget, groups=groups, per_group="proportional", seed=seed), groups
