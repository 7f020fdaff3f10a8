"""File output helpers shared by every layer."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def atomic_write(out: Path, chunks: Iterable[bytes]) -> None:
    """Write to a temp file beside `out`, then rename: an interrupted run never leaves half a file in its place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_path(out: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """For writers that want a path, not bytes (pyarrow's `write_table`, matplotlib's `savefig`, safetensors'
    `save_file`): yield a temp path beside `out` (same suffix, so format detection by extension still works) and
    rename it to `out` when the block succeeds; on any error the temp file is removed and `out` is left as it was.

        with atomic_path(out) as tmp:
            pq.write_table(table, tmp)
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix if suffix is None else suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
