"""What a report page draws from: the records of one input and their scores, lined up row for row with the valid
records, plus the ways to split them into groups (images per record, a source/task field, embedding clusters).

Everything is computed on every valid record with Arrow/NumPy kernels; only the 2-D embedding map and the cluster
fit use a sample (`SAMPLE`), and clusters are then assigned to every record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.arrow_numpy import to_arrow, to_numpy
from selector.core.records import RecordSet
from selector.core.selection_summary import scalar_metric_columns

SAMPLE = 5000  # points on an embedding map, and the rows a cluster model is fitted on
CLUSTERS = 8
JSON_CONTAINERS = ("json", "jsonl", "cc_sbu")
FIELD_KEYS = ("source", "task", "dataset", "category")  # a top-level record field that names where a record is from
FIELD_PROBE = 1000  # valid records read to find such a field before reading it from all
REASON_SUFFIX = "__reason"


@dataclass
class Pool:
    """The valid records of `records` with `scores` in the same row order (`id` first, a column per metric)."""

    records: RecordSet
    scores: pa.Table
    seed: int = 0
    valid: pa.Table = field(init=False)

    def __post_init__(self):
        self.valid = self.records.valid_table()
        if self.scores.num_rows != self.valid.num_rows:
            raise ValueError(f"{self.scores.num_rows} score rows for {self.valid.num_rows} valid records")

    def __len__(self) -> int:
        return self.valid.num_rows

    @cached_property
    def metrics(self) -> list[str]:
        return scalar_metric_columns(self.scores)

    @cached_property
    def values(self) -> dict[str, np.ndarray]:
        return {m: to_numpy(pc.cast(self.scores.column(m), pa.float64()), null=np.nan) for m in self.metrics}

    def reasons(self, metric: str) -> list | None:
        name = metric + REASON_SUFFIX
        return self.scores.column(name).to_pylist() if name in self.scores.column_names else None

    @cached_property
    def embedding_columns(self) -> list[str]:
        """Embedding columns, image embeddings first."""
        t = self.scores
        names = [n for n in t.column_names if pa.types.is_list(t.schema.field(n).type)
                 or pa.types.is_fixed_size_list(t.schema.field(n).type)]
        return sorted(names, key=lambda n: ("image" not in n, n))

    def embedding(self, name: str) -> np.ndarray:
        from selector.learned.features import vector_matrix

        return vector_matrix(self.scores, name)

    @property
    def ids(self) -> pa.ChunkedArray:
        return self.valid.column("id")

    def rows(self, positions: np.ndarray) -> list[dict]:
        """The records (id, instruction, answer, images) at valid-row `positions`, in that order."""
        take = to_arrow(np.asarray(positions, dtype=np.int64))
        return self.valid.select(["id", "instruction", "answer", "images"]).take(take).to_pylist()

    def scores_at(self, position: int) -> dict[str, float | None]:
        out = {}
        for m in self.metrics:
            v = self.values[m][position]
            out[m] = None if np.isnan(v) else float(v)
        return out

    @property
    def images_root(self) -> str | None:
        import os

        root = self.records.images_root
        return os.path.realpath(root) if root is not None else None

    # ---------------------------------------------------------------------------------------------- facets
    @cached_property
    def facets(self) -> dict[str, np.ndarray]:
        """Ways to split the pool: facet name -> a text label per valid record."""
        out = {}
        n_images = to_numpy(pc.list_value_length(self.valid.column("images")), null=0)
        out["images per record"] = np.where(n_images >= 2, "2 or more", n_images.astype(str)).astype(object)
        key, values = self._record_field()
        if key is not None:
            out[f"record field '{key}'"] = values
        clusters = self.clusters
        if clusters is not None:
            out[f"cluster of {self.embedding_columns[0]}"] = np.array([f"cluster {c}" for c in clusters], dtype=object)
        return out

    def _record_field(self) -> tuple[str | None, np.ndarray | None]:
        """The first of FIELD_KEYS that the first valid records carry as a top-level string, read for every valid
        record ('(none)' where absent); (None, None) when no probed record has one."""
        rows = self.records.valid_rows()
        if not len(rows) or self.records.layout.container not in JSON_CONTAINERS:
            return None, None  # Parquet / tar records have no JSON source text (`select --group-by` reads columns)
        probe = [_loads(b) for b in self.records.source_bytes(rows[:FIELD_PROBE])]
        key = next((k for k in FIELD_KEYS if any(isinstance(r.get(k), (str, int)) for r in probe)), None)
        if key is None:
            return None, None
        labels = np.empty(len(rows), dtype=object)
        step = 65536
        for start in range(0, len(rows), step):
            chunk = [_loads(b).get(key) for b in self.records.source_bytes(rows[start:start + step])]
            labels[start:start + len(chunk)] = [str(v)[:80] if isinstance(v, (str, int)) else "(none)" for v in chunk]
        return key, labels

    @cached_property
    def sample(self) -> np.ndarray:
        """Up to SAMPLE valid-row positions, drawn with the pool's seed (sorted)."""
        n = len(self)
        if n <= SAMPLE:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.seed).choice(n, SAMPLE, replace=False))

    @cached_property
    def clusters(self) -> np.ndarray | None:
        """k-means clusters of the first embedding (fitted on the sample, assigned to every record); -1 where a
        record has no embedding. None without embeddings."""
        if not self.embedding_columns:
            return None
        from sklearn.cluster import KMeans

        x = self.embedding(self.embedding_columns[0])
        ok = ~np.isnan(x).any(axis=1) if x.size else np.zeros(len(x), bool)
        fit_rows = self.sample[ok[self.sample]]
        # at most one cluster per distinct vector: k-means cannot split identical points (and warns when asked)
        k = min(CLUSTERS, len(np.unique(x[fit_rows], axis=0)) if len(fit_rows) else 0)
        labels = np.full(len(x), -1)
        if k < 2:  # one distinct vector: one cluster
            labels[ok] = 0 if k else -1
            return labels
        model = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(x[fit_rows])
        labels[ok] = model.predict(x[ok])
        return labels


def _loads(data: bytes) -> dict:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
