"""Image-path validation: path sanity and containment in the images root, then a full decode in a worker process.

Paths are checked here, in the calling process: a NUL byte, an empty or over-long name or one that is not valid
UTF-8 is rejected; the path must resolve inside the images root (symlinks followed like `Path.resolve`, each folder
resolved once, then one `stat` per image) and name a *regular* file (a FIFO, a device, a socket or a folder named
`x.png` is rejected without being opened, so it cannot block the run) of at most `MAX_IMAGE_BYTES`.

Decoding runs in worker processes that report after every image. An image that takes longer than `timeout` seconds
(a decoder stuck on a hostile file) or that crashes its worker costs that one record: the worker is killed and a
fresh one carries on with the rest. Decoding is pixel-capped: past `MAX_PIXELS` an image is a rejection
("decompression bomb"), never an exception or a multi-GiB allocation.

Images embedded in the input (Parquet / Arrow cells, tar members; see `selector.core.embedded`) skip the path
checks and get the same decode in the same workers, their bytes read there, one row group at a time.
"""
from __future__ import annotations

import os
import re
import stat
import time
from collections import deque
from pathlib import Path

from selector.core.embedded import describe, is_ref, read_ref
from selector.core.formats import shortened, shown

MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (about 1 GiB of RGBA); above it: a rejection
MAX_IMAGE_BYTES = 512 << 20
MAX_PATH_BYTES = 4096
DECODE_TIMEOUT = 60.0  # seconds one image may take to decode
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # http://, s3://, file://: a name that is not a path here


def contained_path(root: str, name: str, folders: dict[str, str] | None = None) -> str | None:
    """The real path of `name` under the real folder `root`, or None when it leaves the root (`../`, an absolute
    path elsewhere, or a symlink out). `folders` caches resolved folders across calls."""
    folders = {} if folders is None else folders
    joined = os.path.join(root, name)  # an absolute `name` replaces root, as intended
    folder, base = os.path.split(joined)
    if base in ("", ".", ".."):
        target = os.path.realpath(joined)
    else:
        real_folder = folders.get(folder)
        if real_folder is None:
            real_folder = folders[folder] = os.path.realpath(folder)
        target = os.path.join(real_folder, base)
        if os.path.islink(target):
            target = os.path.realpath(target)
    return target if target == root or target.startswith(root.rstrip(os.sep) + os.sep) else None


