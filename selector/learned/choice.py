"""Which model should turn the subset labels into a ranking? Cross-validate them on the labels and keep the best.

Candidates, all fitted on the same per-sample features and scored on the same folds of the label subsets:
- `network`: the attention selector (its CV ensemble: member m held out fold m; the out-of-fold predictions at the
  ensemble's pooled best epoch are its cross-validated predictions);
- `linear`: InstructMining's ridge fit from a subset's mean features to its label;
- `metric:<name>`: one metric alone (a straight-line fit of the label on the subset mean of that metric);
- `mean`: predicting the training folds' mean label, the bar every candidate must clear (CV R^2 = 0 by definition).

CV R^2 = 1 - SSE(model) / SSE(training-fold mean), over every subset's out-of-fold prediction.

With 20-30 noisy labels a CV R^2 slightly above 0 happens by chance, so the choice is also tested against label
permutations: the best CV R^2 of the cheap candidates (linear and single metrics) on the real labels must beat the
same maximum on `permutations` shuffles of the labels (p-value <= `alpha`), or training refuses.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MODELS = ("auto", "network", "linear", "metric")


@dataclass(frozen=True)
class ChoiceConfig:
    """`model="auto"` keeps the candidate with the best CV R^2. The network's CV picks one of its epochs on the same
    folds, which flatters it slightly, and at epoch -1 it IS the ridge fit, so it must beat the best other candidate
    by `network_margin` to be chosen. A chosen model must reach `min_r2` or training refuses."""

    model: str = "auto"
    network_margin: float = 0.02
    min_r2: float = 0.0
    ridge_alpha: float = 1.0
    permutations: int = 200
    alpha: float = 0.05  # level of the permutation test of the cheap candidates' best CV R^2
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown selector model {self.model!r}; choose one of {', '.join(MODELS)}")


@dataclass(frozen=True)
class Candidate:
    name: str       # "network", "linear", "metric:<column>" or "mean"
    cv_r2: float
    cv_mse: float


@dataclass(frozen=True)
class Choice:
    chosen: str
    why: str
    table: tuple[Candidate, ...]
    folds: list[list[int]]
    p_value: float = float("nan")  # permutation test of the cheap candidates' best CV R^2

    def lines(self) -> list[str]:
        return [f"  {c.name:<24} CV R^2 {c.cv_r2:+.3f}" + ("   <- chosen" if c.name == self.chosen else "")
                for c in self.table]

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "why": self.why, "p_value": self.p_value,
                "table": [asdict(c) for c in self.table], "folds": self.folds}


def cv_r2(y: np.ndarray, pred: np.ndarray, null: np.ndarray) -> float:
    """1 - SSE(pred) / SSE(null); NaN when the null predicts perfectly."""
    den = float(np.sum((y - null) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / den if den > 0 else float("nan")


def out_of_fold(fit_predict, x: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """Predictions for every subset from a model fitted without its fold. `fit_predict(x_tr, y_tr, x_te)`."""
    pred = np.full(len(y), np.nan)
    for va in folds:
        tr = np.setdiff1d(np.arange(len(y)), va)
        pred[va] = fit_predict(x[tr], y[tr], x[va])
    return pred


def ridge_fit_predict(alpha: float):
    def fit_predict(x_tr, y_tr, x_te):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=alpha).fit(x_tr, y_tr).predict(x_te)
    return fit_predict


def line_fit_predict(x_tr, y_tr, x_te):
    """Least-squares line of y on one feature (a constant feature predicts the mean)."""
    x_tr, x_te = x_tr[:, 0], x_te[:, 0]
    if np.ptp(x_tr) == 0:
        return np.full(len(x_te), y_tr.mean())
    slope, intercept = np.polyfit(x_tr, y_tr, 1)
    return slope * x_te + intercept


def mean_fit_predict(x_tr, y_tr, x_te):
    return np.full(len(x_te), y_tr.mean())


def candidate_table(subset_means: np.ndarray, labels: np.ndarray, folds: list[np.ndarray], metric_names: list[str],
                    network_oof: np.ndarray | None, config: ChoiceConfig) -> list[Candidate]:
    """CV scores of every candidate. `subset_means` (k, d): each subset's mean feature vector, whose first
    `len(metric_names)` columns are the normalised metrics; `network_oof`: the network's out-of-fold predictions."""
    y = np.asarray(labels, dtype=np.float64)
    null = out_of_fold(mean_fit_predict, subset_means, y, folds)

    def cand(name, pred):
        return Candidate(name, cv_r2(y, pred, null), float(np.mean((y - pred) ** 2)))

    out = [cand("network", network_oof)] if network_oof is not None else []
    out += [cand(name, pred) for name, pred in cheap_predictions(subset_means, y, folds, metric_names, config)]
    out.append(cand("mean", null))
    return out


