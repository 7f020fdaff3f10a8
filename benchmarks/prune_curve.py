"""Pruning curve on digits with ConvNet-3: test accuracy against the fraction kept, for every pruning method.

For each seed: rank the training split with every method (proxy nets trained on it), keep each fraction
(class-balanced, through `select`), train a fresh ConvNet on the kept subset, pick the checkpoint on the validation
split, report test accuracy. keep=1.0 is the same full-data run for every method. Runs are appended to a JSONL cache so
an interrupted benchmark resumes. Small, CPU-feasible settings (see --help); they are recorded in the output.

    .venv/bin/python benchmarks/prune_curve.py --seeds 5
    .venv/bin/python benchmarks/prune_curve.py --seeds 5 --methods el2n-ccs,forgetting-ccs   # CCS rows (issue 20)

A method name ending in `-ccs` cuts that ranker's scores with CCS (`select(..., stratified=Stratified())`: the
default hard cut for the kept share, 50 strata) instead of keeping the best scores; one ending in `-auto` lets
`vision.prune.cut_choice.choose_cut` pick between the two on a held-out 20 % of the training split (what
`mmselect prune --stratified auto` does; the curve's validation split is not used for it). `benchmarks/ccs_validation.py`
runs the same cut at a grid of hard cuts; its runs at the default cut are the same computation as this script's and
are stored here too (marked "from").
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("random", "forgetting", "el2n", "grand", "curvature", "herding", "kcenter")
SCORED = tuple(m for m in METHODS if m not in ("random", "herding", "kcenter"))
CUTS = ("-ccs", "-auto")  # a scored ranker's CCS cut, and the cut chosen on held-out data
CCS_METHODS = tuple(f"{m}{cut}" for cut in CUTS for m in SCORED)
KEEPS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class Settings:
    image_size: int = 16
    width: int = 32
    depth: int = 3
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    batch_size: int = 64
    lr: float = 0.01
    epochs: int = 12  # training epochs on a subset (lr x0.1 half-way) ...
    min_steps: int = 100  # ... raised so that small subsets still get this many SGD steps
    val_checks: int = 4  # validation checkpoints per run
    proxy_epochs: int = 12  # proxy schedule (forgetting tracks all of it; herding/k-center embed after it)
    score_epoch: int = 3  # EL2N / GraNd / curvature are measured here
    el2n_runs: int = 3
    grand_runs: int = 3
    curvature_probes: int = 10


def proxy_config(s: Settings):
    from vision.prune.base import ProxyConfig

    return ProxyConfig(width=s.width, depth=s.depth, epochs=s.proxy_epochs, lr=s.lr, batch_size=s.batch_size,
                       device="cpu")


def base_of(method: str) -> str:
    """The ranker under a cut's name (el2n-ccs -> el2n)."""
    for cut in CUTS:
        method = method.removesuffix(cut)
    return method


def rank_all(train, s: Settings, seed: int, methods=METHODS) -> dict[str, "object"]:
    from vision.prune import build_ranker, extract_features
    from vision.prune.base import ProxyConfig
    from vision.prune.coreset import HerdingRanker, KCenterRanker

    proxy = proxy_config(s)
    rankings, seconds = {}, {}
    for name in methods:
        t0 = time.perf_counter()
        if name == "random":
            rankings[name] = build_ranker("random", seed=seed).rank(train)
        elif name in ("herding", "kcenter"):
            if "features" not in rankings:  # herding and k-center share one trained proxy's embeddings
                rankings["features"] = extract_features(train, "trained", proxy, seed)
            cls = HerdingRanker if name == "herding" else KCenterRanker
            rankings[name] = cls(proxy=proxy, features="trained", seed=seed).rank_features(train, rankings["features"])
        else:
            extra = {"forgetting": {}, "el2n": {"epoch": s.score_epoch, "runs": s.el2n_runs},
                     "grand": {"epoch": s.score_epoch, "runs": s.grand_runs},
                     "curvature": {"epoch": s.score_epoch, "probes": s.curvature_probes}}[name]
            rankings[name] = build_ranker(name, proxy=proxy, seed=seed, **extra).rank(train)
        seconds[name] = time.perf_counter() - t0
    rankings.pop("features", None)
    return rankings, seconds