def path_problem(root: str, name: str, folders: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(real path, None) for an image name that is safe to decode, else (None, the reason). Never opens the file."""
    if not isinstance(name, str) or not name:
        return None, "empty image path"
    quoted = shown(name)
    if "\x00" in name:
        return None, f"image path {quoted} contains a NUL byte"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"image path {quoted} is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return None, f"image path is longer than {MAX_PATH_BYTES} bytes"
    if _URL.match(name):
        return None, f"image path {quoted} is a URL; only local files are read (download the images, pass --images)"
    try:
        target = contained_path(root, name, folders)
    except (OSError, ValueError) as exc:
        return None, f"invalid image path {quoted} ({_why(exc)})"
    if target is None:
        return None, f"image path {quoted} leaves the images root"
    rel = shortened(os.path.relpath(target, root))
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return None, f"image file missing: {rel}"
    except PermissionError:
        return None, f"image file unreadable (permission denied): {rel}"
    except (OSError, ValueError) as exc:
        return None, f"invalid image path {quoted} ({_why(exc)})"
    if stat.S_ISDIR(st.st_mode):
        return None, f"image path is not a file: {rel}"
    if not stat.S_ISREG(st.st_mode):
        return None, f"image path is not a regular file (a FIFO, device or socket): {rel}"
    if st.st_size == 0:
        return None, f"image file empty (0 bytes): {rel}"
    if st.st_size > MAX_IMAGE_BYTES:
        return None, f"image file larger than {MAX_IMAGE_BYTES >> 20} MiB: {rel}"
    return target, None


def _why(exc: BaseException) -> str:
    """What went wrong, in words ('File name too long'), not only the exception's class."""
    words = getattr(exc, "strerror", None) or str(exc)
    return f"{exc.__class__.__name__}: {words}" if words else exc.__class__.__name__


def _pillow_problem(f) -> str | None:
    """Why the open binary file `f` is not a usable image, or None: every pixel is decoded (so truncation is
    caught) under the pixel cap."""
    return pillow_decode(f, keep=False)[1]


def pillow_decode(f, keep: bool = True):
    """(the fully decoded image converted to RGB, or None; why it is not usable, or None) for the open binary file
    `f`. With `keep`, the validating decode is the one a metric's preprocessing then uses: no second decode."""
    import warnings

    from PIL import Image, UnidentifiedImageError  # here, not at import: text-only runs never need Pillow

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                im.load()
                return (im.convert("RGB") if keep else None), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, f"image has more than {MAX_PIXELS} pixels (a decompression bomb?)"
    except MemoryError:
        return None, "image too large to decode"
    except UnidentifiedImageError:
        return None, "not an image"
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's problem, not the run's
        return None, f"image truncated or corrupt ({exc.__class__.__name__}: {str(exc)[:120]})"


def image_problem(path: str) -> str | None:
    """Why the regular file at `path` is not a usable image, or None. Opened non-blocking and re-checked as a
    regular file after opening (it may have been swapped for a FIFO or a device since the path check)."""
    return decode_image(path, keep=False)[1]


def decode_image(path: str, keep: bool = True):
    """(RGB image or None, problem or None) for a checked path or an embedded reference: `image_problem`'s decode,
    keeping the pixels when `keep`."""
    if is_ref(path):
        return embedded_decode(path, keep)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None, "image file missing"
    except PermissionError:
        return None, "image file unreadable (permission denied)"
    except OSError as exc:
        return None, f"image file unreadable ({exc.strerror or exc})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "image path is not a regular file"
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return pillow_decode(f, keep)
    finally:
        if fd >= 0:
            os.close(fd)


def embedded_problem(ref: str) -> str | None:
    """Why the image bytes an embedded reference points at (a Parquet / Arrow cell, a tar member) are not a
    usable image, or None; same decode and caps as a file."""
    return embedded_decode(ref, keep=False)[1]


def embedded_decode(ref: str, keep: bool = True):
    import io

    try:
        data = read_ref(ref, MAX_IMAGE_BYTES)
    except (ValueError, OSError, IndexError) as exc:
        return None, f"image bytes unreadable ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken shard is this image's problem, not the run's
        return None, f"image bytes unreadable ({exc.__class__.__name__}: {str(exc)[:120]})"
    if not data:
        return None, "image bytes empty"
    return pillow_decode(io.BytesIO(data), keep)


def _decode_worker(conn, decode) -> None:
    """Worker loop: receive a chunk of (index, path), send (index, problem) after each image, then None."""
    while True:
        chunk = conn.recv()
        if chunk is None:
            return
        for k, path in chunk:
            conn.send((k, decode(path)))
        conn.send(None)


class _Slot:
    def __init__(self, ctx, decode):
        from multiprocessing import Pipe

        self.conn, child = Pipe()
        self.proc = ctx.Process(target=_decode_worker, args=(child, decode), daemon=True)
        self.proc.start()
        child.close()
        self.items: deque = deque()
        self.since = time.monotonic()

    def give(self, chunk) -> None:
        self.items = deque(chunk)
        self.since = time.monotonic()
        self.conn.send(chunk)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.proc.kill()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def decode_all(paths: list[str], workers: int = 1, timeout: float = DECODE_TIMEOUT, decode=image_problem
               ) -> list[str | None]:
    """`decode(path)` for every path, in `workers` killable processes; a path that takes longer than `timeout`
    seconds, or crashes its worker, gets a reason instead of stopping (or hanging) the run."""
    import multiprocessing
    from multiprocessing.connection import wait

    results: list[str | None] = [None] * len(paths)
    if not paths:
        return results
    # fork: a worker needs no re-import of the caller's __main__ (a script without a main guard works)
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    workers = max(1, workers)
    size = max(8, len(paths) // (workers * 8) + 1)
    indexed = list(enumerate(paths))
    pending = deque(indexed[s:s + size] for s in range(0, len(indexed), size))
    slots: list[_Slot] = []

    def feed(slot: _Slot) -> bool:
        if pending:
            slot.give(pending.popleft())
            return True
        slot.stop()
        return False

    def replace(slot: _Slot, reason: str) -> None:
        slot.stop(kill=True)
        k, _ = slot.items.popleft()
        results[k] = reason
        if slot.items:
            pending.appendleft(list(slot.items))
        slots.remove(slot)
        if pending:
            fresh = _Slot(ctx, decode)
            slots.append(fresh)
            feed(fresh)

    try:
        for _ in range(min(workers, len(pending))):
            slot = _Slot(ctx, decode)
            slots.append(slot)
            feed(slot)
        while slots:
            now = time.monotonic()
            wait_for = max(0.0, min(s.since for s in slots) + timeout - now)
            ready = wait([s.conn for s in slots], timeout=wait_for)
            for conn in ready:
                slot = next(s for s in slots if s.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    replace(slot, "image decoder crashed on this file")
                    continue
                if msg is None:
                    if not feed(slot):
                        slots.remove(slot)
                    continue
                k, problem = msg
                results[k] = problem
                slot.items.popleft()
                slot.since = time.monotonic()
            now = time.monotonic()
            for slot in [s for s in slots if s.items and now - s.since > timeout]:
                replace(slot, f"image decode timed out after {timeout:g} s")
    finally:
        for slot in slots:
            slot.stop(kill=True)
    return results


def _plan(real_root: str, names: list[list[str]], embedded: bool
          ) -> tuple[list[str | None], dict[str, list[int]]]:
    """Path checks for every record: (reason per record so far, real path -> the records naming it)."""
    reasons: list[str | None] = [None] * len(names)
    folders: dict[str, str] = {}
    todo: dict[str, list[int]] = {}  # each file is decoded once, however many records name it
    for i, recs in enumerate(names):
        for name in recs:
            if embedded and is_ref(name):
                todo.setdefault(name, []).append(i)
                continue
            target, problem = path_problem(real_root, name, folders)
            if problem:
                reasons[i] = reasons[i] or problem
                break
            todo.setdefault(target, []).append(i)
    return reasons, todo


def _blame(reasons: list[str | None], owners: list[int], path: str, problem: str, real_root: str) -> None:
    rel = shortened(describe(path) if is_ref(path) else os.path.relpath(path, real_root))
    for i in owners:
        if reasons[i] is None:
            reasons[i] = f"{problem}: {rel}" if not problem.endswith(rel) else problem


def decode_workers(n_paths: int, workers: int = 0) -> int:
    """How many decode processes `n_paths` images get: `workers` (0 = one per CPU), but no more than one per 16
    images (a process costs more to start than a few small images take to decode)."""
    return min(workers or (os.cpu_count() or 1), max(1, n_paths // 16))


def check_images(root: Path, names: list[list[str]], workers: int = 0,
                 timeout: float = DECODE_TIMEOUT, embedded: bool = False) -> list[str | None]:
    """One rejection reason (or None) per record, given each record's image names relative to `root`.

    Paths are checked here; decoding runs in `workers` killable processes (0 = one per CPU). With `embedded`
    (readers of Parquet, Arrow and tar shards), names may be `selector.core.embedded` references to bytes inside
    the input; from any other reader such a name is refused by the path checks (it holds a NUL byte)."""
    real_root = os.path.realpath(root)
    reasons, todo = _plan(real_root, names, embedded)
    paths = [p for p, owners in todo.items() if any(reasons[i] is None for i in owners)]
    for path, problem in zip(paths, decode_all(paths, decode_workers(len(paths), workers), timeout)):
        if problem:
            _blame(reasons, todo[path], path, problem, real_root)
    return reasons


def decode_records(root: Path | str, names: list[list[str]], embedded: bool = False) -> tuple[list, list]:
    """`check_images`' verdicts, decoded in this process, keeping each valid record's first image (RGB) for the
    metrics: (first image or None per record, reason or None per record). For a process that is already the
    unit of isolation (a Ray task, retried by Ray if it dies); the per-image timeout is not enforced here."""
    real_root = os.path.realpath(root)
    reasons, todo = _plan(real_root, names, embedded)
    folders: dict[str, str] = {}
    first = [None if not recs or reasons[i] is not None else
             recs[0] if embedded and is_ref(recs[0]) else contained_path(real_root, recs[0], folders)
             for i, recs in enumerate(names)]
    wanted = set(first)
    decoded: dict[str, object] = {}
    for path, owners in todo.items():
        if all(reasons[i] is not None for i in owners):
            continue
        image, problem = decode_image(path, keep=path in wanted)
        if problem:
            _blame(reasons, owners, path, problem, real_root)
        elif path in wanted:
            decoded[path] = image
    return [decoded.get(p) if p is not None and reasons[i] is None else None for i, p in enumerate(first)], reasons
