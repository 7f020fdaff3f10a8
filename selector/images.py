"""Image-path validation: containment in the images root, then a full decode to catch truncated or fake files."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError


def contained_path(root: Path, name: str) -> Path | None:
    """The resolved path of `name` under `root`, or None when it leaves the root (`../`, or absolute elsewhere)."""
    root = root.resolve()
    target = (root / name).resolve()  # an absolute `name` replaces root, as intended
    try:
        target.relative_to(root)
    except ValueError:
        return None
    return target


def image_problem(path: str) -> str | None:
    """Why the file at `path` is not a usable image, or None. Decodes every pixel, so truncation is caught."""
    if not os.path.exists(path):
        return "image file missing"
    if not os.path.isfile(path):
        return "image path is not a file"
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return "not an image"
    except PermissionError:
        return "image file unreadable (permission denied)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"image truncated or corrupt ({exc})"
    return None


def _problems_chunk(paths: list[str]) -> list[str | None]:
    return [image_problem(p) for p in paths]


def check_images(root: Path, names: list[list[str]], workers: int = 0) -> list[str | None]:
    """One rejection reason (or None) per record, given each record's image names relative to `root`.

    Decoding is the slow part, so it runs in `workers` processes (0 = one per CPU, 1 = in this process).
    """
    reasons: list[str | None] = [None] * len(names)
    todo_paths: list[str] = []
    todo_owner: list[int] = []
    for i, recs in enumerate(names):
        for name in recs:
            target = contained_path(root, name)
            if target is None:
                reasons[i] = f"image path {name!r} leaves the images root"
                break
            todo_paths.append(str(target))
            todo_owner.append(i)
    if not todo_paths:
        return reasons
    workers = workers or (os.cpu_count() or 1)
    chunk = max(16, len(todo_paths) // (workers * 8) + 1)
    pieces = [todo_paths[s:s + chunk] for s in range(0, len(todo_paths), chunk)]
    if workers <= 1 or len(pieces) == 1:
        results = [_problems_chunk(p) for p in pieces]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_problems_chunk, pieces))
    flat = [r for piece in results for r in piece]
    for owner, path, problem in zip(todo_owner, todo_paths, flat):
        if problem and reasons[owner] is None:
            reasons[owner] = f"{problem}: {os.path.relpath(path, root.resolve())}"
    return reasons
