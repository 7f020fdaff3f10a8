"""Vectorised parsing of conversation-style JSONL (LLaVA / ShareGPT) blocks with Arrow.

pyarrow's multithreaded C++ JSON reader parses a block into columns, and Arrow compute kernels apply the same
rules as `selector.formats.parse_conversations`, so a clean million-record file is validated without a Python call
per record. Any block the reader cannot type (numeric ids, non-object lines, list-valued images, blank lines,
invalid UTF-8, ...) returns None and is parsed record by record instead; the results are identical either way.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from selector.formats import ASSISTANT_ROLES, SYSTEM_ROLES, USER_ROLES

_TURN = pa.struct([("from", pa.string()), ("role", pa.string()), ("value", pa.string()), ("content", pa.string())])
_PARSE = pj.ParseOptions(
    explicit_schema=pa.schema([("id", pa.string()), ("image", pa.string()), ("images", pa.list_(pa.string())),
                               ("conversations", pa.list_(_TURN))]),
    unexpected_field_behavior="ignore")


def _line_geometry(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Start offsets and lengths (without '\\n' or a trailing '\\r') of the lines in `data`; None if one is empty."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(data) and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.empty(0, np.int64)
    lengths = ends - starts
    if len(lengths) and lengths.min() == 0:
        return None
    cr = buf[np.maximum(ends - 1, 0)] == 13
    return starts.astype(np.int64), (lengths - cr).astype(np.int64)


def _first_per_row(parent: np.ndarray, flat_idx: np.ndarray, n_rows: int) -> np.ndarray:
    """For each row, the first flat index (in order) among `flat_idx` belonging to it, or -1."""
    out = np.full(n_rows, -1, dtype=np.int64)
    rows, first = np.unique(parent[flat_idx], return_index=True)
    out[rows] = flat_idx[first]
    return out


def parse_block(data: bytes, base_offset: int, schema_columns) -> pa.Table | None:
    """Parse a line-aligned block of conversation JSONL into `schema_columns` (records.SCHEMA); None = fall back."""
    geometry = _line_geometry(data)
    if geometry is None:
        return None
    starts, lengths = geometry
    n = len(starts)
    try:
        tab = pj.read_json(pa.BufferReader(data), parse_options=_PARSE,
                           read_options=pj.ReadOptions(block_size=1 << 22))  # small blocks: parsed on all cores
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    if tab.num_rows != n or tab.column("images").null_count != n:
        return None
    line = np.arange(1, n + 1, dtype=np.int64)
    conv = tab.column("conversations").combine_chunks()
    turns = conv.flatten()
    parent = pc.list_parent_indices(conv).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = conv.offsets.to_numpy().astype(np.int64)
    turn_no = np.arange(len(turns), dtype=np.int64) - offsets[parent] + 1 if len(turns) else np.empty(0, np.int64)
    role = pc.coalesce(turns.field("from"), turns.field("role"))
    value = pc.coalesce(turns.field("value"), turns.field("content"))
    is_user = pc.is_in(role, pa.array(sorted(USER_ROLES))).to_numpy(zero_copy_only=False)
    is_asst = pc.is_in(role, pa.array(sorted(ASSISTANT_ROLES))).to_numpy(zero_copy_only=False)
    is_sys = pc.is_in(role, pa.array(sorted(SYSTEM_ROLES))).to_numpy(zero_copy_only=False)
    unknown = ~(is_user | is_asst | is_sys)
    # "" or all whitespace (utf8_is_space is false for ""), without materialising trimmed copies
    empty = pc.fill_null(pc.or_(pc.equal(pc.utf8_length(value), 0), pc.utf8_is_space(value)), True)
    empty = empty.to_numpy(zero_copy_only=False)
    bad = unknown | (is_asst & empty)

    reasons: list[str | None] = [None] * n
    n_turns = np.diff(offsets)
    for r in np.flatnonzero(pc.is_null(conv).to_numpy(zero_copy_only=False) | (n_turns == 0)):
        reasons[r] = "no conversation"
    first_bad = _first_per_row(parent, np.flatnonzero(bad), n)
    roles_py = None
    for r in np.flatnonzero(first_bad >= 0):
        if reasons[r] is None:
            k = first_bad[r]
            if unknown[k]:
                roles_py = roles_py if roles_py is not None else role
                reasons[r] = f"unknown role {roles_py[int(k)].as_py()!r} (turn {turn_no[k]})"
            else:
                reasons[r] = f"empty answer (turn {turn_no[k]})"
    asst_idx = np.flatnonzero(is_asst)
    n_answers = np.bincount(parent[asst_idx], minlength=n)
    for r in np.flatnonzero(n_answers == 0):
        if reasons[r] is None:
            reasons[r] = "no answer"
    ok = np.array([x is None for x in reasons]) if any(x is not None for x in reasons) else np.ones(n, bool)

    ids = tab.column("id").combine_chunks()
    if ids.null_count:
        ids = pc.coalesce(ids, pc.binary_join_element_wise("line-", pc.cast(pa.array(line), pa.string()), ""))
    first_user = _first_per_row(parent, np.flatnonzero(is_user), n)
    instruction = pc.fill_null(pc.take(value, pa.array(np.where(first_user >= 0, first_user, 0)),), "")
    instruction = pc.utf8_trim_whitespace(pc.replace_substring(instruction, "<image>", ""))
    instruction = pc.if_else(pa.array(ok & (first_user >= 0)), instruction, "")
    if n_answers.max(initial=0) <= 1:  # one answer per row: no join needed
        first_answer = _first_per_row(parent, asst_idx, n)
        answer = pc.take(value, pa.array(np.where(first_answer >= 0, first_answer, 0)))
    else:
        answer = pa.ListArray.from_arrays(pa.array(np.concatenate(([0], np.cumsum(n_answers))).astype(np.int32)),
                                          pc.take(value, pa.array(asst_idx)))
        answer = pc.binary_join(answer, "\n\n")
    answer = pc.if_else(pa.array(ok), pc.fill_null(answer, ""), "")
    image = tab.column("image").combine_chunks()
    has_image = pc.and_(pc.is_valid(image), pa.array(ok)).to_numpy(zero_copy_only=False)
    images = pa.ListArray.from_arrays(pa.array(np.concatenate(([0], np.cumsum(has_image))).astype(np.int32)),
                                      pc.filter(image, pa.array(has_image)))
    columns = {
        "line": pa.array(line), "id": ids, "instruction": instruction, "answer": answer, "images": images,
        "offset": pa.array(starts + base_offset), "length": pa.array(lengths),
        "raw": pa.nulls(n, pa.string()), "reason": pa.array(reasons, pa.string()),
    }
    return pa.table([columns[f.name].cast(f.type) for f in schema_columns], schema=schema_columns)
