"""Argument types and helpers shared by subcommands.

Every check a flag's value can get without running the command lives in its type here, so a bad value is reported
by argparse as one line naming the flag (`mmselect CMD: error: argument --budget/-b: ...`), before any work starts.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

__all__ = ["budget", "csv_list", "float_list", "int_list", "positive_int", "nonneg_int", "seed", "share",
           "nonneg_float", "positive_float", "input_path", "input_dir", "input_file", "parquet_file", "score_table",
           "output_file", "output_dir", "registry_names", "metric_list", "show_progress", "input_spec", "column_map",
           "add_preset", "choose_preset", "announce_preset"]


def budget(text: str) -> int | float:
    """'200' is a count (>= 1); '0.1' or '10%' is a fraction in (0, 1]."""
    value: int | float | None
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100.0
        else:
            value = int(text) if text.isdigit() else float(text)
    except ValueError:
        value = None
    if value is None or (value < 1 if isinstance(value, int) else not 0.0 < value <= 1.0):
        raise argparse.ArgumentTypeError(f"budget must be a count >= 1 (200), a fraction in (0, 1] (0.1) or a "
                                         f"percentage (10%), got {text!r}")
    return value


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}")
    return values


def _int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1, "a whole number >= 1")


def nonneg_int(text: str) -> int:
    return _int(text, 0, "a whole number >= 0")


def seed(text: str) -> int:
    value = _int(text, 0, "a seed, a whole number in [0, 2**32)")
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number in [0, 2**32), got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def share(text: str) -> float:
    """A share in [0, 1]."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {value:g}")
    return value


def nonneg_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value:g}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value:g}")
    return value


def input_path(text: str) -> Path:
    """A file or folder that exists and can be read."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: permission denied")
    return path


def input_dir(text: str) -> Path:
    """A folder that exists and can be read (an images root: record image paths are resolved under it)."""
    path = input_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder: the one the records' image paths "
                                         "are relative to (default: the input file's folder)")
    return path


def input_spec(text: str) -> Path | str:
    """An instruction input: a file or folder that exists, or (kept as text) `hf://datasets/...`, a glob or a
    brace pattern of shards (`shard-{000..009}.tar`), resolved when the input is read."""
    from selector.core.sources import is_spec

    if is_spec(text) and not Path(text).exists():
        return text
    return input_path(text)


def column_map(text: str) -> dict[str, str]:
    """`role=column,...` (or a JSON object, as a recipe stores it): which table column holds the id, image,
    conversations or texts."""
    import json

    from selector.core.parquet_records import ROLES

    text = text.strip()
    try:
        pairs = json.loads(text) if text.startswith("{") else dict(p.split("=", 1) for p in text.split(",") if p.strip())
    except ValueError:
        pairs = None
    if not isinstance(pairs, dict) or not pairs or not all(isinstance(v, str) and v.strip() for v in pairs.values()):
        raise argparse.ArgumentTypeError(f"expected ROLE=COLUMN pairs separated by commas (roles: {', '.join(ROLES)}), "
                                         f"got {text!r}")
    pairs = {k.strip(): v.strip() for k, v in pairs.items()}
    unknown = sorted(set(pairs) - set(ROLES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    return pairs


def input_file(text: str) -> Path:
    path = input_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file")
    return path


def score_table(text: str) -> Path:
    """A score table: a Parquet file, or a folder a sharded `mmselect score --engine ray` run wrote (its manifest)."""
    from selector.core.scores import is_score_dir

    if is_score_dir(text):
        return Path(text)
    return parquet_file(text)


def parquet_file(text: str) -> Path:
    """A readable Parquet file (checked by its magic bytes, without reading the table)."""
    path = input_file(text)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - 4, 0))
            tail = f.read(4)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: cannot read it ({exc.strerror or exc})") from None
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise argparse.ArgumentTypeError(f"{text}: not a Parquet file (write score tables with `mmselect score`)")
    return path


def _blocking_file(path: Path) -> Path | None:
    """The first existing parent of `path` that is a file (so nothing can be created under it), if any."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_file(text: str) -> Path:
    """A file path that can be written: not an existing folder, not under an existing file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file path")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text}: cannot write under {blocker}, which is a file")
    return path


def output_dir(text: str) -> Path:
    """A folder path that can be created or reused: not an existing file, not under an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text}: cannot create a folder under {blocker}, which is a file")
    return path


def registry_names(registry, *, csv: bool = False) -> Callable[[str], object]:
    """An argument type that accepts the names `registry` knows (comma-separated with `csv`), read lazily."""
    def check(text: str):
        names = csv_list(text) if csv else (text,)
        if csv and not names:
            raise argparse.ArgumentTypeError(f"expected comma-separated {registry.kind}s, got {text!r}")
        for name in names:
            if name not in registry:
                raise argparse.ArgumentTypeError(f"unknown {registry.kind} {name!r}; known: "
                                                 f"{', '.join(registry.names())}")
        return names if csv else registry.key(text)
    check.__name__ = registry.kind
    return check


def metric_list(text: str) -> tuple[str, ...]:
    """Comma-separated metric names, each checked against the metrics registry (when the metrics layer is
    installed; listing its names imports no model code)."""
    try:
        from metrics.registry import METRICS
    except ModuleNotFoundError:
        return csv_list(text)
    return registry_names(METRICS, csv=True)(text)


def show_progress(ns: argparse.Namespace) -> bool:
    """Progress unless -q: bars on a terminal, a plain line every 30 s in a log (`selector.core.progress`)."""
    return not getattr(ns, "quiet", False)


def add_preset(p: argparse.ArgumentParser, command: str) -> None:
    """--preset paper|fast, with the fast settings listed in the help."""
    from vision.presets import PRESETS, describe

    p.add_argument("--preset", choices=PRESETS,
                   help=f"paper: the papers' settings; fast: a CPU-sized run ({describe(command)}). Default: paper "
                        "on a GPU, fast on a CPU. Flags given explicitly win over the preset")


def choose_preset(ns: argparse.Namespace) -> str:
    """--preset when given, else paper on a GPU (--device, or CUDA present) and fast on a CPU."""
    from vision.presets import default_preset

    return ns.preset or default_preset(getattr(ns, "device", None))


def announce_preset(ns: argparse.Namespace, preset: str, from_preset: dict) -> str:
    """Say at the start of a run which preset it uses and what the preset set (stdout, with the command's other
    summary lines, unless -q; stderr stays for errors, so a user mistake is still one line there)."""
    how = "chosen" if ns.preset else ("GPU default" if preset == "paper" else "CPU default")
    what = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in from_preset.items())
    line = f"preset {preset} ({how}): " + (what or "the papers' settings")
    if not ns.preset and preset == "fast":
        line += "; --preset paper for the papers' settings"
    if not getattr(ns, "quiet", False):
        print(line, flush=True)
    return line