def train_eval(subset, splits, s: Settings, seed: int) -> dict:
    from vision.nets import build_net
    from vision.train import TrainConfig, evaluate, train

    steps_per_epoch = math.ceil(len(subset) / s.batch_size)
    epochs = max(s.epochs, math.ceil(s.min_steps / steps_per_epoch))
    net = build_net("convnet", subset.channels, subset.num_classes, subset.image_size, seed=seed, width=s.width,
                    depth=s.depth)
    cfg = TrainConfig(epochs=epochs, lr=s.lr, batch_size=s.batch_size, seed=seed, device="cpu",
                      val_every=max(1, epochs // s.val_checks))
    res = train(net, subset, cfg, val=splits.val)
    return {"test_accuracy": evaluate(res.net, splits.test).accuracy, "val_accuracy": res.val.accuracy,
            "epochs": epochs, "best_epoch": res.best_epoch}


def run(args) -> list[dict]:
    from selector.core.ranking import select
    from selector.core.stratified import Stratified
    from vision.data import load_digits_data, split
    from vision.prune.cut_choice import CutChoice, choose_cut

    s = Settings()
    splits = split(load_digits_data(size=s.image_size), s.split, seed=s.split_seed)
    cache = args.cache
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            done[(r["method"], r["keep"], r["seed"])] = r
    rows = list(done.values())
    for seed in range(args.seeds):
        todo = [(m, k) for m in args.methods for k in (args.keeps or KEEPS)
                if (m if k < 1 else "full", k, seed) not in done]
        if not todo:
            continue
        bases = tuple(dict.fromkeys(base_of(m) for m, _ in todo))
        rankings, seconds = rank_all(splits.train, s, seed, bases)
        print(f"seed {seed}: ranked in " + ", ".join(f"{m} {t:.0f}s" for m, t in seconds.items()), flush=True)
        for method, keep in todo:
            key_method = method if keep < 1 else "full"
            if (key_method, keep, seed) in done:
                continue
            base = base_of(method)
            cut = Stratified() if method.endswith("-ccs") else None
            if method.endswith("-auto"):
                cut, choice = choose_cut(splits.train, rankings[base], keep, CutChoice(), proxy_config(s), seed)
            sel = select(rankings[base], keep, seed=seed, stratified=cut)
            t0 = time.perf_counter()
            r = train_eval(splits.train.subset(sel.indices), splits, s, seed)
            r.update(method=key_method, keep=keep, seed=seed, n=len(sel), seconds=time.perf_counter() - t0,
                     rank_seconds=seconds.get(base))
            if sel.info.get("stratified"):
                r["ccs_beta"] = sel.info["stratified"]["beta"]
            if method.endswith("-auto"):
                r["cut_choice"] = choice
            done[(key_method, keep, seed)] = r
            rows.append(r)
            with cache.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"  {key_method:10s} keep {keep:.1f} n={len(sel):4d} test {r['test_accuracy']:.4f} "
                  f"({r['seconds']:.0f}s)", flush=True)
    return rows


def summarise(rows: list[dict], out_dir: Path) -> str:
    import matplotlib

    methods = [m for m in METHODS + CCS_METHODS if m in METHODS or any(r["method"] == m for r in rows)]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r["test_accuracy"] for r in rows if r["method"] == "full"]
    table = {}
    for m in methods:
        for k in KEEPS:
            accs = full if k == 1.0 else [r["test_accuracy"] for r in rows if r["method"] == m and r["keep"] == k]
            if accs:
                table[(m, k)] = (100 * np.mean(accs), 100 * np.std(accs), len(accs))
    lines = ["| method | " + " | ".join(f"{k:g}" for k in KEEPS) + " |", "|---" * (len(KEEPS) + 1) + "|"]
    for m in methods:
        cells = []
        for k in KEEPS:
            if (m, k) not in table:
                cells.append("–")
                continue
            mean, std, n = table[(m, k)]
            best = max(table[(mm, k)][0] for mm in methods if (mm, k) in table)
            cell = f"{mean:.1f} ± {std:.1f}"
            cells.append(f"**{cell}**" if k < 1 and mean == best else cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows})
    lines.append("")
    lines.append(f"Test accuracy (%), mean ± std over {len(seeds)} seeds; bold = best at that fraction.")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        ks = [k for k in KEEPS if (m, k) in table]
        base = base_of(m)  # a CCS row takes its ranker's colour, dotted, with open markers
        ax.errorbar(ks, [table[(m, k)][0] for k in ks], yerr=[table[(m, k)][1] for k in ks],
                    marker="o", mfc="white" if base != m else None, capsize=3, label=m,
                    color=f"C{METHODS.index(base)}",
                    linestyle="--" if m == "random" else "-." if m.endswith("-auto") else ":" if base != m else "-")
    ax.set_xlabel("fraction of the training split kept")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits 16x16, ConvNet-3 (width 32), {len(seeds)} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "prune_curve.png", dpi=120)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", type=lambda t: tuple(t.split(",")), default=METHODS,
                   help=f"comma-separated (default: every ranker); CCS cuts: {','.join(CCS_METHODS)}")
    p.add_argument("--keeps", type=lambda t: tuple(float(v) for v in t.split(",")), default=None,
                   help="fractions to run (default: all of " + ",".join(f"{k:g}" for k in KEEPS) + ")")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--cache", type=Path, default=None, help="JSONL of finished runs (default OUT_DIR/prune_curve.jsonl)")
    args = p.parse_args()
    unknown = [m for m in args.methods if m not in METHODS + CCS_METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}")
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.cache = args.cache or args.out_dir / "prune_curve.jsonl"
    rows = run(args)
    table = summarise(rows, args.out_dir)
    (args.out_dir / "prune_curve.md").write_text(table + "\n\nSettings: " + json.dumps(asdict(Settings())) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
