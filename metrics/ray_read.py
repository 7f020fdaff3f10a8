"""`--engine ray` on a plain JSONL file: each input shard (a run of `shard_records` lines, a byte range cut at line
ends) is read and parsed once, by one Ray task, and stays in Ray's object store for the actor that scores it.

The driver receives only what the checks over the whole input need (line numbers, ids, byte ranges, reasons, and a
content fingerprint per record), never the records' text: it rejects repeated ids and repeated content as
`selector.core.records.read_records` does, so the verdicts are the local engine's. Other inputs (JSON containers,
compressed files, Parquet, WebDataset) are read by the driver as before.
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


def read_part(path: str, start: int, end: int, schema: str, images_root: str) -> tuple[pa.Table, tuple]:
    """One Ray task: parse the byte range; returns (the records' SCORED columns, for the object store; what the
    driver needs: the records without their text, the range's line count, and the content keys)."""
    from metrics.runner import fingerprints
    from selector.core.records import parse_jsonl_part

    table, n_lines, content = parse_jsonl_part(Path(path), start, end, schema)
    fps = fingerprints(table.column("instruction").to_pylist(), table.column("answer").to_pylist(),
                       table.column("images").to_pylist(), images_root)
    # The fingerprint stands in for the text in the duplicate-content check: equal records have equal
    # fingerprints, and the candidates it finds are then compared on their full source text, as locally.
    n = table.num_rows
    skeleton = (table.set_column(table.schema.get_field_index("instruction"), "instruction", pa.array(fps, pa.string()))
                .set_column(table.schema.get_field_index("answer"), "answer", pa.array([""] * n, pa.string()))
                .set_column(table.schema.get_field_index("images"), "images",
                            pa.array([[]] * n, pa.list_(pa.string()))))
    return table.select(SCORED), (skeleton, n_lines, content)


def read_sharded(job, shard_records: int) -> ShardedInput | None:
    """The job's input read by one Ray task per shard, with the whole-input checks done here; None when the input
    is not a plain JSONL file (the caller reads it itself). Ray must be initialised."""
    import ray

    from selector.core.compressed import compression_of
    from selector.core.formats import default_images_root, detect_layout, resolve_input
    from selector.core.records import join_jsonl_parts, line_ranges, mark_duplicates
    from selector.core.sources import Source, resolve_source

    if job.columns or resolve_source(job.input).kind != "json":
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
    return ShardedInput(records, [part for part, _ in refs], spans, table.column("instruction").to_pylist())
