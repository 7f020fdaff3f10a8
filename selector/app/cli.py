"""The `mmselect` command. Each subcommand lives in its own module with `add_parser(subparsers, name)` and `run(ns)`,
registered in `COMMANDS` (one line per subcommand).

This module is the CLI's single entry: it builds the parser (every subcommand gets `--config FILE.yaml`, see
`selector.app.recipes`), sets the process-wide settings (Arrow's allocator, torch's CPU threads) once, and turns
every error a user can cause into one line, `mmselect CMD: error: ...`, with exit code 2.

Command modules import nothing heavy at top level (argparse, the shared argument helpers, selector.core's errors and
I/O), so `mmselect --help` stays fast; heavy imports happen in `run`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from selector.core.errors import MmselectError
from selector.core.registry import Registry

# The subcommands, in the order `mmselect --help` lists them. A module that is not installed is simply not offered.
COMMANDS: Registry = Registry("command")
COMMANDS.add("select", "selector.app.commands.select")
COMMANDS.add("score", "selector.app.commands.score")
COMMANDS.add("analyze", "selector.app.commands.analyze")
COMMANDS.add("compare", "selector.app.commands.compare")
COMMANDS.add("train-selector", "selector.app.commands.train_selector")
COMMANDS.add("finetune", "selector.app.commands.finetune")
COMMANDS.add("prune", "selector.app.commands.prune")
COMMANDS.add("condense", "selector.app.commands.condense")
COMMANDS.add("onion", "selector.app.commands.onion")
COMMANDS.add("demo", "selector.app.commands.demo")
COMMANDS.add("demo-data", "selector.app.commands.demo_data")
COMMANDS.add("demo-models", "selector.app.commands.demo_models")


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `PROG: error: MESSAGE` (exit code 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmselect")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="mmselect",
        description="Find the few hundred training samples worth keeping: score, rank and select multimodal "
                    "instruction data, or prune and condense image datasets, through one ranking interface. "
                    "Every subcommand takes --config FILE.yaml (keys: its flags; flags on the command line win).",
    )
    parser.add_argument("--version", action="version", version=f"mmselect {_version()}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS.names():
        try:
            module = COMMANDS.get(name)
        except ModuleNotFoundError as exc:
            if exc.name and COMMANDS.reference(name).startswith(exc.name):
                continue
            raise
        p = module.add_parser(sub, name)
        p.add_argument("--config", metavar="FILE.yaml",
                       help="read flags from a YAML file whose keys are this command's flags (flags given here win); "
                            "a run report with a `settings` key replays that run")
        p.set_defaults(_run=module.run, _parser=p)
    return parser


OWN_LOGGERS = ("selector", "metrics", "vision", "finetune")
# Libraries whose DEBUG lines are noise even under -v (PIL logs every PNG chunk: "STREAM b'IDAT'").
NOISY_LOGGERS = ("PIL", "matplotlib", "urllib3", "filelock", "fsspec", "asyncio", "h5py", "numba", "git")


def configure_logging(verbose: bool, quiet: bool) -> None:
    """Our packages log at INFO (WARNING with -q); libraries, some of which log on the root logger (open_clip),
    stay at WARNING unless -v, so their chatter and weight-loading bars do not drown the command's output."""
    import os

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if verbose:
        return
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def configure_process(ns: argparse.Namespace) -> None:
    """The process-wide settings, set here and nowhere else: Arrow's allocator (jemalloc, else the system one, unless
    ARROW_DEFAULT_MEMORY_POOL is set; see selector.core.arrow_memory) and, for a command with --threads, torch's CPU
    thread count (0 = torch's default)."""
    from selector.core.arrow_memory import prefer_fast_allocator

    prefer_fast_allocator()
    threads = getattr(ns, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user caused (bad names, settings, input or output paths); None for
    anything else, which is a bug and keeps its traceback."""
    if isinstance(exc, MmselectError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:  # missing, unreadable or unwritable files and folders
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    from selector.app.recipes import apply_config, resolved_settings

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        apply_config(parser, argv)
    except MmselectError as exc:
        command = next((a for a in argv if a in COMMANDS), None)
        print(f"mmselect{' ' + command if command else ''}: error: {exc}", file=sys.stderr)
        return 2
    try:  # argparse reports a bad flag (and --help, --version) by exiting: an in-process caller gets the code
        ns, extras = parser.parse_known_args(argv)
        if extras:  # reported by the subcommand's parser, so the line names it
            ns._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(ns, "_run", None):
        parser.print_help()
        return 2
    ns._settings = resolved_settings(ns._parser, ns)
    configure_logging(ns.verbose, ns.quiet)
    try:
        configure_process(ns)
        return int(ns._run(ns) or 0)
    except KeyboardInterrupt:
        print(f"mmselect {ns.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"mmselect {ns.command}: error: {message}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "CommandParser", "build_parser", "configure_process", "main", "user_error"]

if __name__ == "__main__":
    sys.exit(main())
