"""Diversity-aware selection: the DEITA-style greedy that `select(..., diversity=Diversity(...))` runs.

Candidates are examined in the ranking's order (best first). One is accepted unless its cosine similarity to a record
already accepted exceeds `threshold` (DEITA: 0.9); accepted records fill their group's quota, so group quotas hold.
SemDeDup (`selector.core.semdedup`) runs the same greedy inside each k-means cluster, without a budget.

Rules for awkward input (documented in `Diversity`):
- a row whose feature vector has a NaN/inf or a zero norm has no direction: it counts as distinct from everything
  (never skipped, never the reason another is skipped); `info["no_features"]` counts the ones accepted;
- when too few candidates pass the threshold to fill the budget (a pool of near-copies), the budget is still met
  exactly: the shortfall is filled with the skipped candidates least similar to what they were skipped for
  (`info["filled"]` says how many), within each group's quota;
- `threshold=None` finds the threshold: the lowest (most diverse) one at which the pass alone fills the budget.

Why the nearest-neighbour search is hand-written (blocked exact matmul) rather than faiss or sklearn's
NearestNeighbors: the reference set is the *accepted* records, which grows by one at every acceptance, and only the
prefix of the ranking that the pass reaches is ever compared. An index over the pool would cost a pass over all n
rows before the first pick; an index over the accepted set would have to be rebuilt or appended to at every step.
Comparing each block of candidates with the accepted rows (block x accepted, in chunks) and inside the block
(block x block) is exact (no approximate neighbour can change what is skipped), uses BLAS, and needs O(block x chunk
+ budget x d) memory: no n x n matrix and no normalised copy of the features (rows are normalised block by block).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from selector.core.errors import MmselectError

__all__ = ["Diversity", "FeatureError", "GreedyResult", "diverse_greedy", "unit_rows"]

REF_CHUNK_BYTES = 64 << 20  # one candidates x accepted similarity chunk
AUTO_STEPS = 12  # bisection steps of the automatic threshold over [-1, 1]: resolution 2 / 2**12


class FeatureError(MmselectError, ValueError):
    """Feature vectors that cannot serve a diversity or clustering step (wrong shape, wrong row count)."""


def unit_rows(features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 unit vectors of `features[rows]`, usable mask). A row with a non-finite value or a zero norm is
    not usable: its vector is returned as zeros, so its similarity to anything is 0."""
    x = np.asarray(features[rows], dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    x[~finite] = 0.0
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    usable = finite & (norms > 0)
    x /= np.where(usable, norms, 1.0)[:, None]
    x[~usable] = 0.0
    return x, usable


@dataclass
class GreedyResult:
    """What one greedy pass did. Positions index the rows of the features (the ranking's items)."""

    accepted: np.ndarray  # positions, in the order they were accepted (the pass first, then the fill)
    lost_to: np.ndarray  # (n,) for each skipped position the accepted position it was too similar to, else -1
    similarity: np.ndarray  # (n,) float32 that similarity for skipped positions, NaN elsewhere
    examined: int = 0
    skipped: int = 0
    filled: int = 0
    no_features: int = 0  # accepted rows without a usable vector

    @property
    def passed(self) -> int:
        return len(self.accepted) - self.filled


def _check_features(features: np.ndarray, n: int) -> np.ndarray:
    if not hasattr(features, "shape") or len(features.shape) != 2:
        raise FeatureError(f"diversity features must be an (n, d) matrix, got shape {getattr(features, 'shape', None)}")
    if features.shape[0] != n:
        raise FeatureError(f"diversity features have {features.shape[0]} rows for {n} ranked items")
    if features.shape[1] == 0:
        raise FeatureError("diversity features have no columns")
    return features


def diverse_greedy(features: np.ndarray, order: np.ndarray, k: int, threshold: float, *,
                   groups: np.ndarray | None = None, quotas: np.ndarray | None = None, block: int = 2048,
                   fill: bool = True) -> GreedyResult:
    """Accept up to `k` of `order` (positions, best first), skipping a candidate whose cosine similarity to an
    accepted one exceeds `threshold`. With `groups` (an int code per position) and `quotas` (per code), a group
    stops taking candidates once its quota is full. With `fill`, a pass that ends short of `k` is topped up from the
    skipped candidates, least similar first. See the module docstring for the search and the rules."""
    n = features.shape[0]
    order = np.asarray(order, dtype=np.int64)
    k = max(0, min(int(k), len(order)))
    remaining = None if quotas is None else np.array(quotas, dtype=np.int64)
    if remaining is not None and groups is None:
        raise ValueError("quotas need groups")
    d = features.shape[1]
    ref = np.empty((max(k, 1), d), dtype=np.float32)  # accepted unit vectors (usable ones only)
    ref_pos = np.empty(max(k, 1), dtype=np.int64)
    m = 0
    accepted: list[int] = []
    lost_to = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    result = GreedyResult(np.empty(0, np.int64), lost_to, similarity)
    start = 0
    while len(accepted) < k and start < len(order):
        blk = order[start:start + block]
        start += len(blk)
        if remaining is not None:
            blk = blk[remaining[groups[blk]] > 0]
            if not len(blk):
                continue
        u, usable = unit_rows(features, blk)
        best = np.full(len(blk), -np.inf, dtype=np.float32)
        killer = np.full(len(blk), -1, dtype=np.int64)
        chunk = max(1, REF_CHUNK_BYTES // (4 * len(blk)))
        for s in range(0, m, chunk):
            sims = u @ ref[s:min(m, s + chunk)].T
            j = sims.argmax(axis=1)
            v = sims[np.arange(len(blk)), j]
            better = v > best
            best[better] = v[better]
            killer[better] = ref_pos[s + j[better]]
        best[~usable] = -np.inf
        np.minimum(best, 1.0, out=best)  # float32 rounding can put an exact copy at 1.0000001
        alive = best <= threshold
        live = np.flatnonzero(alive & usable)  # only these can still be accepted or knocked out by an acceptance
        gram = np.minimum(u[live] @ u[live].T, 1.0)
        slot = np.full(len(blk), -1, dtype=np.int64)
        slot[live] = np.arange(len(live))
        for i in range(len(blk)):
            pos = int(blk[i])
            if remaining is not None and remaining[groups[pos]] == 0:
                continue  # its group filled up inside this block: not examined
            result.examined += 1
            if not alive[i]:
                result.skipped += 1
                lost_to[pos] = killer[i]
                similarity[pos] = best[i]
                continue
            accepted.append(pos)
            if remaining is not None:
                remaining[groups[pos]] -= 1
            if usable[i]:
                ref[m] = u[i]
                ref_pos[m] = pos
                m += 1
                j = slot[i]
                later, row = live[j + 1:], gram[j, j + 1:]
                hit = alive[later] & (row > threshold)
                alive[later[hit]] = False
                killer[later[hit]] = pos
                best[later[hit]] = row[hit]
            else:
                result.no_features += 1
            if len(accepted) == k:
                break
    if fill and len(accepted) < k:
        skipped = np.flatnonzero(lost_to >= 0)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(len(order))
        skipped = skipped[np.lexsort((rank[skipped], similarity[skipped]))]  # least similar, then best ranked
        for pos in skipped:
            if len(accepted) == k:
                break
            if remaining is not None:
                if remaining[groups[pos]] == 0:
                    continue
                remaining[groups[pos]] -= 1
            accepted.append(int(pos))
            result.filled += 1
    result.accepted = np.asarray(accepted, dtype=np.int64)
    return result


@dataclass(frozen=True)
class Diversity:
    """DEITA-style diversity for `select`: skip a candidate whose cosine similarity to an already selected one
    exceeds `threshold` (DEITA uses 0.9); `threshold=None` finds the lowest threshold at which the budget fills.

    `features` is an (n, d) matrix aligned with the ranking's items (any embedding: image, text, a concatenation,
    gradients; it may be a float32 memmap: rows are read and normalised block by block). Rows with NaN/inf or a zero
    norm count as distinct from everything. The selection is always exactly the budget and keeps group quotas: a
    pass that falls short is filled from the skipped candidates, least similar first (`Selection.info`).
    """

    features: np.ndarray = field(repr=False)
    threshold: float | None = 0.9
    block: int = 2048

    def __post_init__(self):
        if self.threshold is not None and not (np.isfinite(self.threshold) and -1.0 <= self.threshold <= 1.0):
            raise FeatureError(f"a cosine threshold lies in [-1, 1], got {self.threshold}")
        if self.block < 1:
            raise FeatureError(f"block must be at least 1, got {self.block}")
        if len(getattr(self.features, "shape", ())) != 2:
            raise FeatureError(f"diversity features must be an (n, d) matrix, got {type(self.features).__name__} "
                               f"of shape {getattr(self.features, 'shape', None)}")

    def take(self, rows: np.ndarray) -> "Diversity":
        """The same diversity over a subset of the rows (a sub-ranking of those rows)."""
        return Diversity(self.features[rows], self.threshold, self.block)

    def pick(self, order: np.ndarray, k: int, groups: np.ndarray | None = None,
             quotas: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """(accepted positions, a summary for `Selection.info`) for `k` items of `order` (best first)."""
        _check_features(self.features, len(order))

        def run(threshold: float, fill: bool = True) -> GreedyResult:
            return diverse_greedy(self.features, order, k, threshold, groups=groups, quotas=quotas,
                                  block=self.block, fill=fill)

        if self.threshold is not None:
            threshold, res = self.threshold, run(self.threshold)
        else:
            threshold, res = self._auto(run, k)
        info = {"threshold": round(float(threshold), 6), "auto": self.threshold is None,
                "examined": res.examined, "skipped": res.skipped, "passed": res.passed, "filled": res.filled,
                "no_features": res.no_features}
        return res.accepted, info

    @staticmethod
    def _auto(run, k: int) -> tuple[float, GreedyResult]:
        """Bisect for the lowest threshold whose pass fills `k` on its own. At 1.0 nothing is ever skipped, so the
        upper end always fills; passes are not guaranteed monotone in the threshold, so the answer is the lowest
        threshold *verified* to fill."""
        lo, hi = -1.0, 1.0
        best = run(hi, fill=False)
        for _ in range(AUTO_STEPS):
            mid = (lo + hi) / 2
            res = run(mid, fill=False)
            if len(res.accepted) >= k:
                hi, best = mid, res
            else:
                lo = mid
        return hi, best
