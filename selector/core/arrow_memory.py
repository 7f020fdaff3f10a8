"""Arrow's allocator for record reading.

pyarrow's Linux wheels default to mimalloc. Reading a 1M-record JSONL (about 0.5 GB of freshly allocated string
columns, many short-lived temporaries per batch) took about 30% more CPU with it than with jemalloc or the system
allocator on our machine (BENCHMARKS.md, I/O section), so the reader switches the process default to jemalloc,
or to the system allocator where jemalloc is not built in. A user's own choice through the
ARROW_DEFAULT_MEMORY_POOL environment variable is left alone.
"""
from __future__ import annotations

import os

import pyarrow as pa


def prefer_fast_allocator() -> str:
    """Make jemalloc (else the system allocator) Arrow's default unless the user chose one; returns the backend."""
    pool = pa.default_memory_pool()
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or pool.backend_name != "mimalloc":
        return pool.backend_name
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    return pool.backend_name
