"""Do the genuine labels carry signal? Aggregate each subset's repeated labels robustly, and test whether the spread
of labels ACROSS subsets exceeds the noise WITHIN a subset (the same subset fine-tuned with other seeds).

The test is the F-test of a randomised complete block design: subsets are the treatments and the LoRA seeds the
blocks, since every subset is fine-tuned with the same seeds (the same LoRA initialisation and shuffling draws), so
a seed that helps every subset is not noise. The noise is what remains of a run's label once its subset's and its
seed's effects are removed. When the subsets differ no more than that, the labels rank subsets by luck, and a
selector trained on them fits noise: training stops there with `NoSignalError` instead.

By default the test runs on the scale the selector is fitted on: each seed's labels as normal scores of their ranks.
On the raw scale one blown-up LoRA run (a loss of 3 where its other seed gave 1) counts as much noise as every
other disagreement together, and refuses labels whose order the seeds agree on (benchmarks/results/
selector_variants.md, seed 22: raw p = 0.015, ranks p = 0.0002); shuffled labels still pass only at the test's level.

The two-way table is computed here because scipy has no two-way ANOVA (statsmodels, which does, is not a
dependency); scipy gives the F distribution.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from selector.core.errors import MmselectError

AGGREGATES = ("median", "trimmed-mean", "mean")
TRANSFORMS = ("rank", "none")
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


def transform(labels: np.ndarray, how: str = "rank") -> np.ndarray:
    """The labels a model is fitted to: "rank" maps them to normal scores of their ranks (ties share a rank),
    "none" leaves them as they are."""
    y = np.asarray(labels, dtype=np.float64)
    if how == "none":
        return y
    if how != "rank":
        raise ValueError(f"unknown label transform {how!r}; choose one of {', '.join(TRANSFORMS)}")
    from scipy.stats import norm, rankdata

    return norm.ppf((rankdata(y) - 0.5) / len(y))


@dataclass(frozen=True)
class LabelSignal:
    """The ANOVA of the labels: `spread` is the std of the aggregated labels across subsets, `noise` the std of one
    run's label once the subset and seed effects are removed. `p_value` is NaN with one seed (no noise estimate)."""

    spread: float
    noise: float
    f_stat: float
    p_value: float
    subsets: int
    seeds: int
    alpha: float
    scale: str = "none"  # "rank": tested on each seed's normal scores (TRANSFORMS)

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
        return (f"label spread {self.spread:.4g} vs noise {self.noise:.4g}{self._unit} across {self.subsets} "
                f"subsets x {self.seeds} seeds (F = {self.f_stat:.2f}, p = {self.p_value:.2g})")

    @property
    def _unit(self) -> str:
        return " (in rank normal scores)" if self.scale == "rank" else ""

    def refusal(self) -> str:
        return (f"labels carry no signal: spread {self.spread:.4g} vs noise {self.noise:.4g}{self._unit} "
                f"(F = {self.f_stat:.2f}, "
                f"p = {self.p_value:.2g} >= {self.alpha:g}); try more subsets, more seeds, a continuous label metric "
                f"(eval_loss), or a single metric (`mmselect select --metrics clip`)")

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def label_signal(per_seed: np.ndarray, alpha: float = 0.01, how: str = "median", scale: str = "rank") -> LabelSignal:
    """Test the (subsets, seeds) label matrix. `alpha` is the F-test's level; `scale` "rank" tests each seed's
    labels as normal scores of their ranks, "none" the labels as they are."""
    x = np.asarray(per_seed, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a (subsets >= 2, seeds) label matrix, got shape {x.shape}")
    k, r = x.shape
    x = np.column_stack([transform(x[:, j], scale) for j in range(r)])
    spread = float(aggregate(x, how).std(ddof=1))
    if r < 2:
        return LabelSignal(spread, float("nan"), float("nan"), float("nan"), k, r, alpha, scale)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    df_subsets, df_resid = k - 1, (k - 1) * (r - 1)
    ms_subsets = r * float(x.mean(axis=1).var(ddof=1))
    ms_resid = float((resid ** 2).sum()) / df_resid
    noise = float(np.sqrt(ms_resid))
    if ms_resid <= 1e-30 * max(ms_subsets, 1e-300):  # repeats that agree exactly: any spread is signal
        f, p = (float("inf"), 0.0) if ms_subsets > 0 else (float("nan"), 1.0)
    else:
        from scipy.stats import f as f_dist

        f = ms_subsets / ms_resid
        p = float(f_dist.sf(f, df_subsets, df_resid))
    return LabelSignal(spread, noise, float(f), p, k, r, alpha, scale)
