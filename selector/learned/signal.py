"""Do the genuine labels carry signal? Aggregate each subset's repeated labels robustly, and test whether the spread
of labels ACROSS subsets exceeds the noise WITHIN a subset (the same subset fine-tuned with other seeds).

The test is a one-way ANOVA (scipy's `f_oneway`): subsets are the groups, the LoRA seeds their replicates. When the
between-subset variance is no larger than the seed-to-seed variance, the labels rank subsets by luck, and a
selector trained on them fits noise: training stops there with `NoSignalError` instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from selector.core.errors import MmselectError

AGGREGATES = ("median", "trimmed-mean", "mean")
TRIM = 0.2  # share cut from each end by the trimmed mean (scipy's trim_mean)


class NoSignalError(MmselectError):
    """The subset labels cannot train a selector: no spread beyond the noise, or no model beats predicting the mean."""


def aggregate(per_seed: np.ndarray, how: str = "median") -> np.ndarray:
    """One label per subset from its (subsets, seeds) repeats. The median and the trimmed mean resist the occasional
    blown-up LoRA run; with two seeds both equal the mean."""
    x = np.asarray(per_seed, dtype=np.float64)
    if how == "median":
        return np.median(x, axis=1)
    if how == "trimmed-mean":
        from scipy.stats import trim_mean

        return np.asarray(trim_mean(x, TRIM, axis=1), dtype=np.float64)
    if how == "mean":
        return x.mean(axis=1)
    raise ValueError(f"unknown label aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")


@dataclass(frozen=True)
class LabelSignal:
    """The ANOVA of the labels: `spread` is the std of the aggregated labels across subsets, `noise` the pooled
    std of one run's label within a subset (across seeds). `p_value` is NaN with one seed (no noise estimate)."""

    spread: float
    noise: float
    f_stat: float
    p_value: float
    subsets: int
    seeds: int
    alpha: float

    @property
    def measured(self) -> bool:
        return self.seeds >= 2

    @property
    def ok(self) -> bool:
        """Signal beyond the noise at level `alpha`. One seed cannot be tested; a zero spread never passes."""
        if not self.spread > 0:
            return False
        return (not self.measured) or self.p_value < self.alpha

    def line(self) -> str:
        if not self.measured:
            return f"label spread {self.spread:.4g} across {self.subsets} subsets (noise not measured: one seed)"
        return (f"label spread {self.spread:.4g} vs noise {self.noise:.4g} across {self.subsets} subsets x "
                f"{self.seeds} seeds (F = {self.f_stat:.2f}, p = {self.p_value:.2g})")

    def refusal(self) -> str:
        return (f"labels carry no signal: spread {self.spread:.4g} vs noise {self.noise:.4g} (F = {self.f_stat:.2f}, "
                f"p = {self.p_value:.2g} >= {self.alpha:g}); try more subsets, more seeds, a continuous label metric "
                f"(eval_loss), or a single metric (`mmselect select --metrics clip`)")

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def label_signal(per_seed: np.ndarray, alpha: float = 0.01, how: str = "median") -> LabelSignal:
    """Test the (subsets, seeds) label matrix. `alpha` is the F-test's level."""
    x = np.asarray(per_seed, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a (subsets >= 2, seeds) label matrix, got shape {x.shape}")
    k, r = x.shape
    spread = float(aggregate(x, how).std(ddof=1))
    if r < 2:
        return LabelSignal(spread, float("nan"), float("nan"), float("nan"), k, r, alpha)
    noise = float(np.sqrt(x.var(axis=1, ddof=1).mean()))
    if noise == 0.0:  # identical repeats: any spread at all is signal, none is not
        f, p = (float("inf"), 0.0) if spread > 0 else (float("nan"), 1.0)
    else:
        from scipy.stats import f_oneway

        res = f_oneway(*x)
        f, p = float(res.statistic), float(res.pvalue)
    return LabelSignal(spread, noise, f, p, k, r, alpha)
