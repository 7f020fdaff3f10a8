"""`mmselect demo`: the whole selection loop on DigitsVQA, offline, cached under --cache."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import (int_list, metric_list, nonneg_int, output_dir, positive_float, positive_int,
                                          seed, share, show_progress)


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from selector.app.demo.loop import DemoConfig

    p = sub.add_parser(name, help="run the selection loop end to end on DigitsVQA (offline)",
                       description="Build DigitsVQA and the demo models into CACHE (once), score the train pool, "
                                   "train the learned selector on genuine LoRA labels, select BUDGET records, "
                                   "fine-tune on them, on baseline selections and on the full pool, evaluate on "
                                   "test.jsonl, print a table and write a Markdown report with plots into "
                                   "CACHE/report-data0-seedSEED (--report). On a 2-core CPU the first run takes "
                                   "about 4 minutes, a cached re-run well under one.")
    p.add_argument("--cache", type=output_dir, default=Path(".cache/mmselect"), help="cache folder (default .cache/mmselect)")
    p.add_argument("--budget", type=positive_int, default=200, help="records to select (default 200)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--noise", type=share, default=0.4, help="share of corrupted train records (default 0.4)")
    g = p.add_argument_group("label settings (default: the learned selector's own, as in `train-selector`)")
    g.add_argument("--subsets", type=positive_int, help="label subsets")
    g.add_argument("--subset-method", choices=["metrics", "random", "kmeans"],
                   help="label subsets: metric strata, random, or k-means on image embeddings")
    g.add_argument("--label-seeds", type=int_list,
                   help="LoRA seeds per label subset")
    g.add_argument("--label-metric", choices=["eval_loss", "exact_match", "contains"], help="label of a subset")
    g.add_argument("--lr", type=positive_float,
                   help="LoRA learning rate of the label runs (default: measured by the label pilot)")
    p.add_argument("--finetune-lr", type=positive_float, default=3e-3,
                   help="LoRA learning rate of the evaluation fine-tunes of each selection (default 3e-3)")
    p.add_argument("--stage1-epochs", type=positive_float, help="stage-1 epochs of the demo VLM (default: finetune's)")
    p.add_argument("--metrics", type=metric_list, default=DemoConfig.metrics,
                   help=f"metrics to score (default: {','.join(DemoConfig.metrics)}; ifd is scored under the demo's "
                        "stage-1 VLM)")
    p.add_argument("--no-full-pool", action="store_true", help="skip fine-tuning on the whole pool")
    p.add_argument("--report", type=output_dir, help="report folder (default CACHE/report-data0-seedSEED)")
    p.add_argument("--threads", type=nonneg_int, default=2,
                   help="torch CPU threads for every build and fine-tune (default 2: the same models and selection "
                        "on any machine, since CPU sums depend on the thread count; 0 = torch's default)")
    p.add_argument("--minimal", action="store_true",
                   help="only build the data and select by answer length (no models, no fine-tuning)")
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.app.demo.loop import DemoConfig, full_loop_available, run_demo, run_minimal

    config = DemoConfig(cache=ns.cache, budget=ns.budget, seed=ns.seed, noise=ns.noise, n_subsets=ns.subsets,
                        subset_method=ns.subset_method, label_seeds=ns.label_seeds, label_metric=ns.label_metric,
                        metrics=tuple(ns.metrics), full_pool=not ns.no_full_pool, lr=ns.lr, finetune_lr=ns.finetune_lr,
                        stage1_epochs=ns.stage1_epochs, report=ns.report, threads=ns.threads,
                        progress=show_progress(ns))
    missing = None if ns.minimal else full_loop_available()
    if ns.minimal or missing:
        if missing:
            print(f"full demo unavailable ({missing} is not installed): running the minimal demo")
        run_minimal(config)
        return 0
    run_demo(config)
    return 0
