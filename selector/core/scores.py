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


def _score_type_ok(t: pa.DataType) -> bool:
    """A metric column holds numbers (a score) or lists of numbers (an embedding); nulls are missing scores."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t) \
        or pa.types.is_null(t)


def _json_object(raw: bytes | None, where: str, values_are_objects: bool = False) -> None:
    import json

    if raw is None:
        return
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise FormatError(f"{where}: its metadata is damaged ({exc}); score the input again with `mmselect score`") \
            from None
    if not isinstance(value, dict) or (values_are_objects and not all(isinstance(v, dict) for v in value.values())):
        raise FormatError(f"{where}: its metadata is not what `mmselect score` writes; score the input again")


def check_score_table(table: pa.Table, where: str) -> pa.Table:
    """A score table made ready for lookups, or a FormatError (one line) when it cannot be one: ids as text (an
    integer id is its JSON text, as a record's is), one row per id, metric columns of numbers or lists of numbers
    (scores as float64), and readable mmselect metadata. A hand-edited table must not select silently wrong."""
    import pyarrow.compute as pc

    if "id" not in table.column_names:
        raise FormatError(f"{where} has no id column: not a score table from `mmselect score`")
    meta = table.schema.metadata or {}
    _json_object(meta.get(METRICS_KEY), where, values_are_objects=True)
    _json_object(meta.get(SCORES_INPUT_KEY), where)
    columns = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if pa.types.is_dictionary(col.type):
            col = col.cast(t)
        if name == "id":
            if pa.types.is_integer(t) or pa.types.is_large_string(t):
                col = pc.cast(col, pa.string())
            elif not pa.types.is_string(t):
                raise FormatError(f"{where}: column id is {t}, not record ids (text or integers)")
            counts = pc.value_counts(col.drop_null())
            repeated = counts.filter(pc.greater(counts.field("counts"), 1))
            if len(repeated):
                raise FormatError(f"{where}: {len(repeated)} ids have more than one row (e.g. "
                                  f"{repeated[0].as_py()['values']!r}); a score table has one row per record")
        elif name.endswith("__reason"):
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
                col = pc.cast(col, pa.string()) if _score_type_ok(t) else pa.nulls(len(col), pa.string())
        elif not _score_type_ok(t):
            raise FormatError(f"{where}: column {name!r} is {t}, not scores (numbers) or embeddings (lists of "
                              "numbers)")
        elif not pa.types.is_nested(t):
            if not pa.types.is_floating(t):
                col = pc.cast(col, pa.float64(), safe=False)  # integers beyond 2**53, decimals, bools: as scores
            col = _finite_or_null(col)
        else:
            col = _finite_vectors_or_null(col)
        columns[name] = col
    for name in [n for n in columns if not n.endswith("__reason") and n != "id"]:
        nulls = pc.is_null(columns[name])
        if pc.any(pc.and_(nulls, pc.is_valid(table.column(name)))).as_py():  # a value dropped just above
            why = f"not a finite number in {where}"
            reason = pc.cast(columns.get(name + "__reason", pa.nulls(len(nulls), pa.string())), pa.string())
            columns[name + "__reason"] = pc.if_else(pc.and_(nulls, pc.is_null(reason)), why, reason)
    return pa.table(columns, metadata=table.schema.metadata)


def _finite_or_null(col):
    """A score of inf or NaN is no measurement: missing (its record follows --missing), never ranked as best."""
    import pyarrow.compute as pc

    if pa.types.is_float16(col.type):
        col = pc.cast(col, pa.float32())
    return pc.if_else(pc.is_finite(col), col, pa.scalar(None, col.type))


def _finite_vectors_or_null(col):
    """An embedding holding inf or NaN anywhere is no point in the space: missing (the whole vector)."""
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(col)
    if not pa.types.is_floating(flat.type) or pc.all(pc.is_finite(flat)).as_py() in (True, None):
        return col
    bad = pc.invert(pc.is_finite(flat))
    rows = pc.list_parent_indices(col).filter(bad)
    mask = np.zeros(len(col), bool)
    mask[np.unique(rows.to_numpy())] = True
    return pc.if_else(to_arrow(mask), pa.nulls(len(col), col.type), col)


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
