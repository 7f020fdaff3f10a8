"""The `mmselect` command. Each subcommand lives in its own module with `add_parser(subparsers)` and `run(ns)`.

Command modules import nothing heavy at top level (argparse, the shared argument helpers, selector.core's errors and
I/O), so `mmselect --help` stays fast; heavy imports happen in `run`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from selector.core.errors import MmselectError

# (subcommand, module). A module that is not installed is simply not offered.
COMMANDS: list[tuple[str, str]] = [
    ("select", "selector.app.commands.select"),
    ("score", "selector.app.commands.score"),
    ("train-selector", "selector.app.commands.train_selector"),
    ("prune", "selector.app.commands.prune"),
    ("condense", "selector.app.commands.condense"),
    ("onion", "selector.app.commands.onion"),
    ("demo", "selector.app.commands.demo"),
    ("demo-data", "selector.app.commands.demo_data"),
    ("demo-models", "selector.app.commands.demo_models"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmselect",
        description="Find the few hundred training samples worth keeping: score, rank and select multimodal "
                    "instruction data, or prune and condense image datasets, through one ranking interface.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        p = module.add_parser(sub, name)
        p.set_defaults(_run=module.run)
    return parser


OWN_LOGGERS = ("selector", "metrics", "vision", "finetune")


def configure_logging(verbose: bool, quiet: bool) -> None:
    """Our packages log at INFO (WARNING with -q); libraries, some of which log on the root logger (open_clip),
    stay at WARNING unless -v, so their chatter and weight-loading bars do not drown the command's output."""
    import os

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "_run", None):
        parser.print_help()
        return 2
    configure_logging(ns.verbose, ns.quiet)
    try:
        return int(ns._run(ns) or 0)
    except MmselectError as exc:
        print(f"mmselect {ns.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmselect {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
