"""Numbers behind a report, computed on every record with NumPy (no Python loop per record): a metric's summary and
histogram, Spearman correlations, the k lowest / highest records, counts by label, and overlaps of selections.

Pure functions of arrays: no files, no plotting, so each is tested on its own.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

BINS = 40
EXTREMES = 12  # cards per end of each metric


@dataclass(frozen=True)
class MetricSummary:
    """One scalar metric over the records it scored; `missing` records have no score, `reasons` say why."""

    name: str
    n: int
    missing: int
    reasons: dict[str, int] = field(default_factory=dict)  # null reason -> records (most frequent first)
    mean: float = float("nan")
    std: float = float("nan")
    min: float = float("nan")
    p05: float = float("nan")
    median: float = float("nan")
    p95: float = float("nan")
    max: float = float("nan")

    def as_dict(self) -> dict:
        return {k: _json_number(v) for k, v in self.__dict__.items()}


def _json_number(v):
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def summarise(name: str, values: np.ndarray, reasons: list | None = None) -> MetricSummary:
    """Summary of `values` (NaN = missing); `reasons` (one per record, None where scored) are counted."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    why = Counter(r for r in (reasons or []) if r)
    unexplained = int((~ok).sum()) - sum(why.values())
    if unexplained > 0:
        why["no score recorded"] += unexplained
    if not ok.any():
        return MetricSummary(name, len(values), int((~ok).sum()), dict(why.most_common()))
    v = values[ok]
    p05, median, p95 = _overflow_safe(lambda x: np.percentile(x, [5, 50, 95]), v)
    mean, std = _overflow_safe(lambda x: np.array([x.mean(), x.std()]), v)
    return MetricSummary(name, len(values), int((~ok).sum()), dict(why.most_common()), float(mean), float(std),
                         float(v.min()), float(p05), float(median), float(p95), float(v.max()))


def _overflow_safe(stat, v: np.ndarray) -> np.ndarray:
    """`stat(v)` (an array of numbers that scale with `v`: means, deviations, percentiles), right even near
    +-1.8e308 (finite but huge scores), where sums, squares and the spans percentiles interpolate across overflow:
    then it is computed on `v` divided by its largest magnitude, and scaled back."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(stat(v), dtype=np.float64)
    if np.all(np.isfinite(out)):
        return out
    scale = float(np.abs(v).max())
    return np.asarray(stat(v / scale), dtype=np.float64) * scale


def bin_edges(*arrays: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Shared histogram edges over the finite values of every array (so pool and selection bars line up)."""
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if len(a)]
    if not finite:
        return np.array([0.0, 1.0])
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if lo == hi:  # one value: a unit-wide bin around it, or (where 0.5 is below its precision) a relative one
        pad = max(0.5, abs(lo) * 1e-9)
        lo, hi = max(lo - pad, -np.finfo(np.float64).max), min(hi + pad, np.finfo(np.float64).max)
    t = np.linspace(0.0, 1.0, bins + 1)
    edges = lo * (1.0 - t) + hi * t  # not lo + (hi - lo) * t: hi - lo overflows for values near +-1.8e308
    return np.maximum.accumulate(edges)  # rounding at the float limits must not make an edge step back


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.histogram(v[np.isfinite(v)], bins=edges)[0]


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of the finite values (ties share their mean rank); NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), np.nan)
    ok = np.flatnonzero(np.isfinite(v))
    if not len(ok):
        return out
    order = ok[np.argsort(v[ok], kind="stable")]
    sorted_v = v[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_v)) + 1]
    ends = np.r_[starts[1:], len(order)]
    mean_rank = (starts + ends - 1) / 2.0 + 1.0
    out[order] = np.repeat(mean_rank, ends - starts)
    return out


def spearman_matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise Spearman correlation of the columns, each pair over the records that have both (NaN if fewer than
    3 such records or a constant column)."""
    names = list(columns)
    r = [ranks(columns[n]) for n in names]
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            ok = np.isfinite(r[i]) & np.isfinite(r[j])
            a, b = r[i][ok], r[j][ok]
            if ok.sum() < 3 or a.std() == 0 or b.std() == 0:
                c = np.nan
            else:  # ranks recomputed over the common records
                a, b = ranks(a), ranks(b)
                c = float(np.corrcoef(a, b)[0, 1])
            out[i, j] = out[j, i] = c
    return out


def extremes(values: np.ndarray, k: int = EXTREMES) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k lowest (lowest first) and k highest (highest first) finite values; ties in position
    order. O(n) selection, then a sort of the k."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(v))
    if not len(ok):
        return ok, ok
    k = min(k, len(ok))

    def smallest(x: np.ndarray) -> np.ndarray:
        if k < len(ok):
            cut = np.partition(x, k - 1)[k - 1]
            cand = ok[x <= cut]
        else:
            cand = ok
        return cand[np.lexsort((cand, x[np.searchsorted(ok, cand)]))][:k]

    return smallest(v[ok]), smallest(-v[ok])


def counts(labels) -> dict[str, int]:
    """Records per label, most frequent first (labels are shown as text)."""
    labels = np.asarray(labels)
    if not len(labels):
        return {}
    values, n = np.unique(labels.astype(str), return_counts=True)
    order = np.lexsort((values, -n))
    return {str(values[i]): int(n[i]) for i in order}


def shares(labels, categories: list[str]) -> np.ndarray:
    """Share of `labels` in each of `categories` (0 where absent; an empty set gives zeros)."""
    c = counts(labels)
    total = sum(c.values())
    return np.array([c.get(k, 0) / total if total else 0.0 for k in categories])


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def project_2d(x: np.ndarray) -> np.ndarray:
    """Rows of `x` on their first two principal components (eigenvectors of the d x d covariance: cheaper than an
    SVD of the rows for the few thousand points of a map)."""
    xs = np.asarray(x, dtype=np.float64) - x.mean(axis=0)
    _, vectors = np.linalg.eigh(xs.T @ xs)
    xy = xs @ vectors[:, ::-1][:, :2]
    return xy if xy.shape[1] == 2 else np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))  # a 1-D embedding: y = 0
