"""`--engine ray` on a plain JSONL file or Parquet shards: the input is read and parsed once, by Ray tasks, and
each shard's records stay in Ray's object store for the actor that scores it.

- JSONL: one task per shard, a run of `shard_records` lines (a byte range cut at line ends).
- Parquet: one task per row group, which hands out its rows in shards of `shard_records` (a shard never spans two
  row groups).

The driver receives only what the checks over the whole input need (line numbers, ids, reasons, and a content
fingerprint per record), never the records' text: it rejects repeated ids and repeated content as the local
readers do (re-reading the few candidates from the input), so the verdicts are the local engine's. Other inputs
(JSON containers, compressed files, Arrow tables, WebDataset) are read by the driver, which ships the records.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from selector.core.records import RecordSet

SCORED = ["instruction", "answer", "images"]  # what a shard's actor needs of its records (ids come from the driver)


@dataclass
class ShardedInput:
    records: RecordSet  # every record's line, id, reason; `instruction` holds its fingerprint, the text stays out
    parts: list[Any]  # per shard: a Ray object ref to its records' SCORED columns, in file order
    spans: list[tuple[int, int]]  # per shard: its rows [start, end) of `records.table`
    fingerprints: list[str]  # per record: `metrics.runner.fingerprints` (what a shard's key is made of)
    tasks: int  # the Ray tasks that read the input


def _skeleton(table, images_root: str):
    """`table` (SCHEMA columns) with each record's fingerprint (`metrics.runner.fingerprints`, what a shard's key
    is made of) in place of its instruction, and no answer. The fingerprint also stands in for the text in the
    duplicate-content check: equal records have equal fingerprints, and the candidates found are then compared on
    their full content re-read from the input, as locally."""
    from metrics.runner import fingerprints

    fps = fingerprints(table.column("instruction").to_pylist(), table.column("answer").to_pylist(),
                       table.column("images").to_pylist(), images_root)
    table = table.set_column(table.schema.get_field_index("instruction"), "instruction", pa.array(fps, pa.string()))
    return table.set_column(table.schema.get_field_index("answer"), "answer", pa.array([""] * len(fps), pa.string()))


def read_part(path: str, start: int, end: int, schema: str, images_root: str) -> tuple[pa.Table, tuple]:
    """One Ray task: parse a JSONL byte range; returns (the records' SCORED columns, for the object store; what the
    driver needs: the records without their text, the range's line count, and the content keys)."""
    from selector.core.records import parse_jsonl_part

    table, n_lines, content = parse_jsonl_part(Path(path), start, end, schema)
    return table.select(SCORED), (_skeleton(table, images_root), n_lines, content)


def read_row_group(tables, layout, fi: int, ci: int, start: int, first_line: int, images_root: str,
                   shard_records: int) -> tuple:
    """One Ray task: parse a Parquet row group; returns (what the driver needs: the chunk without its text, then
    the SCORED columns of each run of `shard_records` rows, for the object store)."""
    from selector.core.parquet_records import read_chunk

    chunk = read_chunk(tables, layout, fi, ci, start, first_line)
    table = pa.Table.from_batches([chunk.batch])
    chunk.batch = _skeleton(table, images_root).combine_chunks().to_batches()[0]  # the caller skips empty groups
    scored = table.select(SCORED)
    return (chunk, *(scored.slice(s, shard_records) for s in range(0, table.num_rows, shard_records)))


def read_sharded(job, shard_records: int) -> ShardedInput | None:
    """The job's input read by Ray tasks, with the whole-input checks done here; None when the input is neither a
    plain JSONL file nor Parquet (the caller reads it itself). Ray must be initialised."""
    import ray

    from selector.core.compressed import compression_of
    from selector.core.formats import default_images_root, detect_layout, resolve_input
    from selector.core.records import join_jsonl_parts, line_ranges, mark_duplicates
    from selector.core.sources import Source, resolve_source

    source = resolve_source(job.input)
    if source.kind == "parquet":
        return _read_parquet(job, source, shard_records)
    if job.columns or source.kind != "json":
        return None
    path = resolve_input(Path(job.input))
    if compression_of(path) is not None:
        return None
    layout = detect_layout(path, job.fmt)
    if layout.container != "jsonl":
        return None
    root = Path(job.images) if job.images is not None else default_images_root(path, layout)
    stat = path.stat()
    task = ray.remote(read_part).options(num_returns=2)
    refs = [task.remote(str(path.resolve()), s, e, layout.schema, str(root)) for s, e in line_ranges(path,
                                                                                                      shard_records)]
    found = ray.get([meta for _, meta in refs])
    table, keys = join_jsonl_parts(found)
    table = mark_duplicates(table, keys, path, layout.schema)
    spans, start = [], 0
    for skeleton, _, _ in found:
        spans.append((start, start + skeleton.num_rows))
        start += skeleton.num_rows
    records = RecordSet(path=path, layout=layout, images_root=root, table=table,
                        meta={"source_stat": (stat.st_size, stat.st_mtime_ns)},
                        source=Source(str(path), "json", (path,), path.parent), data_path=path)
    return ShardedInput(records, [part for part, _ in refs], spans, table.column("instruction").to_pylist(), len(refs))


def _read_parquet(job, source, shard_records: int) -> ShardedInput:
    import ray

    from selector.core.parquet_records import Tables, chunk_starts, detect_layout, table_records

    tables = Tables(source)
    layout = detect_layout(tables.schema, job.columns or {}, None, str(source.files[0]))
    root = Path(job.images) if job.images is not None else source.root
    task = ray.remote(read_row_group)
    refs, spans, row = [], [], 0
    for fi, ci, start, line in chunk_starts(tables):
        n = tables.chunk_rows[fi][ci]
        if n == 0:
            continue
        shards = -(-n // shard_records)
        refs.append(task.options(num_returns=1 + shards).remote(tables, layout, fi, ci, start, line, str(root),
                                                                shard_records))
        spans += [(row + s, row + min(s + shard_records, n)) for s in range(0, n, shard_records)]
        row += n
    chunks = ray.get([r[0] for r in refs])
    records = table_records(source, tables, layout, chunks, images=job.images, check_image_files=False)
    return ShardedInput(records, [part for r in refs for part in r[1:]], spans,
                        records.table.column("instruction").to_pylist(), len(refs))
