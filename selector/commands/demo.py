"""`mmselect demo`: the whole selection loop on DigitsVQA, offline, cached under --cache."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.commands.common import show_progress


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="run the selection loop end to end on DigitsVQA (offline)",
                       description="Build DigitsVQA and the demo models into CACHE (once), score the train pool, "
                                   "train the learned selector, select BUDGET records, fine-tune on them and on "
                                   "baseline selections, evaluate on test.jsonl, and write a report.")
    p.add_argument("--cache", type=Path, default=Path(".cache/mmselect"), help="cache folder (default .cache/mmselect)")
    p.add_argument("--budget", type=int, default=200, help="records to select (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.4, help="share of corrupted train records (default 0.4)")
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.learned.demo_loop import DemoConfig, run_minimal

    run_minimal(DemoConfig(cache=ns.cache, budget=ns.budget, seed=ns.seed, noise=ns.noise,
                           progress=show_progress(ns)))
    return 0
