"""`mmselect analyze`: look before you cut. One HTML page of an instruction file's counts, rejections,
composition, metric distributions, correlations, extreme records and embedding map."""
from __future__ import annotations

import argparse

from selector.app.commands.common import (input_dir, input_path, metric_list, nonneg_int, output_dir, parquet_file,
                                          seed, show_progress)

HELP = """Read and validate an instruction file (every format `select` reads), score it (--metrics, or reuse
--scores from `mmselect score`), and write OUT/index.html: one self-contained page with the counts and rejection
reasons, the composition (images per record, a source/task field, embedding clusters), a histogram per metric with
its missing counts and reasons, a correlation heatmap, the 12 lowest- and highest-scored records of each metric as
cards (thumbnail, instruction, answer, scores) and a 2-D map of the embeddings. Stats cover every record; the map
and the cluster fit use a sample of 5,000."""


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="write an HTML page that shows an instruction file before selecting from it",
                       description=HELP)
    p.add_argument("input", type=input_path, help="instruction file, or a cc_sbu_align folder")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="report folder (the page is OUT/index.html)")
    add_common_args(p)
    return p


def add_common_args(p: argparse.ArgumentParser) -> None:
    """The flags `analyze` and `compare` share: where records and scores come from."""
    p.add_argument("--images", type=input_dir, help="images root (default: the input's folder; cc_sbu_align: its image/)")
    p.add_argument("--format", dest="fmt", choices=["llava", "sharegpt", "messages", "cc_sbu"],
                   help="override format detection")
    p.add_argument("--scores", type=parquet_file, help="score table from `mmselect score` (its columns are shown)")
    p.add_argument("--metrics", type=metric_list, default=None,
                   help="comma-separated metrics to show (default: every column of --scores, else length); metrics "
                        "not in --scores are computed")
    p.add_argument("--workers", type=nonneg_int, default=None,
                   help="processes for parsing and image checks (default: one per CPU; 0 = none: work in the main "
                        "process, as in `select`)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the embedding-map sample and clusters (default 0)")
    try:
        from selector.app.commands.score import add_metric_args
    except ModuleNotFoundError:  # metrics layer not installed: length only
        return
    add_metric_args(p)


def scoring(ns: argparse.Namespace):
    """The `Scoring` the flags ask for."""
    from selector.app.report.jobs import Scoring

    extra = {}
    if hasattr(ns, "clip_model"):
        from selector.app.commands.score import metric_params

        extra = dict(metric_params=metric_params(ns, ns.score_cache), score_cache=ns.score_cache, device=ns.device)
    return Scoring(metrics=ns.metrics, scores=ns.scores, progress=show_progress(ns), **extra)


def workers(ns: argparse.Namespace) -> int:
    """`read_records` workers from --workers, as `select` maps them (unset: one per CPU; 0: the main process)."""
    return 0 if ns.workers is None else max(ns.workers, 1)


def run(ns: argparse.Namespace) -> int:
    from selector.app.report.jobs import AnalyzeConfig, run_analyze

    result = run_analyze(AnalyzeConfig(input=ns.input, out=ns.out, images=ns.images, fmt=ns.fmt,
                                       workers=workers(ns), seed=ns.seed, scoring=scoring(ns)))
    c = result.data["counts"]
    print(f"read {c['read']}, rejected {c['rejected']}, valid {c['valid']}; wrote {result.path}")
    return 0
