"""Image-path validation: containment in the images root, then a full decode to catch truncated or fake files.

Both steps run in worker processes. Containment follows symlinks like `Path.resolve`, but resolves each folder once
(cached) and then needs one `lstat` per image, not one per path component: on slow file systems resolving every
path cost more than decoding a small image.
"""
from __future__ import annotations

import os
from pathlib import Path


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


def image_problem(path: str) -> str | None:
    """Why the file at `path` is not a usable image, or None. Decodes every pixel, so truncation is caught."""
    from PIL import Image, UnidentifiedImageError  # here, not at import: text-only runs never need Pillow

    try:
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError:
        return "image file missing"
    except IsADirectoryError:
        return "image path is not a file"
    except UnidentifiedImageError:
        return "not an image"
    except PermissionError:
        return "image file unreadable (permission denied)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"image truncated or corrupt ({exc})"
    return None


def _problems_chunk(root: str, names: list[str]) -> list[str | None]:
    """For each name: None when it is a readable image under `root`, else the reason (naming the file)."""
    folders: dict[str, str] = {}
    out: list[str | None] = []
    for name in names:
        target = contained_path(root, name, folders)
        if target is None:
            out.append(f"image path {name!r} leaves the images root")
            continue
        problem = image_problem(target)
        out.append(f"{problem}: {os.path.relpath(target, root)}" if problem else None)
    return out


def check_images(root: Path, names: list[list[str]], workers: int = 0) -> list[str | None]:
    """One rejection reason (or None) per record, given each record's image names relative to `root`.

    Containment and decoding run in `workers` processes (0 = one per CPU, 1 = in this process).
    """
    real_root = os.path.realpath(root)
    flat = [name for recs in names for name in recs]
    owner = [i for i, recs in enumerate(names) for _ in recs]
    reasons: list[str | None] = [None] * len(names)
    if not flat:
        return reasons
    workers = workers or (os.cpu_count() or 1)
    chunk = max(16, len(flat) // (workers * 8) + 1)
    pieces = [flat[s:s + chunk] for s in range(0, len(flat), chunk)]
    if workers <= 1 or len(pieces) == 1:
        results = [_problems_chunk(real_root, p) for p in pieces]
    else:
        from concurrent.futures import ProcessPoolExecutor  # here: a run without images never starts workers

        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_problems_chunk, [real_root] * len(pieces), pieces))
    for i, problem in zip(owner, (r for piece in results for r in piece)):
        if problem and reasons[i] is None:
            reasons[i] = problem
    return reasons
