"""What an input spec names: one JSON/JSONL file (maybe compressed), Parquet shards, a `datasets.save_to_disk`
folder, a cached hub dataset (`hf://datasets/ORG/NAME[@rev][/config][:split]`) or WebDataset tar shards.

`resolve_source` turns the spec into a `Source`: its kind and its files in a fixed order (sorted names; a brace
pattern keeps its own order), so row positions, automatic ids and outputs are the same on every run.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from selector.core.errors import FormatError

KINDS = ("json", "parquet", "arrow", "webdataset")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
_HF = re.compile(r"^hf://datasets/(?P<repo>[^/@:]+/[^/@:]+)(?:@(?P<rev>[^/:]+))?(?:/(?P<config>[^:]+))?"
                 r"(?::(?P<split>[^:/]+))?$")


@dataclass(frozen=True)
class Source:
    """An input: `kind` (one of KINDS), its `files` in reading order, and `root`, the folder that shard names
    (automatic ids) and relative image paths are taken against."""

    spec: str
    kind: str
    files: tuple[Path, ...]
    root: Path
    meta: dict = field(default_factory=dict, compare=False)

    def shard_name(self, i: int) -> str:
        """The name of file `i` relative to the input's folder (posix), as automatic ids use it."""
        try:
            return self.files[i].relative_to(self.root).as_posix()
        except ValueError:
            return self.files[i].name


def is_pattern(spec: str) -> bool:
    """A glob (`*`, `?`, `[`) or a brace pattern (`{000..099}`, `{a,b}`) rather than a plain path."""
    return bool(re.search(r"[*?\[]|\{[^{}]*(\.\.|,)[^{}]*\}", spec))


def is_spec(text: str) -> bool:
    """Whether `text` names an input without naming an existing path (hf:// or a pattern)."""
    return text.startswith("hf://") or is_pattern(text)


def _kind_of_file(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".arrow"):
        return "arrow"
    if name.endswith(".tar"):
        return "webdataset"
    return "json"


MAX_NAMES = 1_000_000  # brace-pattern names; braceexpand builds each range whole (10M names: 16 s and GBs)
_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?\}|\{([^{}]*,[^{}]*)\}")


