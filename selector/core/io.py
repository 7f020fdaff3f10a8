"""File output helpers shared by every layer: atomic writes that follow the umask, and the guard that keeps an
output from replacing an input."""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from selector.core.errors import MmselectError


class OutputError(MmselectError):
    """An output path is unusable (a folder, under a file) or would replace an input."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _special(out: Path) -> str | None:
    """What `out` is when it exists and is neither a regular file nor a folder (a device such as /dev/null, a FIFO,
    a socket): a rename into place would replace it with a file."""
    import stat

    try:
        mode = os.stat(out).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a pipe" if stat.S_ISFIFO(mode) else \
        "not a regular file"


def _refuse_special(out: Path, flag: str | None = None) -> None:
    what = _special(out)
    if what:
        raise OutputError(f"{flag + ' ' if flag else ''}{out} is {what}, not a file: outputs are written beside it "
                          "and renamed into place, which would replace it; give a file path")


def atomic_write(out: Path, chunks: Iterable[bytes], mode: int = 0o666) -> None:
    """Write to a temp file beside `out`, then rename: an interrupted run never leaves half a file in its place.
    The file gets `mode` less the umask, like a file made by `open` (mkstemp alone would make it 0600). An `out`
    that is a device or pipe is refused, never replaced."""
    out = Path(out)
    _refuse_special(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode & ~_umask())
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
    _refuse_special(out)
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


@contextmanager
def atomic_dir(out: Path | str) -> Iterator[Path]:
    """For a folder of outputs (`prune --subset-dir`): yield an empty temp folder beside `out` (with the umask's
    permissions) and rename it to `out`, which must be missing or empty, when the block succeeds; on any error the
    temp folder is removed and `out` is left as it was."""
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


SCORES_INPUT_KEY = b"mmselect.input"  # score-table metadata: the fingerprint of the input it was computed from


def input_fingerprint(paths: Path | Iterable[Path]) -> dict:
    """What a score table stores about its input (checked by `select --scores`): the file's sha256 and size; for
    an input of several files (shards), the sha256 of their names and sha256s, and their total size."""
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if len(files) == 1:
        return {"sha256": sha256_file(files[0]), "size": files[0].stat().st_size}
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return {"sha256": h.hexdigest(), "size": sum(f.stat().st_size for f in files), "files": len(files)}


def file_key(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names (symlinks followed), or None when it does not exist: two names with
    one key are one file, however they are spelled (`./`, `..`) or linked (symlinks, hard links, bind mounts). The
    one same-file test: `check_outputs` and `records.check_record_outputs` both use it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_outputs(inputs: Iterable[Path | None], outputs: Iterable[Path], flag: str = "--out") -> None:
    """Refuse, with one line, an output that is a folder, a device or pipe (/dev/null), lies under a file, or is
    (after resolving `./`, `..`, symlinks and hard links) one of the inputs: an input is never overwritten.
    Each input is stat'ed once, so a long list (every image of a folder dataset) costs one pass."""
    inputs = [Path(p) for p in inputs if p is not None]
    outputs = [Path(o) for o in outputs if o is not None]
    keys: dict[tuple[int, int], Path] = {}
    for out in outputs:
        if out.is_dir():
            raise OutputError(f"{flag} {out} is a folder; give a file path")
        _refuse_special(out, flag)
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"{flag} {out} lies under {parent}, which is a file, not a folder")
        key = file_key(out)
        if key is not None:
            keys.setdefault(key, out)
    if not keys:
        return  # no output exists yet, so none of them is an (existing) input
    for src in inputs:
        out = keys.get(file_key(src))
        if out is not None:
            raise OutputError(f"{flag} {out} would overwrite the input {src}; choose another output path")


def check_output_dir(inputs: Iterable[Path | str | None], out: Path, flag: str = "--out",
                     risk: str = "the outputs written there could replace it") -> None:
    """Refuse an output folder that holds one of the inputs (resolved, symlinks followed): a command that fills a
    folder with files of its own naming (and caches), or clears it, must not touch the files it reads."""
    real = os.path.realpath(out)
    for src in inputs:
        if src is None:
            continue
        where = os.path.realpath(src)
        if where == real or where.startswith(real.rstrip(os.sep) + os.sep):
            raise OutputError(f"{flag} {out} holds the input {src}; {risk}: choose a new folder")
