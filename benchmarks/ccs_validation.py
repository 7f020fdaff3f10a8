"""Choose the CCS hard-cut share β on the validation split of the digits pruning curve, never on the test split.

For each seed, ranker (EL2N, forgetting) and kept fraction, cut the ranker's scores with CCS at every β of a grid
(the CCS paper's grid, step 0.1), train the pruning curve's ConvNet on the subset and record its validation and test
accuracy (same settings, splits and seeds as `prune_curve.py`). The summary picks, per ranker and fraction, the β
with the best mean validation accuracy and reports the test accuracy at that β; the test accuracies of the other βs
are listed for transparency only. Runs are appended to a JSONL cache, so an interrupted run resumes.

    .venv/bin/python benchmarks/ccs_validation.py --methods el2n,forgetting --keeps 0.1,0.2,0.3
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.prune_curve import Settings, rank_all, train_eval

ROOT = Path(__file__).resolve().parents[1]
BETAS = (0.0, 0.1, 0.2, 0.3, 0.4)


def run(args) -> list[dict]:
    from selector.core.ranking import select
    from selector.core.stratified import Stratified
    from vision.data import load_digits_data, split

    s = Settings()
    splits = split(load_digits_data(size=s.image_size), s.split, seed=s.split_seed)
    rows = [json.loads(line) for line in args.cache.read_text().splitlines()] if args.cache.exists() else []
    done = {(r["method"], r["keep"], r["seed"], r["beta"], r["strata"], r.get("within", "random")) for r in rows}
    for seed in args.seeds:
        todo = [(m, k, b) for m in args.methods for k in args.keeps for b in args.betas
                if (m, k, seed, b, args.strata, args.within) not in done]
        if not todo:
            continue
        rankings, _ = rank_all(splits.train, s, seed, tuple(dict.fromkeys(m for m, _, _ in todo)))
        for method, keep, beta in todo:
            sel = select(rankings[method], keep, seed=seed, stratified=Stratified(beta=beta, strata=args.strata,
                                                                                 within=args.within))
            t0 = time.perf_counter()
            r = train_eval(splits.train.subset(sel.indices), splits, s, seed)
            r.update(method=method, keep=keep, seed=seed, beta=beta, strata=args.strata, within=args.within,
                     n=len(sel), seconds=time.perf_counter() - t0)
            rows.append(r)
            with args.cache.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"seed {seed} {method}-ccs keep {keep:g} beta {beta:g} within {args.within}: "
                  f"val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} ({r['seconds']:.0f}s)", flush=True)
    return rows


def summarise(rows: list[dict]) -> str:
    """Per ranker and fraction: mean val / test accuracy (%) at each β and the β the validation split picks."""
    lines = ["| ranker | kept | " + " | ".join(f"β={b:g} val / test" for b in BETAS) + " | β by val | test at it |",
             "|---" * (len(BETAS) + 4) + "|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        for keep in sorted({r["keep"] for r in rows if r["method"] == method}):
            cells, val = [], {}
            for b in BETAS:
                rs = [r for r in rows if r["method"] == method and r["keep"] == keep and r["beta"] == b]
                if not rs:
                    cells.append("–")
                    continue
                val[b] = 100 * np.mean([r["val_accuracy"] for r in rs])
                test = 100 * np.mean([r["test_accuracy"] for r in rs])
                cells.append(f"{val[b]:.1f} / {test:.1f} (n={len(rs)})")
            best = max(val, key=lambda b: (round(val[b], 6), -b))  # ties: the smaller cut
            rs = [r for r in rows if r["method"] == method and r["keep"] == keep and r["beta"] == best]
            test = [100 * r["test_accuracy"] for r in rs]
            lines.append(f"| {method} | {keep:g} | " + " | ".join(cells) +
                         f" | {best:g} | {np.mean(test):.1f} ± {np.std(test):.1f} |")
    return "\n".join(lines)


def paired(rows: list[dict]) -> str:
    """Validation accuracy at each β minus at the default β (`ccs_beta`), paired by seed: mean ± standard error, in
    points. The rule behind the default: move an entry only where one score gains > 2 SE and the other loses < 2 SE."""
    from selector.core.stratified import ccs_beta

    val = {(r["method"], r["keep"], r["beta"], r["seed"]): 100 * r["val_accuracy"] for r in rows}
    lines = ["| ranker | kept | default β | " + " | ".join(f"β={b:g}" for b in BETAS) + " |",
             "|---" * (len(BETAS) + 3) + "|"]
    for method, keep in dict.fromkeys((r["method"], r["keep"]) for r in rows):
        ref = ccs_beta(keep)
        cells = []
        for b in BETAS:
            d = [val[method, keep, b, s] - val[method, keep, ref, s] for (m, k, bb, s) in val
                 if (m, k, bb) == (method, keep, b) and (method, keep, ref, s) in val]
            cells.append("–" if len(d) < 2 else "0" if b == ref else
                         f"{np.mean(d):+.1f} ± {np.std(d, ddof=1) / np.sqrt(len(d)):.1f}")
        lines.append(f"| {method} | {keep:g} | {ref:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(rows: list[dict], curve_rows: list[dict]) -> str:
    """Test accuracy (%) of the pruning curve's rows next to each CCS ranker with β picked on validation."""
    keeps = sorted({r["keep"] for r in rows})
    by_val = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        for keep in keeps:
            rs = [r for r in rows if r["method"] == method and r["keep"] == keep]
            val = {b: np.mean([r["val_accuracy"] for r in rs if r["beta"] == b]) for b in {r["beta"] for r in rs}}
            best = max(val, key=lambda b: (round(val[b], 6), -b))
            by_val[(f"{method}-ccs, β by val", keep)] = [100 * r["test_accuracy"] for r in rs if r["beta"] == best]
    table = {(r["method"], r["keep"]): [] for r in curve_rows}
    for r in curve_rows:
        table[(r["method"], r["keep"])].append(100 * r["test_accuracy"])
    table.update(by_val)
    names = ["random", "herding"] + [n for m in dict.fromkeys(r["method"] for r in rows)
                                     for n in (m, f"{m}-ccs", f"{m}-ccs, β by val")]
    lines = ["| method | " + " | ".join(f"{k:g}" for k in keeps) + " |", "|---" * (len(keeps) + 1) + "|"]
    for name in names:
        cells = [f"{np.mean(table[(name, k)]):.1f} ± {np.std(table[(name, k)]):.1f}" if table.get((name, k)) else "–"
                 for k in keeps]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def within_table(rows: list[dict], curve_rows: list[dict]) -> str:
    """At the default β: CCS taking a stratum's share hardest-first vs at random (the paper), validation and test,
    paired by seed (mean ± standard error, points), and the test gap of each to plain EL2N (the acceptance's bar)."""
    from selector.core.stratified import ccs_beta

    acc = {(r["method"], r["keep"], r.get("within", "random"), r["seed"]): r for r in rows
           if r["beta"] == ccs_beta(r["keep"])}
    plain = {(r["keep"], r["seed"]): 100 * r["test_accuracy"] for r in curve_rows if r["method"] == "el2n"}

    def diff(a: list[float], b: list[float]) -> str:
        d = np.subtract(a, b)
        return f"{d.mean():+.1f} ± {d.std(ddof=1) / np.sqrt(len(d)):.1f}" if len(d) > 1 else "–"

    lines = ["| ranker | kept | β | val random / hardest | test random / hardest | hardest - random, val | "
             "hardest - random, test | random - el2n, test | hardest - el2n, test |", "|---" * 9 + "|"]
    for method, keep in sorted({(m, k) for m, k, w, _ in acc if w == "hardest"}):
        seeds = sorted(s for m, k, w, s in acc if (m, k, w) == (method, keep, "hardest")
                       and (method, keep, "random", s) in acc)
        if not seeds:
            continue
        v = {w: [100 * acc[method, keep, w, s]["val_accuracy"] for s in seeds] for w in ("random", "hardest")}
        t = {w: [100 * acc[method, keep, w, s]["test_accuracy"] for s in seeds] for w in ("random", "hardest")}
        ps = [s for s in seeds if (keep, s) in plain]
        to_plain = {w: diff([t[w][seeds.index(s)] for s in ps], [plain[keep, s] for s in ps]) for w in t}
        lines.append(f"| {method} | {keep:g} | {ccs_beta(keep):g} | {np.mean(v['random']):.1f} / "
                     f"{np.mean(v['hardest']):.1f} | {np.mean(t['random']):.1f} / {np.mean(t['hardest']):.1f} | "
                     f"{diff(v['hardest'], v['random'])} | {diff(t['hardest'], t['random'])} | "
                     f"{to_plain['random']} | {to_plain['hardest']} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", type=lambda t: tuple(t.split(",")), default=("el2n", "forgetting"))
    p.add_argument("--keeps", type=lambda t: tuple(float(v) for v in t.split(",")), default=(0.1, 0.2, 0.3))
    p.add_argument("--betas", type=lambda t: tuple(float(v) for v in t.split(",")), default=BETAS)
    p.add_argument("--strata", type=int, default=50)
    p.add_argument("--within", choices=("random", "hardest"), default="random",
                   help="how CCS takes a stratum's share (Stratified.within); the tables compare the two")
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "ccs_validation.jsonl")
    p.add_argument("--curve", type=Path, default=ROOT / "benchmarks" / "results" / "prune_curve.jsonl",
                   help="the pruning curve's runs, shown next to the β-by-validation rows")
    p.add_argument("--summary-only", action="store_true", help="print the table from the cache, run nothing")
    args = p.parse_args()
    torch.set_num_threads(1)
    every = [json.loads(line) for line in args.cache.read_text().splitlines()] if args.summary_only else run(args)
    rows = [r for r in every if r.get("within", "random") == "random"]
    curve_rows = [json.loads(line) for line in args.curve.read_text().splitlines()] if args.curve.exists() else []
    print(summarise(rows))
    print()
    print(paired(rows))
    if curve_rows:
        print()
        print(curve(rows, curve_rows))
    if any(r.get("within") == "hardest" for r in every):
        print()
        print(within_table(every, curve_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
