"""Drive metrics over records in batches and collect a score table (one row per record id, a column per metric)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from metrics.base import Batch, Metric


@dataclass(frozen=True)
class RunnerConfig:
    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True


def _column(values: list[np.ndarray], kind: str) -> pa.Array:
    data = np.concatenate(values) if values else np.empty(0)
    if kind == "vector":
        dim = data.shape[1] if data.ndim == 2 else 0
        return pa.FixedSizeListArray.from_arrays(pa.array(data.astype(np.float32).ravel()), dim)
    return pa.array(data.astype(np.float64))


def score_records(dataset, metrics: list[Metric], config: RunnerConfig = RunnerConfig(),
                  images_root: str | None = None) -> pa.Table:
    """Score every row of `dataset` (columns id, instruction, answer, images) with each metric.

    Image names resolve under `images_root` (already validated by the record reader).
    """
    table = dataset.data.table if hasattr(dataset, "data") else dataset
    n = table.num_rows
    ids = table.column("id")
    out = {"id": ids}
    for metric in metrics:
        metric.setup(config.device)
        parts = []
        bar = tqdm(total=n, desc=f"score {metric.name}", unit="rec",
                   disable=not config.progress or not sys.stderr.isatty())
        for start in range(0, n, config.batch_size):
            chunk = table.slice(start, config.batch_size)
            batch = Batch(ids=chunk.column("id").to_pylist(),
                          instructions=chunk.column("instruction").to_pylist(),
                          answers=chunk.column("answer").to_pylist())
            if "image" in metric.needs:
                batch.images = [metric.preprocess(os.path.join(images_root or '', imgs[0])) if imgs else None
                                for imgs in chunk.column("images").to_pylist()]
            parts.append(np.asarray(metric.score(batch)))
            bar.update(len(batch))
        bar.close()
        out[metric.name] = _column(parts, metric.kind)
    return pa.table(out)
