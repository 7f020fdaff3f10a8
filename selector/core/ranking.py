"""The shared ranking interface: every way of choosing data yields a `Ranking`, and `select` turns it into a `Selection`.

Metric scores, pruning scores (forgetting, EL2N, herding, ...) and the learned selector all produce a `Ranking`
whose scores follow one convention: **higher = more worth keeping**. `select` is the only place that turns scores
into a kept subset, so budgets, per-group quotas and tie-breaking behave the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from selector.core.errors import BudgetError

__all__ = ["Ranking", "Ranker", "Selection", "select", "resolve_budget", "group_quotas"]


@dataclass(frozen=True)
class Ranking:
    """Scores for items, higher = keep. NaN scores mean "no score" and rank below every scored item."""

    ids: np.ndarray
    scores: np.ndarray
    groups: np.ndarray | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # Relative quota weight per group (COINCIDE's cluster shares); None: quotas proportional to group sizes.
    group_weights: dict[Any, float] | None = None

    def __post_init__(self):
        ids, n_unique = _ids_array(self.ids)
        scores = np.asarray(self.scores, dtype=np.float64)
        if ids.ndim != 1 or scores.ndim != 1 or len(ids) != len(scores):
            raise ValueError(f"Ranking needs 1-d ids and scores of equal length, got {ids.shape} and {scores.shape}")
        if n_unique != len(ids):
            raise ValueError("Ranking ids must be unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "scores", scores)
        if self.groups is not None:
            groups = np.asarray(self.groups)
            if groups.shape != ids.shape:
                raise ValueError(f"groups has shape {groups.shape}, expected {ids.shape}")
            object.__setattr__(self, "groups", groups)

    def __len__(self) -> int:
        return len(self.ids)

    def order(self, seed: int = 0, top: int | None = None) -> np.ndarray:
        """Positions from best to worst; equal scores are ordered by a permutation drawn from `seed`.

        With `top`, only the first `top` positions of that same order (a partial sort: O(n) instead of a full
        sort, which matters for a budget of hundreds out of millions)."""
        n = len(self.scores)
        tiebreak = np.random.default_rng(seed).permutation(n)
        key = np.where(np.isnan(self.scores), -np.inf, self.scores)
        rows = np.arange(n)
        if top is not None and top < n:
            if top <= 0:
                return rows[:0]
            cutoff = -np.partition(-key, top - 1)[top - 1]
            rows = np.flatnonzero(key >= cutoff)  # everything that can reach the top, ties at the cut included
        # lexsort sorts by the last key first: descending score, then the seeded tiebreak.
        return rows[np.lexsort((tiebreak[rows], -key[rows]))][:top]

    def with_groups(self, groups: np.ndarray | None) -> "Ranking":
        return Ranking(self.ids, self.scores, groups, self.source, dict(self.meta))


def _ids_array(ids: Any) -> tuple[np.ndarray, int]:
    """Ids as a NumPy array, and how many distinct ones there are. Arrow columns (a score table's ids) are counted
    natively: a set of a million Python strings costs more than the rest of a selection."""
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        from selector.core.dedup import all_distinct

        return _arrow_to_numpy_strings(ids), len(ids) if all_distinct(ids) else -1
    ids = np.asarray(ids)
    return ids, len(set(ids.tolist())) if ids.dtype == object else len(np.unique(ids))


def _arrow_to_numpy_strings(column: pa.Array | pa.ChunkedArray, max_bytes: int = 1 << 28) -> np.ndarray:
    """An Arrow column as a NumPy array. ASCII string columns become the fixed-width unicode array that
    `np.asarray(list_of_str)` would give, gathered from the Arrow buffers without a Python string per value;
    anything else (non-ASCII, NUL bytes, very long values) goes through Python objects."""
    from selector.core.arrow_numpy import to_numpy
    from selector.core.dedup import string_buffers

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type) and not column.null_count:
        return to_numpy(column)
    if not pa.types.is_string(column.type) or column.null_count or len(column) == 0:
        return np.array(column.to_pylist(), dtype=object)

    offsets, data = string_buffers(column)
    data = data[offsets[0]:offsets[-1]]
    lengths = np.diff(offsets)
    width = max(int(lengths.max()), 1)
    if len(column) * width * 4 > max_bytes or not len(data) or data.max() >= 0x80 or data.min() == 0:
        return np.array(column.to_pylist(), dtype=object)
    if (lengths == width).all():  # fixed-width ids (zero-padded numbers, hashes): the bytes already form the grid
        codes = data.reshape(len(column), width).astype(np.uint32)
    else:
        window = np.arange(width, dtype=np.int32)
        pos = np.minimum((offsets[:-1] - offsets[0])[:, None] + window, len(data) - 1)
        codes = np.where(window < lengths[:, None], data[pos], 0).astype(np.uint32)
    return codes.view(f"<U{width}").ravel()


@runtime_checkable
class Ranker(Protocol):
    """Anything that scores a dataset: `rank(data) -> Ranking` (higher score = keep)."""

    def rank(self, data: Any) -> Ranking: ...


@dataclass(frozen=True)
class Selection:
    """The kept items of a `Ranking`, best first."""

    indices: np.ndarray  # positions into the ranking
    ids: np.ndarray
    scores: np.ndarray
    source: str
    budget: int
    quotas: dict[Any, int] | None = None
    ranking: Ranking | None = field(default=None, repr=False, compare=False)  # what it was cut from (every score)
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # what diversity / stratified did

    def __len__(self) -> int:
        return len(self.indices)

    def mask(self, n: int) -> np.ndarray:
        """Boolean keep-mask over the ranking's n items."""
        m = np.zeros(n, dtype=bool)
        m[self.indices] = True
        return m


def resolve_budget(budget: int | float, n: int) -> int:
    """An int is an exact count; a float in (0, 1] is a fraction of n (rounded half up). Clipped to n."""
    if isinstance(budget, bool):
        raise BudgetError(f"budget must be a count or a fraction, got {budget!r}")
    if isinstance(budget, (int, np.integer)):
        if budget < 0:
            raise BudgetError(f"budget must be >= 0, got {budget}")
        return min(int(budget), n)
    if isinstance(budget, (float, np.floating)):
        if not 0.0 < budget <= 1.0:
            raise BudgetError(f"a fractional budget must lie in (0, 1], got {budget}")
        k = min(int(np.floor(budget * n + 0.5)), n)
        if k == 0 and n > 0:  # a positive fraction that keeps nothing is a mistake, not an empty selection
            raise BudgetError(f"a budget of {budget:g} of {n} records rounds to 0; give a count (e.g. 1) or a larger "
                              f"fraction")
        return k
    raise BudgetError(f"budget must be an int or a float, got {type(budget).__name__}")


def group_quotas(sizes: dict[Any, int], budget: int, weights: dict[Any, float] | None = None) -> dict[Any, int]:
    """Split `budget` over groups in proportion to their sizes (or to `weights`), each >= 1 where the budget allows.

    Largest-remainder (Hamilton) apportionment of the ideal shares budget * weight / total weight, then every empty
    group takes one slot from the group most over its ideal share. No quota exceeds its group's size: with weights,
    a group whose share would exceed its size gets its size and the rest is shared again among the others. With
    fewer slots than groups, the largest (heaviest) groups get one each.
    """
    keys = sorted(sizes, key=lambda k: (str(type(k)), k))
    w = {k: float(sizes[k] if weights is None else weights.get(k, 0.0)) for k in keys}
    if any(not np.isfinite(v) or v < 0 for v in w.values()):
        raise BudgetError(f"group weights must be finite and >= 0, got {sorted(w.values())[:3]}...")
    total = sum(sizes.values())
    budget = min(budget, total)
    quotas = {k: 0 for k in keys}
    if budget == 0:
        return quotas
    if budget < len(keys):
        for k in sorted(keys, key=lambda k: (-w[k], -sizes[k]))[:budget]:
            quotas[k] = 1
        return quotas
    ideal, free, rest = {}, [k for k in keys if sizes[k] > 0], float(budget)
    while free:  # water-filling: a share above its group's size is capped there and the rest shared again
        tw = sum(w[k] for k in free)
        share = {k: (rest * w[k] / tw if tw > 0 else rest * sizes[k] / sum(sizes[j] for j in free)) for k in free}
        over = [k for k in free if share[k] >= sizes[k]]
        if not over:
            ideal.update(share)
            break
        for k in over:
            ideal[k] = float(sizes[k])
            rest -= sizes[k]
        free = [k for k in free if k not in over]
    for k in keys:
        ideal.setdefault(k, 0.0)
        quotas[k] = min(int(np.floor(ideal[k])), sizes[k])
    leftover = budget - sum(quotas.values())
    by_remainder = sorted((k for k in keys if quotas[k] < sizes[k]),
                          key=lambda k: (-(ideal[k] - quotas[k]), -sizes[k], keys.index(k)))
    for k in by_remainder[:leftover]:
        quotas[k] += 1
    for k in keys:
        if quotas[k] == 0 and sizes[k] > 0:
            donor = max((j for j in keys if quotas[j] > 1), key=lambda j: (quotas[j] - ideal[j], sizes[j]))
            quotas[donor] -= 1
            quotas[k] = 1
    return quotas


def select(ranking: Ranking, budget: int | float, *, groups: np.ndarray | None = None,
           per_group: str = "proportional", seed: int = 0, diversity: Any = None, stratified: Any = None
           ) -> Selection:
    """Keep exactly `budget` items (a count, or a fraction of the ranking), best scores first.

    With groups (the argument, else `ranking.groups`) and `per_group="proportional"`, each group gets a quota
    proportional to its size (or to `ranking.group_weights`) and at least 1 where the budget allows, filled with that
    group's best items. `per_group="none"` ignores groups. Ties are broken by a permutation drawn from `seed`.

    `diversity` (a `selector.core.diversity.Diversity`) fills the quotas in score order but skips items too similar
    to one already kept (DEITA). `stratified` (a `selector.core.stratified.Stratified`) fills them by coverage-centric
    stratified sampling over the score range (CCS) instead of by best score. Either one records what it did in
    `Selection.info`; the result is exactly the budget in every mode.
    """
    n = len(ranking)
    k = resolve_budget(budget, n)
    groups = ranking.groups if groups is None else np.asarray(groups)
    if per_group not in ("proportional", "none"):
        raise ValueError(f"per_group must be 'proportional' or 'none', got {per_group!r}")
    if diversity is not None and stratified is not None:
        raise BudgetError("diversity and stratified selection cannot be combined: choose one")
    quotas, codes, quota_array = None, None, None
    if groups is not None and per_group != "none":
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} ranked items")
        labels, codes, counts = np.unique(groups, return_inverse=True, return_counts=True)
        keys = [lab.item() if hasattr(lab, "item") else lab for lab in labels]
        quotas = group_quotas(dict(zip(keys, counts.tolist())), k, ranking.group_weights)
        quota_array = np.array([quotas[key] for key in keys], dtype=np.int64)
    info: dict[str, Any] = {}
    if stratified is None and diversity is None and quotas is None:
        chosen = ranking.order(seed, top=k)
    else:
        order = ranking.order(seed)
        if stratified is not None:
            chosen, info["stratified"] = stratified.pick(ranking.scores, k, seed, codes, quota_array)
        elif diversity is not None:
            chosen, info["diversity"] = diversity.pick(order, k, codes, quota_array)
        else:
            ordered_codes = codes[order]
            parts = [order[ordered_codes == c][:q] for c, q in enumerate(quota_array) if q]
            chosen = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        # Report best first, in the ranking's global order.
        rank_of = np.empty(n, dtype=np.int64)
        rank_of[order] = np.arange(n)
        chosen = np.asarray(chosen, dtype=np.int64)
        chosen = chosen[np.argsort(rank_of[chosen], kind="stable")]
    chosen = chosen.astype(np.int64)
    return Selection(indices=chosen, ids=ranking.ids[chosen], scores=ranking.scores[chosen],
                     source=ranking.source, budget=k, quotas=quotas, ranking=ranking, info=info)
