"""`mmselect compare`: several selections of one pool side by side, on one HTML page."""
from __future__ import annotations

import argparse

from selector.app.commands.common import input_path, output_dir

HELP = """Compare selections made from one pool (the OUT files of `mmselect select`; each one's OUT.report.json
names the pool and its selected ids). Writes OUT/index.html: the Jaccard overlap of every pair, cards of the records
picked by one and not the other, and the composition and metric distributions of each selection against the pool."""


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from selector.app.commands.analyze import add_common_args

    p = sub.add_parser(name, help="compare selections of one pool on an HTML page", description=HELP)
    p.add_argument("selections", type=input_path, nargs="+", metavar="SELECTION",
                   help="selection files (or their .report.json); at least two")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="report folder (the page is OUT/index.html)")
    p.add_argument("--pool", type=input_path, help="the pool they were selected from (default: the input their "
                                                   "reports name)")
    add_common_args(p)
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.app.commands.analyze import scoring, workers
    from selector.app.report.jobs import CompareConfig, run_compare

    result = run_compare(CompareConfig(selections=tuple(ns.selections), out=ns.out, pool=ns.pool, images=ns.images,
                                       fmt=ns.fmt, workers=workers(ns), seed=ns.seed, scoring=scoring(ns)))
    for pair, o in result.data["overlap"].items():
        a, b = pair.split("|", 1)
        print(f"{a} vs {b}: Jaccard {o['jaccard']:.3f} ({o['both']} in both, {o['only_first']} / "
              f"{o['only_second']} in one only)")
    print(f"wrote {result.path}")
    return 0
