"""Train the learned selector end to end: features (fitted once) -> K equal subsets -> label learning rate (given,
derived from the base model, or measured by a pilot) -> genuine labels -> signal test -> model choice by cross-validation -> the chosen scorer.

`SelectorConfig` (selector.learned.config) is THE configuration of a selector.
`fit_selector` is the pure part (score table + subsets + labels -> fitted selector); `train_selector` adds the files:
records, score table, label cache, the saved selector folder, or a refusal when the labels cannot train one.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.errors import MmselectError
from selector.core.strict_json import dumps
from selector.learned.baselines import linear_selector
from selector.learned.choice import Choice, candidate_table, choose, permutation_p
from selector.core.normalize import fit_normaliser
from selector.learned.features import FeatureConfig, FeatureTransform, scalar_columns, scalar_matrix
from selector.learned.labels import LabelFn, LabelResult, genuine_labels
from selector.learned.model import MANIFEST, REFUSED, LearnedSelector
from selector.learned.config import SelectorConfig, TrainConfig
from selector.learned.network import (NetworkConfig, TrainHistory, combined_history, member_folds,
                                      out_of_fold, train_ensemble)
from selector.learned.pilot import PilotResult, needs_pilot, pilot_lr
from selector.learned.scorers import InferenceConfig, LinearScorer, MetricScorer, NetworkScorer
from selector.learned.signal import LabelSignal, NoSignalError, label_signal, transform
from selector.learned.subsets import make_subsets, subset_members
from selector.learned.final import cluster_groups, image_matrix

log = logging.getLogger(__name__)


@dataclass
class FittedSelector:
    selector: LearnedSelector  # the chosen scorer
    linear: LearnedSelector    # the InstructMining baseline, always fitted for comparison
    history: TrainHistory      # the network ensemble's (per-epoch mean curves); empty when no network was trained
    features: np.ndarray       # pool features, (n, d)
    choice: Choice
    members: list[TrainHistory] = field(default_factory=list)  # one per ensemble member


def pool_subsets(table: pa.Table, config: SelectorConfig) -> np.ndarray:
    """Subset id per row of the score table: random, balanced k-means on the image embedding column ("kmeans") or
    on the normalised scalar metrics ("metrics"), content-balanced over the spectral clusters of the image embedding
    (the final selection's clusters) when the table has one."""
    lc = config.labels
    x = groups = None
    col = config.features.image_embedding
    if lc.subset_method == "kmeans":
        if not col or col not in table.column_names:
            raise MmselectError(f"k-means label subsets need the image embedding column {col!r} in the score table; "
                                f"score with it, or use random subsets")
        x = image_matrix(table, col)
    elif lc.subset_method == "metrics":
        x = metric_design_matrix(table, config.features)
        groups = cluster_groups(table, col, config.clusters) if lc.balance_content else None
    seed = config.seed if lc.subset_seed is None else lc.subset_seed
    try:
        return make_subsets(table.num_rows, lc.n_subsets, lc.subset_method, x, seed, groups)
    except ValueError as exc:
        raise MmselectError(f"{exc}; use fewer --subsets") from None


def metric_design_matrix(table: pa.Table, features: FeatureConfig) -> np.ndarray:
    """The scalar metrics the selector uses, each normalised like its features (missing values at the median)."""
    names = list(features.metrics) if features.metrics is not None else scalar_columns(table)
    if not names:
        raise MmselectError("metric-stratified label subsets need at least one scalar metric in the score table; "
                            "score with one (e.g. --metrics clip,length), or use random subsets")
    x = scalar_matrix(table, names)
    with np.errstate(all="ignore"):
        med = np.nanmedian(x, axis=0)
    x = np.where(np.isnan(x), np.nan_to_num(med)[None, :], x)
    return fit_normaliser(x, features.normalise if features.normalise != "none" else "z").transform(x)


def cv_folds(k: int, config: TrainConfig) -> list[np.ndarray]:
    """The folds every candidate is cross-validated on: the network ensemble's own (member m holds out fold m), or
    a seeded 5-fold split when the network is a single net."""
    folds = member_folds(k, config)
    if all(f is not None for f in folds) and len(folds) >= 2:
        return folds
    order = np.random.default_rng(config.seed).permutation(k)
    return [np.sort(f) for f in np.array_split(order, min(5, k))]


def fit_selector(table: pa.Table, subsets: np.ndarray, labels: np.ndarray, config: SelectorConfig = SelectorConfig(),
                 progress: bool = False) -> FittedSelector:
    """Fit the feature transform ONCE on the whole pool, cross-validate the network, the linear fit and each single
    metric on the labelled subsets, and keep the one `config.choice` picks. `choice.chosen == "mean"` means none
    beats predicting the mean label: `selector` is then None and the caller refuses."""
    labels = np.asarray(labels, dtype=np.float64)
    transform = FeatureTransform(config.features).fit(table)
    x = transform.transform(table)
    members = subset_members(np.asarray(subsets))
    feats = [x[m] for m in members]
    folds = cv_folds(len(feats), config.train)
    model, hists, hist, network_oof = None, [], TrainHistory(), None
    if config.choice.model in ("auto", "network"):
        net = NetworkConfig(d_in=x.shape[1], d_model=config.d_model, n_layers=config.n_layers,
                            n_heads=config.n_heads, block=config.block, zero_init_residual=config.zero_init_residual)
        model, hists = train_ensemble(feats, labels, net, config.train, progress=progress)
        hist = combined_history(hists)
        if all(h.val_pred for h in hists) and len(hists) >= 2:
            network_oof = out_of_fold(hists, len(labels))
    means = np.stack([f.mean(axis=0) for f in feats]).astype(np.float64)
    table_ = candidate_table(means, labels, folds, transform.metric_names, network_oof, config.choice)
    choice = choose(table_, folds, config.choice,
                    permutation_p(means, labels, folds, transform.metric_names, config.choice))
    scorer = build_scorer(choice.chosen, model, feats, labels, transform.metric_names, config)
    meta = {"choice": choice.to_dict(),
            "network": {"best_epoch": [h.best_epoch for h in hists], "cv_val_loss": hist.best_val_loss,
                        "null_val_loss": hist.null_val_loss} if hists else None}
    selector = LearnedSelector(transform, scorer, config.clusters, meta) if scorer is not None else None
    linear = linear_selector(transform, feats, labels, config.choice.ridge_alpha, config.clusters)
    return FittedSelector(selector, linear, hist, x, choice, hists)


def build_scorer(chosen: str, model, feats: list[np.ndarray], labels: np.ndarray, metric_names: list[str],
                 config: SelectorConfig):
    """The scorer model choice kept, fitted on every labelled subset (None for "mean": nothing to keep)."""
    if chosen == "network":
        size = int(np.median([len(f) for f in feats]))
        return NetworkScorer(model, InferenceConfig(subset_size=size, passes=config.passes, seed=config.seed))
    if chosen == "linear":
        return LinearScorer(alpha=config.choice.ridge_alpha).fit(feats, labels)
    if chosen.startswith("metric:"):
        name = chosen.split(":", 1)[1]
        return MetricScorer(name, metric_names.index(name)).fit(feats, labels)
    return None


@dataclass(frozen=True)
class TrainSelectorConfig:
    """Files and settings of `mmselect train-selector`."""

    data: Path
    scores: Path
    out: Path
    images: Path | None = None
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    label_cache: Path | None = None  # default OUT/labels
    progress: bool = True


@dataclass
class TrainSelectorResult:
    out: Path
    fitted: FittedSelector
    labels: LabelResult
    signal: LabelSignal
    label_lr: dict  # {"lr", "how": "given" | "derived" | "pilot", ...}
    pilot: PilotResult | None
    subsets: np.ndarray
    ids: list[str]

    def lr_line(self) -> str:
        """One line: the label runs' learning rate and where it came from."""
        if self.pilot is not None:
            return self.pilot.line()
        return f"label lr {self.label_lr['lr']:g} ({self.label_lr.get('why') or self.label_lr['how']})"


def aligned_scores(scores: pa.Table, ids: list[str], needed: list[str]) -> pa.Table:
    """Rows of the score table in the order of `ids`; an id missing from the table is an error naming it."""
    from selector.core.scores import align_scores

    have = set(scores.column("id").to_pylist())
    missing = [i for i in ids if i not in have]
    if missing:
        raise MmselectError(f"score table has no row for {len(missing)} record(s), e.g. {missing[:3]}; "
                            f"rescore the data with `mmselect score`")
    absent = [c for c in needed if c not in scores.column_names]
    if absent:
        raise MmselectError(f"score table lacks column(s) {absent}; it has {scores.column_names}")
    return align_scores(scores, ids)


def _clear_selector(out: Path) -> None:
    """Remove the manifests that make OUT (and OUT/linear) loadable as selectors."""
    for d in (out, out / "linear"):
        (d / MANIFEST).unlink(missing_ok=True)


def _refuse(out: Path, reason: str, details: dict) -> None:
    from selector.core.io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    _clear_selector(out)
    atomic_write(out / REFUSED, [dumps({"reason": reason, **details})])
    raise NoSignalError(reason)


def choose_label_lr(label_fn, records, rows, subsets, table, label_cache, sc: SelectorConfig):
    """The label function with its learning rate set: given, derived by the label function, or measured by a
    pilot (`sc.labels.lr_rule`). Returns (label_fn, how as a dict for the saved files, the pilot or None)."""
    lc = sc.labels
    if not needs_pilot(label_fn):  # a rate was given (or the label function takes none)
        lr = getattr(label_fn, "lr", None)
        if lr is not None:
            log.info("label lr %g (given)", lr)
        return label_fn, {"lr": lr, "how": "given"}, None
    if lc.lr_rule == "derive" and hasattr(label_fn, "derived_lr"):
        lr, why = label_fn.derived_lr()
        log.info("label lr %g, %s", lr, why)
        return dataclasses.replace(label_fn, lr=lr), {"lr": lr, "how": "derived", "why": why}, None
    if len(lc.seeds) < 2:
        raise MmselectError("the label learning-rate pilot needs two label seeds to tell signal from noise; pass "
                            "--label-lr, or at least two --label-seeds")
    x = metric_design_matrix(table, sc.features)
    design = np.stack([x[m].mean(axis=0) for m in subset_members(subsets)])
    pilot = pilot_lr(records, rows, subsets, label_fn, label_cache, design, lc.lr_grid, lc.seeds, lc.pilot_subsets)
    log.info("%s", pilot.line())
    return dataclasses.replace(label_fn, lr=pilot.lr), pilot.to_dict(), pilot


def train_selector(config: TrainSelectorConfig, label_fn: LabelFn) -> TrainSelectorResult:
    """Read the pool and its scores, label the subsets with `label_fn` (cached), test the labels, choose and fit the
    model, and save to `config.out`; or write `refused.json` and raise `NoSignalError` when the labels cannot
    train a selector (then OUT holds nothing `select --selector` accepts)."""
    import pyarrow.parquet as pq

    from selector.core.io import atomic_write
    from selector.core.records import read_records
    from selector.core.scores import check_score_table

    records = read_records(config.data, images=config.images)
    rows = records.valid_rows()
    ids = [records.table.column("id")[int(r)].as_py() for r in rows]
    sc, lc = config.selector, config.selector.labels
    needed = [c for c in (sc.features.image_embedding, sc.features.text_embedding, *sc.features.extra_embeddings) if c]
    needed += list(sc.features.metrics or [])
    where = f"--scores {config.scores}"  # one row per id, numbers or vectors, inf / NaN missing: as `select` checks
    table = aligned_scores(check_score_table(pq.read_table(config.scores), where), ids, needed)
    if "ifd" not in table.column_names and sc.features.metrics is None:
        log.info("the score table has no `ifd` column; answer-loss labels favour short answers, and IFD is the metric "
                 "that tells a truncated one from a right one: score with `--metrics ...,ifd --ifd-model BASE` "
                 "(BENCHMARKS.md, issue 13)")
    subsets = pool_subsets(table, sc)
    out = Path(config.out)
    label_cache = config.label_cache or out / "labels"
    label_fn, lr_how, pilot = choose_label_lr(label_fn, records, rows, subsets, table, label_cache, sc)
    labels = genuine_labels(records, rows, subsets, label_fn, label_cache, lc.seeds, config.progress, lc.aggregate)
    atomic_write(out / "labels.json", [dumps({**labels.to_dict(), "label_fn": label_fn.key, "label_lr": lr_how})])
    atomic_write(out / "subsets.json", [dumps({"ids": ids, "subset": subsets.tolist()})])
    signal = label_signal(labels.per_seed, lc.signal_alpha, lc.aggregate, lc.transform)
    log.info("%s", signal.line())
    if not signal.ok:
        _refuse(out, signal.refusal(), {"signal": signal.to_dict()})
    fitted = fit_selector(table, subsets, transform(labels.labels, lc.transform), sc, progress=config.progress)
    log.info("model choice: %s (%s)", fitted.choice.chosen, fitted.choice.why)
    if fitted.selector is None:
        _refuse(out, f"labels carry no signal a model can use: {fitted.choice.why}; try more subsets, more seeds, "
                     f"a continuous label metric (eval_loss), or a single metric (`mmselect select --metrics clip`)",
                {"signal": signal.to_dict(), "choice": fitted.choice.to_dict()})
    fitted.selector.meta.update(signal=signal.to_dict(), label_lr=lr_how, settings=asdict(sc))
    atomic_write(out / "history.json", [dumps({**asdict(fitted.history),
                                               "members": [asdict(h) for h in fitted.members]})])
    fitted.linear.save(out / "linear")
    fitted.selector.save(out)
    return TrainSelectorResult(out, fitted, labels, signal, lr_how, pilot, subsets, ids)
