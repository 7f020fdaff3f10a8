"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import sys


def budget(text: str) -> int | float:
    """'200' is a count; '0.1' or '10%' is a fraction."""
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a count (200), a fraction (0.1) or a percentage (10%), got {text!r}")


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def show_progress(ns: argparse.Namespace) -> bool:
    return not getattr(ns, "quiet", False) and sys.stderr.isatty()
