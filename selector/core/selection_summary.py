"""How a selection compares with its pool, metric by metric: the mean of every scalar metric in the pool and in
the selection, and how the ranking's scores correlate with it (Spearman). Written into every selection report, so
a person can see what a ranking favoured."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import to_numpy


@dataclass(frozen=True)
class MetricShift:
    metric: str
    pool_mean: float
    selected_mean: float
    spearman: float  # of the ranking's scores with the metric, over the records that have both; NaN if undefined
    missing: int     # records of the pool without this metric


def scalar_metric_columns(scores: pa.Table) -> list[str]:
    """Numeric columns of a score table other than `id` (embeddings and `__reason` text are left out)."""
    return [n for n in scores.column_names if n != "id" and (
        pa.types.is_floating(scores.schema.field(n).type) or pa.types.is_integer(scores.schema.field(n).type))]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(a[ok], b[ok]).statistic)


def metric_shifts(scores: pa.Table, ranking_scores: np.ndarray, selected: np.ndarray,
                  metrics: list[str] | None = None) -> list[MetricShift]:
    """One `MetricShift` per metric (default: every scalar column). `selected` indexes rows of `scores`."""
    out = []
    r = np.asarray(ranking_scores, dtype=np.float64)
    for m in metrics if metrics is not None else scalar_metric_columns(scores):
        v = to_numpy(pc.cast(scores.column(m), pa.float64()), null=np.nan)
        with np.errstate(all="ignore"):
            pool = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            sel = v[selected]
            chosen = float(np.nanmean(sel)) if np.isfinite(sel).any() else float("nan")
        out.append(MetricShift(m, pool, chosen, spearman(r, v), int((~np.isfinite(v)).sum())))
    return out


def shift_lines(shifts: list[MetricShift]) -> list[str]:
    lines = [f"  {'metric':<16} {'pool mean':>11} {'selected mean':>14} {'Spearman(rank, metric)':>23}"]
    for s in shifts:
        lines.append(f"  {s.metric:<16} {s.pool_mean:>11.4g} {s.selected_mean:>14.4g} {s.spearman:>+23.3f}")
    return lines


def to_dicts(shifts: list[MetricShift]) -> list[dict]:
    return [asdict(s) for s in shifts]
