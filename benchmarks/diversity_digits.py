"""Diversity-aware selection on DigitsVQA: does skipping near-duplicates, SemDeDup or COINCIDE help a 200-record
selection? Test accuracy of the demo VLM LoRA-fine-tuned on each selection (the demo's protocol), and clean share.

Builds (or reuses) the demo's data, CLIP and stage-1 VLM under --cache, scores the train pool with length, clip,
embed-image and embed-text, then for each seed selects 200 records with:
  random; clip (top CLIP score); clip + --diversity 0.9 / auto on embed-image; clip + --semdedup 0.95;
  coincide on embed-image; coincide on embed-image + embed-text.
Each selection is fine-tuned (LoRA, 3 epochs, lr 3e-3, the demo's evaluation setting) and evaluated on test.jsonl;
runs are cached by the selection's ids, so an interrupted benchmark resumes.

    .venv/bin/python benchmarks/diversity_digits.py --seeds 3
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FEATS = ("embed-image",)


def selections(table, seed: int, budget: int) -> dict:
    from selector.core.coincide import CoincideRanker
    from selector.core.diversity import Diversity
    from selector.core.embeddings import embedding_matrix
    from selector.core.ranking import Ranking, Selection, select
    from selector.core.rankers import MetricRanker, RandomRanker
    from selector.core.semdedup import semdedup

    x = embedding_matrix(table, FEATS)
    clip = MetricRanker(("clip",)).rank(table)
    out = {"random": select(RandomRanker(seed=seed).rank(table), budget, seed=seed),
           "clip": select(clip, budget, seed=seed),
           "clip + diversity 0.9": select(clip, budget, seed=seed, diversity=Diversity(x, 0.9)),
           "clip + diversity auto": select(clip, budget, seed=seed, diversity=Diversity(x, None))}
    dedup = semdedup(x, 0.95, seed=seed, order=clip.order(seed))
    rows = np.flatnonzero(dedup.keep)
    sub = select(Ranking(clip.ids[rows], clip.scores[rows], source="clip"), budget, seed=seed)
    out["clip + semdedup 0.95"] = Selection(indices=rows[sub.indices], ids=sub.ids, scores=sub.scores,
                                            source="clip+semdedup", budget=budget, info={"removed": dedup.removed})
    out["coincide (image)"] = select(CoincideRanker(features=FEATS, seed=seed).rank(table), budget, seed=seed)
    out["coincide (image+text)"] = select(CoincideRanker(features=("embed-image", "embed-text"), seed=seed)
                                          .rank(table), budget, seed=seed)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "mmselect")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "diversity_digits.json")
    args = p.parse_args()
    import torch

    from selector.app.demo.data import load_truth
    from selector.app.demo.loop import (DemoConfig, build_data, build_models, demo_metrics, finetune_and_test,
                                        score_pool)
    from selector.app.demo.report import clean_share
    from selector.core.records import write_records

    torch.set_num_threads(args.threads)
    config = DemoConfig(cache=args.cache, progress=False)
    data = build_data(config)
    truth = load_truth(data / "truth.jsonl")
    models = build_models(data, args.cache / "models-data0", 0, False)
    records, rows, table = score_pool(data, args.cache / "scores-data0", demo_metrics(config.metrics, models, data),
                                      False)
    results = []
    test_cache: dict = {}
    for seed in range(args.seeds):
        runs = args.cache / "runs" / f"diversity-seed{seed}"
        for name, sel in selections(table, seed, args.budget).items():
            slug = name.replace(" ", "-").replace("+", "").replace("(", "").replace(")", "").replace("--", "-")
            f = write_records(records, rows[sel.indices], runs / f"{slug}.jsonl")
            t0 = time.perf_counter()
            r = finetune_and_test(slug, f, sel.ids, data, models["vlm-base"], runs, config.finetune_epochs,
                                  config.finetune_lr, seed, False, test_cache)
            row = {"name": name, "seed": seed, "n": len(sel), "clean": clean_share(sel.ids, truth),
                   "exact_match": r["eval"].get("exact_match"), "contains": r["eval"].get("contains"),
                   "seconds": round(time.perf_counter() - t0, 1), "info": sel.info}
            print(json.dumps(row), flush=True)
            results.append(row)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    names = list(dict.fromkeys(r["name"] for r in results))
    print(f"\n| selection (200 of {table.num_rows}) | clean % | test exact match % |\n|---|---|---|")
    for n in names:
        em = [100 * r["exact_match"] for r in results if r["name"] == n]
        cl = [100 * r["clean"] for r in results if r["name"] == n]
        print(f"| {n} | {np.mean(cl):.1f} | {np.mean(em):.1f} ± {np.std(em):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
