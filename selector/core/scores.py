"""Score tables (Parquet, one row per record id, a column per metric) lined up with records."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from selector.core.arrow_numpy import to_arrow
from selector.core.errors import FormatError
from selector.core.io import SCORES_INPUT_KEY


def align_scores(scores: pa.Table, ids: list[str]) -> pa.Table:
    """Rows of `scores` in the order of `ids`; ids absent from the table get nulls (scored later or ranked last)."""
    index = {rid: i for i, rid in enumerate(scores.column("id").to_pylist())}
    pos = np.array([index.get(rid, -1) for rid in ids], dtype=np.int64)
    return scores.take(to_arrow(pos, mask=pos < 0))


# ------------------------------------------------------------------------------------------------ sharded output
MANIFEST = "manifest.json"
METRICS_KEY = b"mmselect.metrics"
REJECTED_KEY = b"mmselect.rejected"  # a shard file's records rejected before scoring: [[row, reason], ...]
STATS_KEY = b"mmselect.stats"  # a shard file's per-metric counters (summed over shards)


def is_score_dir(path: Path | str) -> bool:
    """A folder written by a sharded scoring run (it holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: Path | str) -> dict:
    import json

    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a score manifest from `mmselect score --engine ray` ({exc})") from None
    if manifest.get("format") != "mmselect-scores" or not isinstance(manifest.get("shards"), list):
        raise FormatError(f"{path}: not a score manifest from `mmselect score --engine ray`")
    return manifest


def merge_shards(folder: Path | str, manifest: dict) -> pa.Table:
    """One score table from a manifest's shard files, in shard order (the input's order): the same table, columns
    and metadata `mmselect score` writes in one file. A `__reason` column no shard needed is dropped."""
    import json

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = Path(folder)
    metrics: dict = manifest["metrics"]
    tables, stats = [], {col: {} for col in metrics}
    for entry in manifest["shards"]:
        table = pq.read_table(folder / entry["file"])
        for col, counters in json.loads((table.schema.metadata or {}).get(STATS_KEY, b"{}")).items():
            for key, value in counters.items():
                if isinstance(value, (int, float)) and col in stats:
                    stats[col][key] = stats[col].get(key, 0) + value
        if table.num_rows:  # an all-rejected shard has no rows (and no vector width to agree on)
            tables.append(table.replace_schema_metadata(None))
    if tables:
        merged = pa.concat_tables(tables, promote_options="default")
    else:
        merged = pa.table({"id": pa.array([], pa.string())})
    for name in list(merged.column_names):
        if name.endswith("__reason") and merged.column(name).null_count == merged.num_rows:
            merged = merged.drop_columns([name])
    meta = {}
    for col, info in metrics.items():
        reason = col + "__reason"
        missing = merged.num_rows - merged.column(reason).null_count if reason in merged.column_names else 0
        if col in merged.column_names and missing == 0:
            missing = int(pc.sum(pc.is_null(merged.column(col))).as_py() or 0) if merged.num_rows else 0
        meta[col] = {**info, "missing": int(missing), "stats": stats.get(col, {})}
    out_meta = {METRICS_KEY: json.dumps(meta, default=str).encode()}
    if manifest.get("input") is not None:
        out_meta[SCORES_INPUT_KEY] = json.dumps(manifest["input"]).encode()
    return merged.replace_schema_metadata(out_meta)


def read_score_dir(folder: Path | str) -> pa.Table:
    """The merged table of a finished sharded scoring run (`mmselect select --scores DIR`)."""
    manifest = read_manifest(folder)
    if not manifest.get("complete"):
        raise FormatError(f"{folder}: the scoring run has not finished ({len(manifest['shards'])} of "
                          f"{manifest.get('total_shards', '?')} shards); rerun `mmselect score` to resume it")
    return merge_shards(folder, manifest)
