"""Drive metrics over records in batches and collect a score table (one row per record id, a column per metric).

The runner owns everything a metric should not: DataLoader workers that decode images while the model runs,
device choice, inference mode and mixed precision, progress bars, the on-disk score cache, and sharding across
processes started by `accelerate launch`.

Cache layout: `cache_dir/<column>-<config hash>/` holds Parquet parts (id, fp, value, reason, extras), one per
finished batch, each written atomically. Batches are fixed slices of the input order, so a run that was killed and
restarted recomputes exactly the unfinished batches with the same batch composition, giving bit-identical scores.
`fp` fingerprints the record's content, so an edited record with an old id is rescored.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selector.core.metric_api import Batch, Metric, Scored, as_scored
from selector.core.arrow_numpy import strings, to_arrow
from selector.core.dedup import all_distinct
from selector.core.embedded import describe, image_file, image_stamp, is_ref
from selector.core.io import atomic_path, atomic_write

log = logging.getLogger(__name__)

REASON_SUFFIX = "__reason"


@dataclass(frozen=True)
class RunnerConfig:
    """How to run metrics (not what they compute: that is each metric's own config)."""

    batch_size: int = 64
    device: str = "auto"  # "auto": the accelerate process's device, else cuda if available, else cpu
    workers: int | None = None  # image-decoding processes; None = auto, 0 = decode in the main process
    precision: str = "auto"  # "auto": bf16 (or fp16) autocast on CUDA, fp32 on CPU; or "fp32" / "bf16" / "fp16"
    cache_dir: Path | None = None  # None: no reuse across runs (a private temp dir)
    progress: bool = True


# ------------------------------------------------------------------------------------------------ environment
def world() -> tuple[int, int]:
    """(rank, world size) of this process when started by `accelerate launch` / torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _state():
    import torch
    from accelerate import PartialState

    # cpu=True is what makes accelerate join CPU processes (gloo); without it each one thinks it is alone
    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Wait for every process of an `accelerate launch` run (a no-op in a single process)."""
    if world()[1] > 1:
        _state().wait_for_everyone()


def choose_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if world()[1] > 1:
        return str(_state().device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@contextlib.contextmanager
def inference_context(device: str, precision: str):
    """torch.inference_mode plus autocast where it pays: bf16 (fp16 without bf16 support) on CUDA.
    A no-op when no metric has imported torch (e.g. length, an HTTP judge): importing it costs seconds."""
    if "torch" not in sys.modules:
        yield
        return
    import torch

    dev_type = device.split(":")[0]
    dtype = None
    if precision == "auto" and dev_type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=dev_type, dtype=dtype):
                yield


# ------------------------------------------------------------------------------------------------ fingerprints
def fingerprints(instructions: list[str], answers: list[str], images: list[list[str]],
                 images_root: str | None = None) -> list[str]:
    """A short content hash per record: cached scores are reused only for unchanged records. With `images_root`,
    each image file's size and mtime are part of it: an image changed under the same path is rescored."""
    out = []
    for ins, ans, ims in zip(instructions, answers, images):
        h = hashlib.blake2b(digest_size=8)
        parts = [ins or "", ans or "", "\x1f".join(ims or [])]
        if images_root is not None and ims:
            parts.append("\x1f".join(image_stamp(images_root, name) for name in ims))
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        out.append(h.hexdigest())
    return out


# ------------------------------------------------------------------------------------------------ cache
def _metric_dir(root: Path, metric: Metric) -> Path:
    return root / f"{metric.column}-{metric.config_hash()}"


def _write_atomic_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq  # only model metrics touch the cache: a columnar-only run skips this import

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _value_array(values: np.ndarray, kind: str, missing: np.ndarray) -> pa.Array:
    mask = np.asarray(missing, dtype=bool)
    if kind == "vector":
        values = np.asarray(values, dtype=np.float32)
        dim = values.shape[1] if values.ndim == 2 else 0
        return pa.FixedSizeListArray.from_arrays(to_arrow(np.nan_to_num(values).ravel()), dim, mask=to_arrow(mask))
    return to_arrow(np.asarray(values, dtype=np.float64), mask=mask)


def _part_table(ids: list[str], fps: list[str], scored: Scored, kind: str) -> pa.Table:
    missing = np.array([r is not None for r in scored.reasons], dtype=bool)
    cols = {"id": strings(ids), "fp": strings(fps),
            "value": _value_array(scored.values, kind, missing),
            "reason": strings(scored.reasons)}
    for key, col in scored.extra.items():
        cols[f"x_{key}"] = pa.array(list(col))
    return pa.table(cols)


def _read_cache(mdir: Path) -> pa.Table | None:
    import pyarrow.parquet as pq

    parts = sorted(mdir.glob("*.parquet"))
    if not parts:
        return None
    tables = []
    for p in parts:
        try:
            tables.append(pq.read_table(p))
        except Exception as exc:  # noqa: BLE001 - a damaged part is recomputed, not trusted
            log.warning("ignoring unreadable score-cache part %s: %s", p, exc)
    return pa.concat_tables(tables, promote_options="default") if tables else None


def _cached_rows(table: pa.Table | None, ids: list[str], fps: list[str]) -> np.ndarray:
    """For each record, the row of `table` holding its score (-1 when absent or stale); later parts win."""
    pos = np.full(len(ids), -1, dtype=np.int64)
    if table is None:
        return pos
    where = {}
    for i, (rid, fp) in enumerate(zip(table.column("id").to_pylist(), table.column("fp").to_pylist())):
        where[(rid, fp)] = i
    for j, key in enumerate(zip(ids, fps)):
        pos[j] = where.get(key, -1)
    return pos


def _compact(mdir: Path) -> None:
    """Merge a finished metric's parts into one file (fewer files for the next run)."""
    parts = sorted(mdir.glob("*.parquet"))
    if len(parts) <= 1:
        return
    table = _read_cache(mdir)
    if table is None:
        return
    _write_atomic_parquet(table, mdir / "merged.parquet")
    for p in parts:
        if p.name != "merged.parquet":
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ image loading
class _ImageRows:
    """Map-style dataset: row index -> (row, preprocessed first image or None, error or None)."""

    def __init__(self, image_lists: list[list[str]], root: str, preprocess: Callable[[str], Any]):
        self.image_lists, self.root, self.preprocess = image_lists, root, preprocess

    def __len__(self) -> int:
        return len(self.image_lists)

    def __getitem__(self, i: int):
        imgs = self.image_lists[i]
        if not imgs:
            return i, None, "record has no image"
        try:
            return i, self.preprocess(image_file(self.root, imgs[0])), None
        except Exception as exc:  # noqa: BLE001 - recorded as this record's missing reason
            return i, None, f"cannot read image {describe(imgs[0]) if is_ref(imgs[0]) else imgs[0]}: {exc}"


def collate_images(items):
    """(rows, images stacked where they can be, errors) from (row, preprocessed image, error) items."""
    import torch

    rows = [i for i, _, _ in items]
    errors = [e for _, _, e in items]
    ok = [x for _, x, e in items if e is None]
    if ok and all(isinstance(x, torch.Tensor) for x in ok) and len({tuple(x.shape) for x in ok}) == 1:
        filler = torch.zeros_like(ok[0])
        images = torch.stack([x if e is None else filler for _, x, e in items])
    else:
        images = [x for _, x, _ in items]
    return rows, images, errors


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


# ------------------------------------------------------------------------------------------------ the runner
@dataclass
class _Job:
    metric: Metric
    mdir: Path
    todo: set[int] = field(default_factory=set)  # batch numbers this process still has to score


def _table_of(dataset) -> pa.Table:
    if isinstance(dataset, pa.Table):
        return dataset
    if hasattr(dataset, "flatten_indices"):  # datasets.Dataset (possibly a filtered view)
        return dataset.flatten_indices().data.table if getattr(dataset, "_indices", None) else dataset.data.table
    raise TypeError(f"cannot score a {type(dataset).__name__}; pass a datasets.Dataset or a pyarrow.Table")


def score_records(dataset, metrics: list[Metric], config: RunnerConfig = RunnerConfig(),
                  images_root: str | None = None) -> pa.Table:
    """Score every row of `dataset` (columns id, instruction, answer, images) with each metric.

    Returns a table with `id`, one column per metric (float64, or fixed-size float32 lists for embeddings; null
    where a record could not be scored), and `<column>__reason` for metrics that left records unscored. Under
    `accelerate launch` every process scores its share of the batches and all return the merged table.
    """
    table = _table_of(dataset)
    n = table.num_rows
    id_column = pc.cast(table.column("id"), pa.string())
    if not all_distinct(id_column):
        raise ValueError("record ids must be unique for scoring (the record reader rejects duplicates)")
    columns = [m.column for m in metrics]
    if len(set(columns)) != len(columns):
        raise ValueError(f"two metrics write the same column: {columns}")
    batched = [m for m in metrics if not m.columnar]
    if batched:
        result = _score_batched(table, id_column.to_pylist(), batched, config, images_root)
    else:
        result = pa.table({"id": id_column})
    meta = score_metadata(result)
    for metric in metrics:
        if not metric.columnar:
            continue
        scored = as_scored(metric.score_column(table), n, metric.name)
        none = scored.reasons.count(None) == n  # C-level count: no object array for a million Nones
        missing = np.zeros(n, bool) if none else np.not_equal(np.array(scored.reasons, dtype=object), None)
        result = result.append_column(metric.column, _value_array(scored.values, metric.kind, missing))
        if missing.any():
            result = result.append_column(metric.column + REASON_SUFFIX, strings(scored.reasons))
        meta[metric.column] = {"metric": metric.name, "config": metric.config(), "hash": metric.config_hash(),
                               "kind": metric.kind, "missing": int(missing.sum()), "stats": metric.stats()}
    return result.replace_schema_metadata({b"mmselect.metrics": json.dumps(meta, default=str).encode()})


def _score_batched(table: pa.Table, ids: list[str], metrics: list[Metric], config: RunnerConfig,
                   images_root: str | None) -> pa.Table:
    """Batched, cached, resumable scoring of the metrics that need models or per-record work."""
    n = table.num_rows
    instructions = table.column("instruction").to_pylist()
    answers = table.column("answer").to_pylist()
    images = table.column("images").to_pylist() if "images" in table.column_names else [[] for _ in ids]
    fps = fingerprints(instructions, answers, images, images_root if images_root is not None else "")

    rank, size = world()
    tmp = None
    if config.cache_dir is None:
        if size > 1:
            raise ValueError("a multi-process scoring run needs a shared cache_dir")
        tmp = tempfile.TemporaryDirectory(prefix="mmselect-scores-")
        root = Path(tmp.name)
    else:
        root = Path(config.cache_dir)
    try:
        spans = _batches(n, config.batch_size)
        jobs = []
        for metric in metrics:
            mdir = _metric_dir(root, metric)
            mdir.mkdir(parents=True, exist_ok=True)
            meta = mdir / "metric.json"
            if rank == 0 and not meta.exists():
                atomic_write(meta, [json.dumps({"metric": metric.name, "config": metric.config()}, default=str,
                                               indent=1).encode()])
            pos = _cached_rows(_read_cache(mdir), ids, fps)
            todo = {k for k, (s, e) in enumerate(spans) if (pos[s:e] < 0).any() and k % size == rank}
            jobs.append(_Job(metric, mdir, todo))
        _run_jobs(jobs, spans, ids, fps, instructions, answers, images, images_root, config, rank)
        if size > 1:
            _state().wait_for_everyone()
        if rank == 0:
            for job in jobs:
                _compact(job.mdir)
        if size > 1:
            _state().wait_for_everyone()
        return _assemble(jobs, ids, fps)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run_jobs(jobs: list[_Job], spans, ids, fps, instructions, answers, images, images_root, config, rank) -> None:
    from selector.core.progress import progress_bar

    pending = [j for j in jobs if j.todo]
    if not pending:
        return
    device = choose_device(config.device) if any(j.metric.uses_torch for j in pending) else "cpu"
    groups: dict[str | None, list[_Job]] = {}
    for job in pending:
        groups.setdefault(job.metric.preprocess_key(), []).append(job)
    show = config.progress
    for key, group in groups.items():
        for job in group:
            job.metric.setup(device)
        todo = sorted(set().union(*(j.todo for j in group)))
        names = ",".join(j.metric.column for j in group)
        bar = progress_bar(total=sum(spans[k][1] - spans[k][0] for k in todo), desc=f"score {names}", unit="rec",
                   disable=not show, position=rank)
        for k, batch in _iter_batches(key, group, todo, spans, ids, instructions, answers, images, images_root,
                                      config):
            s, e = spans[k]
            with inference_context(device, config.precision):
                for job in group:
                    if k not in job.todo:
                        continue
                    scored = as_scored(job.metric.score(batch), len(batch), job.metric.name)
                    part = _part_table(ids[s:e], fps[s:e], scored, job.metric.kind)
                    _write_atomic_parquet(part, job.mdir / f"part-{k:07d}.parquet")
            bar.update(e - s)
        bar.close()


def _iter_batches(key, group: list[_Job], todo: list[int], spans, ids, instructions, answers, images, images_root,
                  config: RunnerConfig):
    """Yield (batch number, Batch) for the batches in `todo`; images decoded by DataLoader workers."""
    if key is None:
        for k in todo:
            s, e = spans[k]
            yield k, Batch(ids[s:e], instructions[s:e], answers[s:e])
        return
    import torch
    from torch.utils.data import DataLoader

    preprocess = group[0].metric.preprocessor()
    workers = default_workers() if config.workers is None else config.workers
    loader = DataLoader(_ImageRows(images, images_root or "", preprocess),
                        batch_sampler=[list(range(*spans[k])) for k in todo], num_workers=workers,
                        collate_fn=collate_images,
                        pin_memory=torch.cuda.is_available() and "cuda" in str(config.device),
                        prefetch_factor=2 if workers else None)
    for k, (rows, imgs, errors) in zip(todo, loader):
        s, e = spans[k]
        assert rows[0] == s and len(rows) == e - s
        yield k, Batch(ids[s:e], instructions[s:e], answers[s:e], images=imgs, image_errors=errors)


def _assemble(jobs: list[_Job], ids: list[str], fps: list[str]) -> pa.Table:
    cols: dict[str, pa.Array] = {"id": strings(ids)}
    meta: dict[str, Any] = {}
    for job in jobs:
        cache = _read_cache(job.mdir)
        col = job.metric.column
        if not ids:  # nothing to score (every record rejected): empty columns, not an error
            cols[col] = pa.array([], pa.list_(pa.float32()) if job.metric.kind == "vector" else pa.float64())
            meta[col] = {"metric": job.metric.name, "config": job.metric.config(), "hash": job.metric.config_hash(),
                         "kind": job.metric.kind, "missing": 0, "stats": job.metric.stats()}
            continue
        pos = _cached_rows(cache, ids, fps)
        if (pos < 0).any():
            raise RuntimeError(f"{(pos < 0).sum()} records have no {job.metric.column} score after the run "
                               f"(cache {job.mdir}); rerun to finish")
        rows = cache.take(to_arrow(np.asarray(pos, dtype=np.int64)))
        col = job.metric.column
        cols[col] = rows.column("value").combine_chunks()
        if rows.column("reason").null_count < len(ids):
            cols[col + REASON_SUFFIX] = rows.column("reason").combine_chunks()
        for name in rows.column_names:
            if name.startswith("x_"):
                cols[f"{col}__{name[2:]}"] = rows.column(name).combine_chunks()
        missing = len(ids) - rows.column("reason").null_count
        meta[col] = {"metric": job.metric.name, "config": job.metric.config(), "hash": job.metric.config_hash(),
                     "kind": job.metric.kind, "missing": int(missing), "stats": job.metric.stats()}
        if missing:
            reasons = [r for r in rows.column("reason").to_pylist() if r is not None]
            top = sorted({r: reasons.count(r) for r in set(reasons)}.items(), key=lambda kv: -kv[1])[:3]
            log.warning("%s: %d of %d records have no score (%s)", col, missing, len(ids),
                        "; ".join(f"{c}x {r}" for r, c in top))
    out = pa.table(cols)
    return out.replace_schema_metadata({b"mmselect.metrics": json.dumps(meta, default=str).encode()})


def score_metadata(table: pa.Table) -> dict[str, Any]:
    """The per-metric configuration, missing counts and stats stored by `score_records`."""
    raw = (table.schema.metadata or {}).get(b"mmselect.metrics")
    return json.loads(raw) if raw else {}
