"""Final selection: spectral clusters on image embeddings as groups, so each cluster gets a proportional quota >= 1
filled by predicted score. The budget and quotas are enforced by the shared `selector.core.ranking.select`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selector.core.ranking import Ranking, Selection, select


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
    k = min(config.k, n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    sc = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=min(config.n_neighbors, n - 1),
                            assign_labels="kmeans", random_state=config.seed)
    return sc.fit_predict(x).astype(np.int64)


def clustered_select(ranking: Ranking, embeddings: np.ndarray, budget: int | float,
                     config: ClusterConfig = ClusterConfig(), seed: int = 0) -> tuple[Selection, np.ndarray]:
    """Spectral clusters as groups, then the shared proportional-quota `select`. Returns (selection, groups)."""
    groups = spectral_groups(embeddings, config)
    return select(ranking, budget, groups=groups, per_group="proportional", seed=seed), groups
