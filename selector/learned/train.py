"""Train the learned selector end to end: features (fitted once) -> K equal subsets -> genuine labels -> network.

`fit_selector` is the pure part (score table + subsets + labels -> fitted selector and linear baseline);
`train_selector` adds the files: records, score table, label cache, and the saved selector directory.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.errors import MmselectError
from selector.learned.baselines import LinearSelector
from selector.learned.features import FeatureConfig, FeatureTransform, vector_matrix
from selector.learned.final import ClusterConfig
from selector.learned.labels import LabelFn, LabelResult, genuine_labels
from selector.learned.model import InferenceConfig, LearnedSelector
from selector.learned.network import (NetworkConfig, TrainConfig, TrainHistory, combined_history,
                                      train_ensemble)
from selector.learned.subsets import make_subsets, subset_members


@dataclass(frozen=True)
class SelectorConfig:
    """Everything about the selector except where its data lives."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    n_subsets: int = 30
    subset_method: str = "kmeans"  # or "random"
    d_model: int = 16
    n_layers: int = 2
    n_heads: int = 4
    block: str = "preact"  # residual Linear block, see NetworkConfig
    zero_init_residual: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    passes: int = 8
    linear_alpha: float = 1.0
    seed: int = 0
    subset_seed: int | None = None  # seed of the label subsets (default: `seed`); fix it to reuse labels across seeds


@dataclass
class FittedSelector:
    selector: LearnedSelector
    linear: LinearSelector
    history: TrainHistory  # the ensemble's (per-epoch mean curves, mean best validation loss)
    features: np.ndarray  # pool features, (n, d)
    members: list[TrainHistory] = field(default_factory=list)  # one per ensemble member


def pool_subsets(table: pa.Table, config: SelectorConfig) -> np.ndarray:
    """Subset id per row of the score table (k-means on the image embedding column, or random)."""
    emb = None
    if config.subset_method == "kmeans":
        col = config.features.image_embedding
        if not col or col not in table.column_names:
            raise MmselectError(f"k-means label subsets need the image embedding column {col!r} in the score table; "
                                f"score with it, or use random subsets")
        emb = vector_matrix(table, col)
        bad = np.isnan(emb).any(axis=1)
        if bad.any():  # documented rule: a sample without an image embedding is placed at the pool mean
            emb[bad] = np.nanmean(emb[~bad], axis=0)
    seed = config.seed if config.subset_seed is None else config.subset_seed
    return make_subsets(table.num_rows, config.n_subsets, config.subset_method, emb, seed)


def fit_selector(table: pa.Table, subsets: np.ndarray, labels: np.ndarray, config: SelectorConfig = SelectorConfig(),
                 progress: bool = False) -> FittedSelector:
    """Fit the feature transform ONCE on the whole pool, then the attention selector and the linear baseline on the
    labelled subsets. The returned selectors hold that same transform object."""
    transform = FeatureTransform(config.features).fit(table)
    x = transform.transform(table)
    members = subset_members(np.asarray(subsets))
    feats = [x[m] for m in members]
    net = NetworkConfig(d_in=x.shape[1], d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
                        block=config.block, zero_init_residual=config.zero_init_residual)
    model, hists = train_ensemble(feats, labels, net, config.train, progress=progress)
    hist = combined_history(hists)
    size = int(np.median([len(m) for m in members]))
    selector = LearnedSelector(transform, model, InferenceConfig(subset_size=size, passes=config.passes,
                                                                 seed=config.seed), config.clusters,
                               meta={"label_mean": hist.label_mean, "label_std": hist.label_std,
                                     "best_epoch": [h.best_epoch for h in hists],
                                     "cv_val_loss": hist.best_val_loss, "null_val_loss": hist.null_val_loss})
    linear = LinearSelector(transform, config.linear_alpha, config.clusters).fit(feats, labels)
    return FittedSelector(selector, linear, hist, x, hists)


@dataclass(frozen=True)
class TrainSelectorConfig:
    """Files and settings of `mmselect train-selector`."""

    data: Path
    scores: Path
    out: Path
    images: Path | None = None
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    label_seeds: tuple[int, ...] = (0,)
    label_cache: Path | None = None  # default OUT/labels
    progress: bool = True


@dataclass
class TrainSelectorResult:
    out: Path
    fitted: FittedSelector
    labels: LabelResult
    subsets: np.ndarray
    ids: list[str]


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


def train_selector(config: TrainSelectorConfig, label_fn: LabelFn) -> TrainSelectorResult:
    """Read the pool and its scores, label the subsets with `label_fn` (cached), fit, and save to `config.out`."""
    import pyarrow.parquet as pq

    from selector.core.io import atomic_write
    from selector.core.records import read_records

    records = read_records(config.data, images=config.images)
    rows = records.valid_rows()
    ids = [records.table.column("id")[int(r)].as_py() for r in rows]
    sc = config.selector
    needed = [c for c in (sc.features.image_embedding, sc.features.text_embedding) if c]
    needed += list(sc.features.metrics or [])
    table = aligned_scores(pq.read_table(config.scores), ids, needed)
    subsets = pool_subsets(table, sc)
    label_cache = config.label_cache or Path(config.out) / "labels"
    labels = genuine_labels(records, rows, subsets, label_fn, label_cache, config.label_seeds, config.progress)
    fitted = fit_selector(table, subsets, labels.labels, sc, progress=config.progress)
    out = Path(config.out)
    fitted.selector.save(out)
    fitted.linear.save(out / "linear")
    atomic_write(out / "labels.json", [json.dumps({**labels.to_dict(), "label_fn": label_fn.key}, indent=2).encode()])
    atomic_write(out / "history.json", [json.dumps({**asdict(fitted.history),
                                                    "members": [asdict(h) for h in fitted.members]},
                                                   indent=2).encode()])
    atomic_write(out / "subsets.json", [json.dumps({"ids": ids, "subset": subsets.tolist()}).encode()])
    return TrainSelectorResult(out, fitted, labels, subsets, ids)
