"""Selector input features from a score table: normalised metric columns + PCA of the image and text embeddings.

The transform is FITTED ONCE (on the training pool) and saved with the selector; training and inference apply the
very same fitted object. (The official InstructionGPT-4 code fitted PCA per subset in training and on the whole pool
at inference, so its two feature spaces differed.)

Missing values, the documented rule (never a silent zero):
- a missing metric value (null / NaN, e.g. a judge parse failure) is imputed with that metric's fitted median
  (normalised: the column's fitted centre), and a flag column `<metric>:missing` (1.0 = imputed) is added for every
  metric that had missing values when the transform was fitted;
- a missing embedding is imputed with the fitted PCA mean (all-zero PCA coordinates) and flagged the same way;
- values missing at inference in a column that had none at fit time are imputed the same way and counted in
  `FeatureTransform.last_imputed`; `missing="error"` refuses any missing value instead.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.errors import MmselectError
from selector.core.normalize import METHODS, Normaliser, fit_normaliser

MISSING_RULES = ("impute-flag", "error")


class FeatureError(MmselectError):
    """The score table cannot be turned into selector features (missing column, wrong type, missing values)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which columns become features and how. `metrics=None` takes every scalar column except `id`."""

    metrics: tuple[str, ...] | None = None
    image_embedding: str | None = "embed-image"
    text_embedding: str | None = "embed-text"
    image_dims: int = 6
    text_dims: int = 6
    # Any other vector columns, each reduced by PCA to `extra_dims` (e.g. `influence__grad`, the PCA of LESS's
    # projected gradients that `score --metrics influence --influence-gradient-dims N` writes).
    extra_embeddings: tuple[str, ...] = ()
    extra_dims: int = 6
    normalise: str = "robust-z"
    missing: str = "impute-flag"
    seed: int = 0

    def __post_init__(self):
        if self.normalise not in METHODS:
            raise ValueError(f"unknown normalisation {self.normalise!r}; choose one of {', '.join(METHODS)}")
        if self.missing not in MISSING_RULES:
            raise ValueError(f"unknown missing-value rule {self.missing!r}; choose one of {', '.join(MISSING_RULES)}")


def is_vector(col: pa.ChunkedArray | pa.Array) -> bool:
    return pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type)


def scalar_columns(table: pa.Table) -> list[str]:
    """Scalar numeric metric columns of a score table (not `id`, not embeddings, not `*reason*` text)."""
    out = []
    for name in table.column_names:
        col = table.column(name)
        if name == "id" or is_vector(col):
            continue
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
            out.append(name)
    return out


def scalar_matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    """(n, len(names)) float64, nulls as NaN."""
    if not names:
        return np.zeros((table.num_rows, 0))
    return np.stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names], axis=1)


def vector_matrix(table: pa.Table, name: str) -> np.ndarray:
    """(n, dim) float64 from a list column; a null row becomes a row of NaN."""
    if name not in table.column_names:
        raise FeatureError(f"score table has no embedding column {name!r} (it has {table.column_names}); "
                           f"score with that metric first, or set the feature config's embedding to None")
    col = table.column(name)
    if not is_vector(col):
        raise FeatureError(f"column {name!r} is not an embedding (type {col.type})")
    rows = col.to_pylist()
    dim = next((len(r) for r in rows if r is not None), 0)
    out = np.full((len(rows), dim), np.nan)
    for i, r in enumerate(rows):
        if r is not None:
            if len(r) != dim:
                raise FeatureError(f"embedding {name!r} row {i} has {len(r)} dims, expected {dim}")
            out[i] = r
    return out


@dataclass
class _PCA:
    """A fitted PCA map `(x - mean) @ components.T` (what sklearn's PCA.transform computes without whitening).

    Kept as two arrays so the fitted map round-trips through JSON exactly; sklearn does the fitting."""

    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, dims: int, seed: int) -> "_PCA":
        from sklearn.decomposition import PCA

        rows = x[~np.isnan(x).any(axis=1)]
        dims = min(dims, rows.shape[0], rows.shape[1])
        if dims < 1:
            raise FeatureError("cannot fit PCA: no complete embedding rows")
        pca = PCA(n_components=dims, random_state=seed, svd_solver="full").fit(rows)
        return cls(pca.mean_.copy(), pca.components_.copy(), pca.explained_variance_ratio_.copy())

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.components.T


@dataclass
class FeatureTransform:
    """Score table -> feature matrix. `fit` once on the pool; `transform` anywhere; `save`/`load` with the selector."""

    config: FeatureConfig = field(default_factory=FeatureConfig)
    metric_names: list[str] = field(default_factory=list)
    normaliser: Normaliser | None = None
    fill: np.ndarray | None = None  # raw-scale imputation value per metric (fitted median)
    flagged: list[str] = field(default_factory=list)  # columns that get a `:missing` flag
    pca: dict[str, _PCA] = field(default_factory=dict)
    last_imputed: dict[str, int] = field(default_factory=dict)

    @property
    def fitted(self) -> bool:
        return self.normaliser is not None

    @property
    def feature_names(self) -> list[str]:
        names = list(self.metric_names)
        for key, p in self.pca.items():
            names += [f"{key}:pc{i}" for i in range(p.components.shape[0])]
        names += [f"{c}:missing" for c in self.flagged]
        return names

    def _embedding_columns(self) -> dict[str, tuple[str, int]]:
        out = {}
        if self.config.image_embedding:
            out["image"] = (self.config.image_embedding, self.config.image_dims)
        if self.config.text_embedding:
            out["text"] = (self.config.text_embedding, self.config.text_dims)
        for col in self.config.extra_embeddings:
            out[col] = (col, self.config.extra_dims)
        return {k: v for k, v in out.items() if v[1] > 0}

    def fit(self, table: pa.Table) -> "FeatureTransform":
        cfg = self.config
        names = list(cfg.metrics) if cfg.metrics is not None else scalar_columns(table)
        absent = [m for m in names if m not in table.column_names]
        if absent:
            raise FeatureError(f"score table has no metric column(s) {absent}; it has {table.column_names}")
        self.metric_names = names
        x = scalar_matrix(table, names)
        self._check_missing(x, names)
        self.normaliser = fit_normaliser(x, cfg.normalise)
        with np.errstate(all="ignore"):
            self.fill = np.array([np.nanmedian(x[:, j]) if (~np.isnan(x[:, j])).any() else 0.0
                                  for j in range(x.shape[1])])
        self.flagged = [m for j, m in enumerate(names) if np.isnan(x[:, j]).any()]
        self.pca = {}
        for key, (col, dims) in self._embedding_columns().items():
            e = vector_matrix(table, col)
            self._check_missing(e, [col])
            self.pca[key] = _PCA.fit(e, dims, cfg.seed)
            if np.isnan(e).any(axis=1).any():
                self.flagged.append(col)
        if not self.feature_names:
            raise FeatureError("no features: the score table has no metric or embedding columns")
        return self

    def _check_missing(self, x: np.ndarray, names: list[str]):
        if self.config.missing == "error" and np.isnan(x).any():
            bad = sorted({names[j] if len(names) > 1 else names[0] for j in np.flatnonzero(np.isnan(x).any(axis=0))})
            raise FeatureError(f"missing values in {bad} and the missing-value rule is 'error'; rescore those "
                               f"records or use missing='impute-flag'")

    def transform(self, table: pa.Table) -> np.ndarray:
        """(n, len(feature_names)) float32 features, in the fitted column order."""
        if not self.fitted:
            raise FeatureError("FeatureTransform.transform called before fit")
        self.last_imputed = {}
        x = scalar_matrix(table, self.metric_names) if self.metric_names else np.zeros((table.num_rows, 0))
        self._check_missing(x, self.metric_names)
        miss = np.isnan(x)
        x = np.where(miss, self.fill[None, :], x)
        parts = [self.normaliser.transform(x)]
        flags = {m: miss[:, j] for j, m in enumerate(self.metric_names)}
        for key, (col, _) in self._embedding_columns().items():
            e = vector_matrix(table, col)
            self._check_missing(e, [col])
            bad = np.isnan(e).any(axis=1)
            e = np.where(bad[:, None], self.pca[key].mean[None, :], e)
            parts.append(self.pca[key].transform(e))
            flags[col] = bad
        for name, f in flags.items():
            if f.any():
                self.last_imputed[name] = int(f.sum())
        parts.append(np.stack([flags[c].astype(np.float64) for c in self.flagged], axis=1)
                     if self.flagged else np.zeros((table.num_rows, 0)))
        out = np.concatenate(parts, axis=1)
        return out.astype(np.float32)

    def fit_transform(self, table: pa.Table) -> np.ndarray:
        return self.fit(table).transform(table)

    def required_columns(self) -> list[str]:
        return list(self.metric_names) + [c for c, _ in self._embedding_columns().values()]

    # ---- persistence (JSON: small arrays, exact float64 round trip) ----
    def to_dict(self) -> dict:
        n = self.normaliser
        return {
            "config": asdict(self.config),
            "metric_names": self.metric_names,
            "normaliser": {"method": n.method, "center": n.center.tolist(), "scale": n.scale.tolist(),
                           "reference": [r.tolist() for r in n.reference] if n.reference is not None else None},
            "fill": self.fill.tolist(),
            "flagged": self.flagged,
            "pca": {k: {"mean": p.mean.tolist(), "components": p.components.tolist(),
                        "explained": p.explained.tolist()} for k, p in self.pca.items()},
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureTransform":
        c = dict(d["config"])
        if c.get("metrics") is not None:
            c["metrics"] = tuple(c["metrics"])
        c["extra_embeddings"] = tuple(c.get("extra_embeddings", ()))
        n = d["normaliser"]
        ref = [np.asarray(r, dtype=np.float64) for r in n["reference"]] if n["reference"] is not None else None
        return cls(config=FeatureConfig(**c), metric_names=list(d["metric_names"]),
                   normaliser=Normaliser(n["method"], np.asarray(n["center"]), np.asarray(n["scale"]), ref),
                   fill=np.asarray(d["fill"], dtype=np.float64), flagged=list(d["flagged"]),
                   pca={k: _PCA(np.asarray(p["mean"]), np.asarray(p["components"]), np.asarray(p["explained"]))
                        for k, p in d["pca"].items()})

    def save(self, path: str | Path) -> None:
        from selector.core.io import atomic_write

        atomic_write(Path(path), [json.dumps(self.to_dict()).encode()])

    @classmethod
    def load(cls, path: str | Path) -> "FeatureTransform":
        return cls.from_dict(json.loads(Path(path).read_text()))
