"""`mmselect select`: keep the best BUDGET records of an instruction file, in the file's own format."""
from __future__ import annotations

import argparse
from selector.app.commands.common import (budget, column_map, csv_list, float_list, input_dir, input_path, input_spec,
                                          metric_list, nonneg_int, output_dir, output_file, score_table,
                                          positive_float, positive_int, seed, show_progress)

HELP = """Read an instruction input (LLaVA JSON/JSONL, also .gz/.zst; cc_sbu_align; ShareGPT; OpenAI messages;
Parquet shards; a datasets.save_to_disk folder; hf://datasets/ORG/NAME[@rev][/config][:split] from the HF cache;
WebDataset .tar shards), validate every record, score it, and keep the best BUDGET. Writes OUT (in the input's
format unless --out-format), OUT.rejected.jsonl (one line per rejected record with its reason) and OUT.report.json,
and prints `read N, rejected R, selected S, not selected U`. With --diversity, --semdedup or --coincide it also
writes OUT.map.png (pool vs selection, coloured by cluster) and reports the selection's composition by cluster and by
source."""


def cosine(text: str) -> float:
    """A cosine similarity threshold in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cosine similarity between -1 and 1, got {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a cosine similarity between -1 and 1, got {text!r}")
    return value


def cosine_or_auto(text: str) -> float | str:
    return "auto" if str(text).strip().lower() == "auto" else cosine(text)


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="select the best records of an instruction file", description=HELP)
    p.add_argument("input", type=input_spec,
                   help="instruction file (.json/.jsonl, maybe .gz/.zst), cc_sbu_align folder, Parquet file / folder / "
                        "glob, save_to_disk folder, hf://datasets/..., or .tar shards (file, folder, {000..009} pattern)")
    p.add_argument("--out", "-o", type=output_file, required=True,
                   help="output file, in the input's format (Parquet and Arrow inputs: a Parquet file; tar shards: "
                        "one .tar shard); a .gz / .zst suffix compresses JSON output")
    p.add_argument("--out-format", choices=["same", "llava-json", "llava-jsonl"], default="same",
                   help="same (default): the input's own format; llava-json / llava-jsonl: LLaVA records, images "
                        "stored in the input written to OUT_STEM_images/ beside OUT")
    p.add_argument("--columns", type=column_map, default=None,
                   help="table inputs: which column holds what, e.g. id=uid,image=img,conversations=chat "
                        "(roles: id, image, conversations, texts)")
    p.add_argument("--group-by", default=None,
                   help="a field or column (e.g. data_source; the_cauldron: source) whose values each get a "
                        "proportional quota >= 1; or cluster[:K] for spectral clusters of the metric scores. The "
                        "report shows the composition before and after (OUT.composition.png)")
    p.add_argument("--budget", "-b", type=budget, required=True, help="records to keep: a count (200) or a fraction (0.1, 10%%)")
    p.add_argument("--images", type=input_dir, help="images root (default: the input's folder; cc_sbu_align: its image/)")
    p.add_argument("--format", dest="fmt", choices=["llava", "sharegpt", "messages", "cc_sbu"],
                   help="override format detection")
    p.add_argument("--metrics", type=metric_list, default=("length",),
                   help="comma-separated metrics to rank by (default: length); several are combined as the mean of "
                        "their normalised scores")
    p.add_argument("--weights", type=float_list, help="comma-separated weights, one per metric")
    p.add_argument("--normalise", default="robust-z", choices=["robust-z", "z", "minmax", "rank"],
                   help="per-metric normalisation when combining metrics (default: robust-z)")
    p.add_argument("--scores", type=score_table,
                   help="scores from `mmselect score` to reuse: its table (parquet), or its folder (--engine ray)")
    p.add_argument("--selector", type=input_path,
                   help="a trained selector folder (mmselect train-selector): rank by its predicted quality, with "
                        "per-cluster quotas; it decides which metrics are needed (pass the same model flags, or "
                        "--scores)")
    p.add_argument("--seed", type=seed, default=0, help="seed for tie-breaking (default: 0)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record and exit non-zero")
    p.add_argument("--workers", type=nonneg_int, default=None,
                   help="processes for parsing and image checks (default: one per CPU; 0 = none: work in the main "
                        "process, as in `score`)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="scoring batch size (default: 64)")
    p.add_argument("--missing", choices=["group", "worst", "median"], default="group",
                   help="records lacking a metric: group (default) = they compete among themselves in their own "
                        "proportional quota, ranked by the metrics they have; worst / median = the missing metric "
                        "counts as its worst / median score. The report counts the records lacking each metric")
    p.add_argument("--allow-rejects", action="store_true",
                   help="select even when one rejection reason covers most records (default: stop, naming it)")
    p.add_argument("--allow-short", action="store_true",
                   help="write fewer records than the budget when too few are valid (default: stop, exit 2)")
    p.add_argument("--annotate", action="store_true",
                   help='add "mmselect": {"score", "rank", "group"} to each kept record (every other field is '
                        "written byte for byte as read)")
    p.add_argument("--report", action="store_true",
                   help="also write an HTML page of the selection beside its pool (OUT.report/index.html, or "
                        "--report-dir): histograms and composition side by side, cards around the cut")
    p.add_argument("--report-dir", type=output_dir, help="folder for --report's page (implies --report)")
    g = p.add_argument_group("diversity and coverage (issue 20)")
    g.add_argument("--diversity", type=cosine_or_auto, metavar="COS|auto",
                   help="DEITA-style greedy: go down the ranking and skip a record whose cosine similarity to one "
                        "already selected exceeds COS (DEITA: 0.9); 'auto' finds the lowest threshold that still "
                        "fills the budget. Exactly the budget and the quotas are kept: if too few pass, the least "
                        "similar skipped records fill the rest (the report says how many)")
    g.add_argument("--diversity-features", type=csv_list, default=("embed-image",), metavar="COLS",
                   help="comma-separated embedding columns for --diversity, --semdedup, --coincide and the map "
                        "(default: embed-image; e.g. embed-image,embed-text: each normalised, then concatenated). "
                        "They are scored like metrics (or read from --scores); a record lacking one counts as "
                        "distinct from every other")
    g.add_argument("--semdedup", type=cosine, metavar="COS",
                   help="SemDeDup before selecting: k-means on the features, then inside each cluster drop records "
                        "whose cosine similarity to a better-ranked kept record exceeds COS (e.g. 0.95; 1.0 drops "
                        "nothing). Dropped records are not selected; the report names the record each lost to")
    g.add_argument("--clusters", type=positive_int,
                   help="k-means clusters for --semdedup (default: one per 1,000 records) and --coincide (default: "
                        "one per 50 records)")
    g.add_argument("--coincide", action="store_true",
                   help="rank by COINCIDE instead of --metrics: k-means clusters of the features get budget shares "
                        "proportional to exp(transferability / (tau x density)), filled by herding inside each")
    g.add_argument("--coincide-tau", type=positive_float, default=0.1,
                   help="--coincide temperature tau (default 0.1, as in COINCIDE's scripts)")
    try:
        from selector.app.commands.score import add_metric_args
    except ModuleNotFoundError:  # metrics layer not installed: length only
        return p
    add_metric_args(p)
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.app.pipeline import SelectConfig, run_select

    extra = {}
    if hasattr(ns, "clip_model"):  # metric flags from selector.app.commands.score.add_metric_args
        from selector.app.commands.score import metric_params

        extra = dict(metric_params=metric_params(ns, ns.score_cache), score_cache=ns.score_cache, device=ns.device)
    metrics, ranker_factory, learned = ns.metrics, None, None
    if ns.coincide and ns.selector is not None:
        from selector.core.errors import MmselectError

        raise MmselectError("--coincide and --selector are two rankers: choose one")
    if ns.coincide:
        from selector.core.coincide import CoincideRanker

        metrics = tuple(ns.diversity_features)
        coincide = CoincideRanker(features=metrics, clusters=ns.clusters, tau=ns.coincide_tau, budget=ns.budget,
                                  seed=ns.seed)
        ranker_factory = lambda _config: coincide  # noqa: E731
    if ns.selector is not None:
        from selector.learned.model import LearnedSelector

        learned = LearnedSelector.load(ns.selector)
        print(f"selector {ns.selector}: {learned.describe()}")
        metrics = tuple(learned.features.required_columns())
        ranker_factory = lambda _config: learned  # noqa: E731 - the loaded selector is the ranker
    config = SelectConfig(input=ns.input, out=ns.out, budget=ns.budget, images=ns.images, fmt=ns.fmt,
                          metrics=metrics, weights=ns.weights, normalise=ns.normalise, scores=ns.scores,
                          seed=ns.seed, strict=ns.strict, workers=0 if ns.workers is None else max(ns.workers, 1),
                          batch_size=ns.batch_size, progress=show_progress(ns), metric_summary=learned is not None,
                          settings=getattr(ns, "_settings", {}), allow_rejects=ns.allow_rejects,
                          allow_short=ns.allow_short, missing=ns.missing, annotate=ns.annotate,
                          out_format=ns.out_format, columns=ns.columns or {}, group_by=ns.group_by, diversity=ns.diversity,
                          diversity_features=tuple(ns.diversity_features), semdedup=ns.semdedup, clusters=ns.clusters,
                          coincide=ns.coincide, **extra)
    result = run_select(config, ranker_factory=ranker_factory)
    if learned is not None:
        from selector.learned.sanity import check_selection

        for line in check_selection(result.shifts, learned.features.metric_names):
            print(line)
    if not ns.quiet:
        print(f"wrote {result.out} ({result.accounting.selected} records), rejected list {result.rejected_path}")
    summary = result.diversity_line()
    if summary:
        print(summary)
    if result.composition:
        from selector.core.composition import table_text

        print(table_text(result.composition, ns.group_by))
        print(f"composition chart: {result.chart_path}")
    if ns.report or ns.report_dir:
        from pathlib import Path

        from selector.app.report.jobs import write_selection_report

        page = write_selection_report(result, ns.report_dir or Path(f"{ns.out}.report"), seed=ns.seed)
        if not ns.quiet:
            print(f"wrote {page.path}")
    print(result.accounting.line())
    return 0
