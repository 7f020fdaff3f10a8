"""K equal-size label subsets of the pool: random, balanced k-means on image embeddings ("kmeans", InstructionGPT-4's
content clusters), or balanced k-means on the normalised quality metrics ("metrics").

"metrics" is an experimental design for the regression the selector fits: subsets that each hold a different part
of the metric space spread the subsets' mean metrics far wider than random subsets do (whose means all sit near
the pool mean), so a label difference can be attributed to what the metrics measure.

Given content groups (clusters of the image embeddings; `--subset-balance content`), "metrics" subsets are also
content-balanced: every subset holds each group in proportion, and the strata are cut on the metrics centred within each group. Without that,
a metric that differs between contents (a CLIP score that is higher for some digits than for others) puts one
content in one subset, and the subset's label measures its narrow content, not its quality (benchmarks/results/
selector_variants.md: on seed 22 the all-clean strata held 73 % zeros and had the worst labels).

Every subset gets exactly `n // k` samples; the `n % k` left over (the ones farthest from any centre, or the last
of the random permutation) get subset -1 and take part in no label. InstructionGPT-4 did the same (3,439 -> 30 x 114).
"""
from __future__ import annotations

import numpy as np

METHODS = ("metrics", "random", "kmeans")

# Above this many cost-matrix cells the optimal assignment (scipy) is too big; a greedy one is used instead.
_MAX_ASSIGNMENT_CELLS = 25_000_000


def make_subsets(n: int, k: int = 30, method: str = "kmeans", embeddings: np.ndarray | None = None,
                 seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """Subset id per sample (0..k-1, or -1 for the leftover), every subset exactly n // k samples. `groups` (content
    group per sample) makes "metrics" subsets content-balanced."""
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
    if method == "metrics" and groups is not None:
        return balanced_strata(x, np.asarray(groups), k, seed)
    return balanced_kmeans(x, k, seed)


def balanced_strata(x: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k metric strata, each holding every content group in proportion (within one sample per group).

    The metrics are centred on each group's median first, so the strata follow quality within a content rather than
    the differences between contents. Centres: k-means++ on the centred metrics. Each group's samples then fill
    the k subsets with quotas of n_g // k, the remainders dealt round-robin across groups, by least total squared
    distance; the subsets left one over their n // k drop their farthest member (subset -1)."""
    from sklearn.cluster import KMeans

    n = len(x)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} content groups for {n} samples")
    size = n // k
    centred = np.array(x, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        centred[rows] -= np.median(centred[rows], axis=0)
    centres = KMeans(n_clusters=k, init="k-means++", n_init=4, random_state=seed).fit(centred).cluster_centers_
    d = ((centred[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    out = np.full(n, -1, dtype=np.int64)
    turn = 0
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        quota = np.full(k, len(rows) // k)
        extra = len(rows) % k
        quota[(turn + np.arange(extra)) % k] += 1
        turn = (turn + extra) % k
        out[rows] = _assign(d[rows], quota)
    for s in range(k):
        members = np.flatnonzero(out == s)
        if len(members) > size:
            far = members[np.argsort(-d[members, s], kind="stable")[: len(members) - size]]
            out[far] = -1
    return out


def balanced_kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means++ centres (sklearn), then each sample assigned to a centre with exactly n // k per centre.

    The assignment minimises the total squared distance (scipy's linear_sum_assignment over k * size slots);
    for very large pools a greedy nearest-free-slot pass replaces it."""
    from sklearn.cluster import KMeans

    n = len(x)
    size = n // k
    centres = KMeans(n_clusters=k, init="k-means++", n_init=4, random_state=seed).fit(x).cluster_centers_
    d = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # (n, k)
    return _assign(d, np.full(k, size))


def _assign(d: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Centre per row of the (n, k) squared distances `d`, centre c taking at most quota[c] rows (-1: no room left),
    by least total distance (scipy's linear_sum_assignment over the slots); past `_MAX_ASSIGNMENT_CELLS`, a greedy
    nearest-free-slot pass."""
    n, k = d.shape
    out = np.full(n, -1, dtype=np.int64)
    slots = np.repeat(np.arange(k), quota)  # slot j belongs to centre slots[j]
    if len(slots) == 0:
        return out
    if n * len(slots) <= _MAX_ASSIGNMENT_CELLS:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(d[:, slots])
        out[rows] = slots[cols]
        return out
    room = np.array(quota, dtype=np.int64)
    for f in np.argsort(d, axis=None, kind="stable"):
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
