"""SemDeDup (Abbas et al., 2023): k-means on embeddings, then near-duplicate removal inside each cluster.

Inside a cluster, records are examined in priority order (the ranking's order when there is one, so the best-scored
copy survives; file order otherwise) and a record is removed when its cosine similarity to a record already kept in
its cluster exceeds `threshold`; it "loses to" that record. This is the diversity greedy of
`selector.core.diversity` run without a budget in each cluster, so one implementation decides what is too similar.

`threshold` is a cosine similarity: the paper's ε is a distance, and its rule "similarity above 1 - ε" is
`threshold = 1 - ε` here. threshold 1.0 removes nothing (float32 rounding of exact copies is clipped at 1); a low
threshold collapses a tight cluster to one record. As in the paper, two near-copies that k-means puts in different
clusters are not compared; exact copies always share a cluster. Rows without a usable vector (NaN, zero) are not
clustered and never removed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selector.core.diversity import FeatureError, diverse_greedy, unit_rows
from selector.core.embeddings import usable_rows

__all__ = ["DedupResult", "semdedup", "kmeans_labels", "default_clusters"]


@dataclass
class DedupResult:
    keep: np.ndarray  # (n,) bool: False = removed as a near-duplicate
    lost_to: np.ndarray  # (n,) int64: the kept row each removed row duplicates, -1 for kept rows
    similarity: np.ndarray  # (n,) float32: that cosine similarity, NaN for kept rows
    clusters: np.ndarray  # (n,) int64 k-means cluster per row, -1 for rows without a usable vector
    threshold: float

    @property
    def removed(self) -> int:
        return int((~self.keep).sum())


def default_clusters(n: int, per_cluster: int = 1000) -> int:
    """About `per_cluster` rows per cluster: comparisons stay per cluster (O(cluster size x kept) each)."""
    return max(1, int(round(n / per_cluster)))


def kmeans_labels(x: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Spherical k-means labels of the usable rows of `x` (MiniBatchKMeans on unit vectors, seeded); -1 for rows
    without a usable vector. At most one cluster per distinct usable row."""
    from sklearn.cluster import MiniBatchKMeans

    labels = np.full(len(x), -1, dtype=np.int64)
    ok = np.flatnonzero(usable_rows(x))
    if not len(ok):
        return labels
    u, _ = unit_rows(x, ok)
    k = int(min(clusters, len(ok)))
    if k <= 1:
        labels[ok] = 0
        return labels
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    labels[ok] = km.fit_predict(u)
    return labels


def semdedup(features: np.ndarray, threshold: float, *, clusters: int | None = None, seed: int = 0,
             order: np.ndarray | None = None, labels: np.ndarray | None = None) -> DedupResult:
    """Mark near-duplicates of `features` rows (see the module docstring). `order`: priority, best first (default:
    row order); `labels`: precomputed cluster labels (default: k-means with `clusters`, see `default_clusters`)."""
    if not np.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
        raise FeatureError(f"the SemDeDup threshold is a cosine similarity in [-1, 1], got {threshold}")
    if len(np.shape(features)) != 2:
        raise FeatureError(f"SemDeDup needs an (n, d) matrix, got shape {np.shape(features)}")
    n = len(features)
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if len(order) != n:
        raise FeatureError(f"priority order has {len(order)} entries for {n} rows")
    if labels is None:
        labels = kmeans_labels(features, default_clusters(n) if clusters is None else int(clusters), seed)
    keep = np.ones(n, dtype=bool)
    lost_to = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(rank[members], kind="stable")]  # priority order inside the cluster
        res = diverse_greedy(features[members], np.arange(len(members)), len(members), threshold, fill=False)
        gone = np.flatnonzero(res.lost_to >= 0)
        keep[members[gone]] = False
        lost_to[members[gone]] = members[res.lost_to[gone]]
        similarity[members[gone]] = res.similarity[gone]
    return DedupResult(keep, lost_to, similarity, labels, float(threshold))
