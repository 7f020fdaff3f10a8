"""K equal-size label subsets of the pool: random, balanced k-means on image embeddings ("kmeans", InstructionGPT-4's
content clusters), or balanced k-means on the normalised quality metrics ("metrics").

"metrics" is an experimental design for the regression the selector fits: subsets that each hold a different part
of the metric space spread the subsets' mean metrics far wider than random subsets do (whose means all sit near
the pool mean), so a label difference can be attributed to what the metrics measure.

Every subset gets exactly `n // k` samples; the `n % k` left over (the ones farthest from any centre, or the last
of the random permutation) get subset -1 and take part in no label. InstructionGPT-4 did the same (3,439 -> 30 x 114).
"""
from __future__ import annotations

import numpy as np

METHODS = ("metrics", "random", "kmeans")

# Above this many cost-matrix cells the optimal assignment (scipy) is too big; a greedy one is used instead.
_MAX_ASSIGNMENT_CELLS = 25_000_000


def make_subsets(n: int, k: int = 30, method: str = "kmeans", embeddings: np.ndarray | None = None,
                 seed: int = 0) -> np.ndarray:
    """Subset id per sample (0..k-1, or -1 for the leftover), every subset exactly n // k samples."""
    if method not in METHODS:
        raise ValueError(f"unknown subset method {method!r}; choose one of {', '.join(METHODS)}")
    if k < 1 or n // k < 1:
        raise ValueError(f"cannot split {n} samples into {k} non-empty equal subsets")
    size = n // k
    if method == "random":
        order = np.random.default_rng(seed).permutation(n)
        out = np.full(n, -1, dtype=np.int64)
        out[order[: k * size]] = np.repeat(np.arange(k), size)
        return out
    if embeddings is None:
        raise ValueError(f"{method} subsets need a feature matrix to cluster")
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) != n:
        raise ValueError(f"{len(x)} embeddings for {n} samples")
    if np.isnan(x).any():
        raise ValueError("k-means subsets need complete embeddings; impute or drop rows with missing embeddings")
    return balanced_kmeans(x, k, seed)


def balanced_kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means++ centres (sklearn), then each sample assigned to a centre with exactly n // k per centre.

    The assignment minimises the total squared distance (scipy's linear_sum_assignment over k * size slots);
    for very large pools a greedy nearest-free-slot pass replaces it."""
    from sklearn.cluster import KMeans

    n = len(x)
    size = n // k
    centres = KMeans(n_clusters=k, init="k-means++", n_init=4, random_state=seed).fit(x).cluster_centers_
    d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (n, k)
    out = np.full(n, -1, dtype=np.int64)
    if n * k * size <= _MAX_ASSIGNMENT_CELLS:
        from scipy.optimize import linear_sum_assignment

        cost = np.repeat(d, size, axis=1)  # (n, k*size): slot j belongs to centre j // size
        rows, cols = linear_sum_assignment(cost)
        out[rows] = cols // size
        return out
    room = np.full(k, size)
    flat = np.argsort(d, axis=None, kind="stable")
    for f in flat:
        i, c = divmod(int(f), k)
        if out[i] == -1 and room[c] > 0:
            out[i] = c
            room[c] -= 1
            if not room.any():
                break
    return out


def subset_members(subsets: np.ndarray) -> list[np.ndarray]:
    """Positions of each subset 0..k-1, in order."""
    k = int(subsets.max()) + 1 if len(subsets) else 0
    return [np.flatnonzero(subsets == s) for s in range(k)]
