"""COINCIDE-style ranker (Lee et al., arXiv 2406.10995): concept-skill clusters, shares by transferability and
density, and distribution-keeping sampling inside each cluster.

1. Cluster the reference model's features (CLIP `embed-image` / `embed-text`, or an LLM's hidden states through
   `embed-text --text-encoder llm:DIR`) with spherical k-means.
2. Per cluster c: transferability S_c = mean cosine of its centroid to the `neighbours` nearest other centroids
   (COINCIDE's scripts use 4; None = all other centroids), density D_c = mean pairwise cosine of its members.
3. Cluster weight w_c = exp(S_c / (tau * D_c)) (tau = 0.1 as in COINCIDE's scripts): transferable, spread-out
   clusters get more of the budget, dense (redundant) ones less. That reading needs S_c > 0 (features with a
   common direction, as VLM activations and CLIP embeddings have); where S_c < 0 a denser cluster gets more.
4. Inside each cluster, records are ordered by herding (`selector.core.herding`, linear-kernel MMD: the kept
   records' mean follows the cluster's mean), scored 1 - j / size for the j-th pick.

The ranking carries the clusters as groups and the weights as `group_weights`, so the shared `select` gives each
cluster a quota proportional to w_c (capped at its size, each >= 1 where the budget allows) and fills it in herding
order, exactly to the budget.

Rules: D_c is floored at `min_density` (a cluster of orthogonal members would otherwise get an infinite weight) and a
one-member cluster has D_c = 1. Records without a usable embedding (null, NaN, zero) are not clustered: they form
group -1 with weight 0, so they are kept only through the >= 1 rule, and rank last inside it (NaN scores).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from selector.core.diversity import FeatureError, unit_rows
from selector.core.embeddings import embedding_matrix, usable_rows
from selector.core.errors import SettingsError
from selector.core.herding import herding_order
from selector.core.ranking import Ranking, group_quotas, resolve_budget
from selector.core.semdedup import kmeans_labels

__all__ = ["CoincideRanker", "cluster_stats", "coincide_weights"]


def cluster_stats(u: np.ndarray, labels: np.ndarray, neighbours: int | None = 4, min_density: float = 1e-3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster ids, transferability S, density D) for unit rows `u` with cluster `labels` (ids 0..K-1 present)."""
    ids = np.unique(labels)
    k = len(ids)
    sums = np.zeros((k, u.shape[1]), dtype=np.float64)
    np.add.at(sums, np.searchsorted(ids, labels), u)
    sizes = np.bincount(np.searchsorted(ids, labels), minlength=k).astype(np.float64)
    # mean pairwise cosine without the n x n matrix: sum_{i != j} u_i.u_j = |sum u|^2 - n
    sq = np.einsum("ij,ij->i", sums, sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(sizes > 1, (sq - sizes) / (sizes * (sizes - 1)), 1.0)
    density = np.maximum(density, min_density)
    cent = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    transfer = np.zeros(k)
    if k > 1:
        m = k - 1 if neighbours is None else min(int(neighbours), k - 1)
        for s in range(0, k, 1024):  # blocks of centroid rows: no K x K matrix for large K
            sims = cent[s:s + 1024] @ cent.T
            sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf
            top = -np.partition(-sims, m - 1, axis=1)[:, :m]
            transfer[s:s + 1024] = top.mean(axis=1)
    return ids, transfer, density


def coincide_weights(transfer: np.ndarray, density: np.ndarray, tau: float) -> np.ndarray:
    """w_c proportional to exp(S_c / (tau * D_c)), scaled so the largest is 1 (the shift keeps exp finite)."""
    logits = np.asarray(transfer, float) / (tau * np.asarray(density, float))
    return np.exp(logits - logits.max()) if len(logits) else logits


@dataclass(frozen=True)
class CoincideRanker:
    """COINCIDE over embedding columns of a score table (see the module docstring). `clusters`: k-means k (None:
    about one per 50 records, COINCIDE's 10,000 clusters for LLaVA-665K is one per 66); `budget`: herd only as
    many records per cluster as that budget's quotas need (None: order every cluster fully)."""

    features: tuple[str, ...] = ("embed-image",)
    clusters: int | None = None
    tau: float = 0.1
    neighbours: int | None = 4
    min_density: float = 1e-3
    budget: int | float | None = None
    seed: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise SettingsError(f"COINCIDE's temperature tau must be > 0, got {self.tau}")
        if self.clusters is not None and self.clusters < 1:
            raise SettingsError(f"COINCIDE needs at least 1 cluster, got {self.clusters}")
        if self.neighbours is not None and self.neighbours < 1:
            raise SettingsError(f"COINCIDE's neighbours must be >= 1 (or None for all), got {self.neighbours}")

    def rank(self, scores: pa.Table) -> Ranking:
        return self.rank_matrix(scores.column("id"), embedding_matrix(scores, self.features))

    def rank_matrix(self, ids, x: np.ndarray, labels: np.ndarray | None = None) -> Ranking:
        """Rank rows of `x` (ids alongside); `labels` gives the clusters instead of k-means (-1: no embedding)."""
        n = len(x)
        if labels is None:
            ok = usable_rows(x)
            k = self.clusters if self.clusters is not None else max(1, int(round(ok.sum() / 50)))
            labels = kmeans_labels(x, k, self.seed)
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != n:
            raise FeatureError(f"{len(labels)} cluster labels for {n} rows")
        clustered = np.flatnonzero(labels >= 0)
        scores = np.full(n, np.nan)
        weights: dict = {}
        meta: dict = {"clusters": 0, "tau": self.tau, "neighbours": self.neighbours}
        if len(clustered):
            u, _ = unit_rows(x, clustered)
            cids, transfer, density = cluster_stats(u, labels[clustered], self.neighbours, self.min_density)
            w = coincide_weights(transfer, density, self.tau)
            weights = {int(c): float(v) for c, v in zip(cids, w)}
            need = self._herd_counts(labels, weights, n)
            for c in cids:
                members = np.flatnonzero(labels == c)
                mu, _ = unit_rows(x, members)
                order = herding_order(mu.astype(np.float64), need.get(int(c)))
                scores[members[order]] = 1.0 - np.arange(len(order)) / len(members)
            meta.update(clusters=len(cids), transfer={int(c): float(t) for c, t in zip(cids, transfer)},
                        density={int(c): float(d) for c, d in zip(cids, density)})
        if (labels < 0).any():
            weights[-1] = 0.0
        return Ranking(ids=ids, scores=scores, groups=labels, source="coincide", meta=meta, group_weights=weights)

    def _herd_counts(self, labels: np.ndarray, weights: dict, n: int) -> dict:
        if self.budget is None:
            return {}
        sizes = {int(c): int(s) for c, s in zip(*np.unique(labels, return_counts=True))}
        full = {**weights, **({-1: 0.0} if -1 in sizes else {})}
        return group_quotas(sizes, resolve_budget(self.budget, n), full)