def _pattern_size(spec: str) -> int:
    """How many names a brace pattern expands to (numeric ranges and comma lists multiply), without expanding."""
    size = 1
    for lo, hi, step, items in _RANGE.findall(spec):
        size *= (abs(int(hi) - int(lo)) // max(abs(int(step or 1)), 1) + 1) if lo else items.count(",") + 1
    return size


def _expand(spec: str) -> list[Path]:
    """The files a glob or brace pattern names (a brace pattern keeps its order; globs are sorted)."""
    from braceexpand import braceexpand  # webdataset's own shard-pattern expander

    size = _pattern_size(spec)
    if size > MAX_NAMES:
        raise FormatError(f"{spec} expands to {size:,} names; at most {MAX_NAMES:,} shards can be named by one "
                          "pattern (pass their folder instead)")
    out: list[Path] = []
    for part in braceexpand(spec):
        if re.search(r"[*?\[]", part):
            out.extend(Path(p) for p in sorted(glob.glob(part)))
        elif Path(part).exists():
            out.append(Path(part))
        else:
            raise FormatError(f"{spec}: {part} does not exist")
    if not out:
        raise FormatError(f"{spec} matches no file")
    return out


def _one_kind(spec: str, files: list[Path]) -> str:
    kinds = {_kind_of_file(f) for f in files}
    if kinds == {"json"} and len(files) > 1:
        raise FormatError(f"{spec}: names {len(files)} JSON / JSONL files; a JSON input is one file: join the "
                          f"shards first (cat {' '.join(f.name for f in files[:2])}{' ...' if len(files) > 2 else ''}"
                          " > all.jsonl), or convert them to Parquet shards")
    if len(kinds) != 1:
        raise FormatError(f"{spec}: mixes file kinds ({', '.join(sorted(f.name for f in files[:4]))}...); pass "
                          "Parquet shards, Arrow files or tar shards of one dataset")
    return kinds.pop()


def _common_root(files: list[Path]) -> Path:
    return Path(os.path.commonpath([str(f.parent.resolve()) for f in files]))


def _folder(path: Path) -> Source:
    if (path / "state.json").is_file():  # datasets.Dataset.save_to_disk
        try:
            state = json.loads((path / "state.json").read_text())
            files = [path / d["filename"] for d in state["_data_files"]]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise FormatError(f"{path}: unreadable save_to_disk state.json ({exc})") from None
        for f in files:
            if not f.is_file() or Path(os.path.realpath(f)).parent != Path(os.path.realpath(path)):
                raise FormatError(f"{path}: state.json names {f.name}, which is not a file of this folder")
        if not files:  # `datasets` saves a dataset of zero rows without any Arrow file
            raise FormatError(f"{path}: this save_to_disk dataset has no rows (its state.json lists no Arrow file)")
        return Source(str(path), "arrow", tuple(files), path)
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
        raise FormatError(f"{path} is a DatasetDict; pass one split's folder ({', '.join(path.name + '/' + s for s in splits)})")
    for kind, pattern in (("parquet", "*.parquet"), ("webdataset", "*.tar"), ("arrow", "*.arrow")):
        files = sorted(p for p in path.rglob(pattern) if p.is_file() and not p.name.startswith("."))
        if files:
            return Source(str(path), kind, tuple(files), path)
    raise FormatError(f"{path} is a folder without filter_cap.json, Parquet shards, .tar shards or a "
                      "save_to_disk dataset; pass the instruction file itself")


def resolve_source(spec: str | os.PathLike) -> Source:
    """The `Source` an input spec names (see the module docstring). A missing or unrecognised input is a
    one-line `FormatError`."""
    text = str(spec)
    if text.startswith("hf://"):
        return resolve_hub(text)
    path = Path(text)
    if path.is_dir():
        if (path / "filter_cap.json").is_file():
            return Source(text, "json", (path / "filter_cap.json",), path)
        return _folder(path)
    if path.exists():
        return Source(text, _kind_of_file(path), (path,), path.parent)
    if is_pattern(text):
        files = _expand(text)
        return Source(text, _one_kind(text, files), tuple(files), _common_root(files))
    raise FormatError(f"input file {path} does not exist")


def resolve_hub(spec: str) -> Source:
    """`hf://datasets/ORG/NAME[@rev][/config][:split]` through the HF datasets cache (the hub is never reached
    when HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set). Not cached: a one-line error saying how to get it."""
    m = _HF.match(spec)
    if not m:
        raise FormatError(f"{spec}: expected hf://datasets/ORG/NAME[@revision][/config][:split]")
    repo, rev, config, split = m["repo"], m["rev"], m["config"], m["split"] or "train"
    from selector.core.resolve import hub_available

    if not hub_available() and "datasets" not in sys.modules:
        # No hub (offline by request, or unreachable): `datasets` reads these once, at import; set before it, they
        # make it answer from the cache at once instead of retrying the network for half a minute.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets

        ds = datasets.load_dataset(repo, config, split=split, revision=rev)
    except Exception as exc:  # noqa: BLE001 - whatever the hub client raises offline, the remedy is the same
        name = repo + (f" (config {config})" if config else "") + (f" @ {rev}" if rev else "")
        args = ", ".join([repr(repo)] + ([repr(config)] if config else []) + [f"split={split!r}"] +
                         ([f"revision={rev!r}"] if rev else []))
        raise FormatError(
            f"dataset {name}, split {split}, is not in the HF datasets cache and cannot be downloaded here "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'offline'}). On a connected "
            f"machine run `python -c \"import datasets; datasets.load_dataset({args}).save_to_disk('DIR')\"` and "
            f"pass DIR, or `huggingface-cli download --repo-type dataset {repo}` to fill the cache") from None
    files = [Path(f["filename"]) for f in ds.cache_files]
    if not files:
        raise FormatError(f"{spec}: the cached dataset has no Arrow files (an in-memory dataset?)")
    return Source(spec, "arrow", tuple(files), files[0].parent, {"hub": {"repo": repo, "revision": rev,
                                                                         "config": config, "split": split}})