def cheap_predictions(subset_means, y, folds, metric_names, config) -> list[tuple[str, np.ndarray]]:
    """Out-of-fold predictions of the linear fit and of each single metric."""
    out = [("linear", out_of_fold(ridge_fit_predict(config.ridge_alpha), subset_means, y, folds))]
    for j, m in enumerate(metric_names):
        out.append((f"metric:{m}", out_of_fold(line_fit_predict, subset_means[:, [j]], y, folds)))
    return out


def best_cheap_r2(subset_means, y, folds, metric_names, config) -> float:
    null = out_of_fold(mean_fit_predict, subset_means, y, folds)
    return max(cv_r2(y, pred, null) for _, pred in cheap_predictions(subset_means, y, folds, metric_names, config))


def permutation_p(subset_means: np.ndarray, labels: np.ndarray, folds: list[np.ndarray], metric_names: list[str],
                  config: ChoiceConfig) -> float:
    """P-value of the cheap candidates' best CV R^2 against `config.permutations` seeded shuffles of the labels."""
    y = np.asarray(labels, dtype=np.float64)
    observed = best_cheap_r2(subset_means, y, folds, metric_names, config)
    rng = np.random.default_rng(config.seed)
    null = [best_cheap_r2(subset_means, rng.permutation(y), folds, metric_names, config)
            for _ in range(config.permutations)]
    return (1 + sum(v >= observed for v in null)) / (1 + len(null))


def choose(table: list[Candidate], folds: list[np.ndarray], config: ChoiceConfig,
           p_value: float = float("nan")) -> Choice:
    """Apply `config.model` to the CV table. When nothing clears `min_r2`, or the permutation test's `p_value`
    exceeds `config.alpha`, `chosen` is "mean" and the caller refuses."""
    by_name = {c.name: c for c in table}
    folds_out = [sorted(int(i) for i in f) for f in folds]
    finite = [c for c in table if np.isfinite(c.cv_r2) and c.name != "mean"]
    if config.model == "auto":
        others = [c for c in finite if c.name != "network"]
        best_other = max(others, key=lambda c: c.cv_r2, default=None)
        net = by_name.get("network")
        if net is not None and np.isfinite(net.cv_r2) and (
                best_other is None or net.cv_r2 > best_other.cv_r2 + config.network_margin):
            pick, why = net, (f"network CV R^2 {net.cv_r2:+.3f} beats the best other candidate by more than "
                              f"{config.network_margin}")
        elif best_other is not None:
            pick = best_other
            why = f"best CV R^2 ({pick.cv_r2:+.3f})"
            if net is not None and pick.cv_r2 >= net.cv_r2 - config.network_margin:
                why += f"; the network ({net.cv_r2:+.3f}) does not beat it by {config.network_margin}"
        else:
            pick, why = by_name["mean"], "no candidate could be cross-validated"
    else:
        pool = [c for c in finite if c.name == config.model or c.name.startswith(f"{config.model}:")]
        pick = max(pool, key=lambda c: c.cv_r2, default=by_name["mean"])
        why = f"asked for {config.model} (CV R^2 {pick.cv_r2:+.3f})"
    if not (pick.cv_r2 > config.min_r2):
        return Choice("mean", f"no model beats predicting the mean label (best: {pick.name}, CV R^2 "
                              f"{pick.cv_r2:+.3f} <= {config.min_r2})", tuple(table), folds_out, p_value)
    if p_value > config.alpha:
        return Choice("mean", f"the best CV R^2 is within chance: shuffled labels reach it as often "
                              f"(permutation p = {p_value:.2g} > {config.alpha})", tuple(table), folds_out, p_value)
    return Choice(pick.name, f"{why}; permutation p = {p_value:.2g}", tuple(table), folds_out, p_value)
