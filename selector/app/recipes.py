"""Recipes: `--config FILE.yaml` for every subcommand, and the resolved settings a run records for replay.

A recipe is a YAML (or JSON) mapping whose keys are the subcommand's flags, spelled as the flag (`batch-size`,
`format`) or as its dest (`batch_size`, `fmt`). `apply_config` turns each value into what the flag would have
parsed to (through the flag's own type and choices) and installs it as the parser's default, so flags given on the
command line win. A run report (a mapping with a `settings` mapping, such as `mmselect select`'s OUT.report.json) is
read as its `settings`, so `mmselect select --config OUT.report.json` replays the run. `versions` in a recipe is
metadata: a mismatch with the running versions is logged as a warning, never an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from selector.core.errors import MmselectError

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "apply_config", "resolved_settings", "versions"]

CONFIG_DEST = "config"
META_KEYS = ("versions",)  # recorded with the settings, not flags
_SKIP = {"help", "version", CONFIG_DEST}


class ConfigError(MmselectError):
    """A --config file that cannot be read, or that holds a key or value its subcommand does not take."""


def versions() -> dict[str, str | None]:
    """Versions of mmselect, Python and the libraries that decide a run's numbers (read from package metadata:
    nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in ("mmselect", "pyarrow", "numpy", "torch", "open_clip_torch", "transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _flag_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every key a recipe may use for `parser` -> its action: dests and long flag names, '-' and '_' alike."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest in _SKIP or action.dest.startswith("_") or action.dest == argparse.SUPPRESS:
            continue
        keys[action.dest] = action
        for flag in action.option_strings:
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = action
    return keys


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"--config {path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag: value, got a {type(doc).__name__}")
    if isinstance(doc.get("settings"), dict):  # a run report: replay its settings
        doc = doc["settings"]
    return doc


def _convert(action: argparse.Action, value: Any) -> Any:
    """`value` from a recipe -> what argparse would store for the flag (its type and choices applied)."""
    if action.nargs == 0:  # a switch: the recipe holds the value it stores (strict: true = --strict given)
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
        return value if isinstance(action.const, bool) else (action.const if value else action.default)
    if value is None:
        return None

    def one(v: Any) -> Any:
        if isinstance(v, dict):
            v = json.dumps(v)
        elif isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        elif not isinstance(v, str):
            v = "true" if v is True else "false" if v is False else str(v)
        out = action.type(v) if action.type else v
        if action.choices is not None and out not in action.choices:
            raise argparse.ArgumentTypeError(f"invalid choice {out!r} (choose from {', '.join(map(str, action.choices))})")
        return out

    if action.nargs not in (None, "?"):  # a list flag (nargs N, '+', '*')
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise argparse.ArgumentTypeError(f"expected {action.nargs} values, got {len(items)}")
        return [one(v) for v in items]
    return one(value)


def _command_and_config(parser: argparse.ArgumentParser, argv: list[str]):
    """(subcommand name, its parser, the --config path or None) read from `argv` without parsing it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for i, token in enumerate(argv):
        if token == "--":
            return None, None, None
        if token in sub.choices:
            rest, path = argv[i + 1:], None
            for j, arg in enumerate(rest):
                if arg == "--":
                    break
                if arg == "--" + CONFIG_DEST and j + 1 < len(rest):
                    path = rest[j + 1]
                elif arg.startswith(f"--{CONFIG_DEST}="):
                    path = arg.split("=", 1)[1]
            return token, sub.choices[token], path
        if not token.startswith("-"):
            return None, None, None
    return None, None, None


def apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """If `argv` names a subcommand with `--config FILE`, install FILE's values as that subcommand's defaults
    (flags on the command line still win). Returns the subcommand's name (None when argv names none)."""
    command, subparser, path = _command_and_config(parser, argv)
    if subparser is None or path is None:
        return command
    doc = _load(Path(path))
    keys = _flag_actions(subparser)
    for meta in META_KEYS:
        recorded = doc.pop(meta, None)
        if meta == "versions" and isinstance(recorded, dict):
            now = versions()
            changed = {k: (v, now.get(k)) for k, v in recorded.items() if k in now and now[k] != v}
            if changed:
                log.warning("--config %s was recorded with other versions: %s", path,
                            ", ".join(f"{k} {a} (now {b})" for k, (a, b) in changed.items()))
    unknown = sorted(str(k) for k in doc if str(k).replace("-", "_") not in keys)
    if unknown:
        valid = sorted({a.dest for a in keys.values()})
        raise ConfigError(f"--config {path}: unknown key(s) {', '.join(unknown)}; `{command}` takes "
                          f"{', '.join(valid)}")
    defaults: dict[str, Any] = {}
    for key, value in doc.items():
        action = keys[str(key).replace("-", "_")]
        try:
            defaults[action.dest] = _convert(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"--config {path}: {key}: {exc}") from None
        action.required = False
        if not action.option_strings and action.nargs is None:  # a positional the recipe supplies
            action.nargs = "?"
    subparser.set_defaults(**defaults)
    return command


def _plain(value: Any) -> Any:
    """A settings value as YAML/JSON writes it and `_convert` reads it back."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def resolved_settings(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> dict[str, Any]:
    """Every flag of `parser` (a subcommand) as parsed into `ns`, by dest, paths made absolute, plus `versions`:
    a recipe that `--config` reads back into the same run."""
    out = {}
    for action in parser._actions:
        if action.dest in _SKIP or action.dest.startswith("_") or not hasattr(ns, action.dest):
            continue
        out[action.dest] = _plain(getattr(ns, action.dest))
    out["versions"] = versions()
    return out
