"""What `--preset fast` costs against `--preset paper` (issue 22): accuracy and wall time, per command, on digits.

prune: each ranker ranks the pruning curve's training split (60 %) with each preset's settings (the preset's image
size, proxy width, epochs, runs), keeps 30 % class-balanced, and the kept examples are then trained and tested with
one fixed protocol, `prune_curve.py`'s (ConvNet-3 width 32 at 16 x 16, checkpoint picked on validation): the only
thing that differs between two rows of a seed is which examples were kept. A random 30 % is the floor.

condense and onion: the commands themselves (`mmselect condense ... --eval`, `mmselect onion`), each with its own
preset's evaluation, timed end to end; accuracy from the report they write. The paper DM schedule (20,000
iterations) takes hours on a CPU, so the paper row runs the paper's image size, network, real batch and
evaluation at `--paper-iterations` (recorded), next to fast at the same count to separate the two effects.

Rows (with the load at the start and the end) are appended to a JSONL cache, so an interrupted run resumes.

    .venv/bin/python benchmarks/preset_cost.py --parts prune --seeds 0 1
    .venv/bin/python benchmarks/preset_cost.py --parts condense onion
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.prune_curve import Settings, train_eval

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("fast", "paper")
PRUNE_METHODS = ("herding", "forgetting", "el2n")
KEEP = 0.3


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _append(cache: Path, row: dict) -> None:
    with cache.open("a") as f:
        f.write(json.dumps(row) + "\n")


def prune_rows(args, done: set) -> list[dict]:
    """Rank with each preset, keep 30 %, evaluate the kept examples with the pruning curve's one protocol."""
    from vision.data import load_digits_data, split
    from vision.presets import apply
    from vision.prune import ranker_params
    from vision.reduce import reduce

    s = Settings()
    evaluation = split(load_digits_data(size=s.image_size), s.split, seed=s.split_seed)
    rows = []
    for seed in args.seeds:
        for method in ("random", *args.methods):
            for preset in ("fast",) if method == "random" else PRESETS:
                key = ("prune", method, preset, seed)
                if key in done:
                    continue
                accepted = ranker_params(method)
                # The settings `mmselect prune --preset P` passes (see selector/app/commands/prune.py).
                params, from_preset = apply("prune", preset, {}, accepted=accepted)
                params["per_class" if "per_class" in accepted else "balance"] = True
                size = apply("prune", preset, {"image_size": None}, accepted={"image_size"})[0].get("image_size", 28)
                train = split(load_digits_data(size=size), s.split, seed=s.split_seed).train
                load0, t0 = _load(), time.perf_counter()
                sel = reduce(train, KEEP, method, unit="total", seed=seed, **params)
                rank_s = time.perf_counter() - t0
                r = train_eval(evaluation.train.subset(sel.indices), evaluation, s, seed)
                r.update(part="prune", method=method, preset=preset, seed=seed, keep=KEEP, n=len(sel),
                         image_size=size, preset_settings=from_preset, rank_seconds=rank_s, load=[load0, _load()])
                _append(args.cache, r)
                rows.append(r)
                print(f"prune {method:10s} {preset:5s} seed {seed}: ranked in {rank_s:.0f}s, test "
                      f"{r['test_accuracy']:.4f}", flush=True)
    return rows


def _cli(argv: list[str]) -> tuple[float, list[float]]:
    load0, t0 = _load(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "selector.app.cli", "-q", *argv], check=True, cwd=ROOT)
    return time.perf_counter() - t0, [load0, _load()]


def condense_rows(args, done: set) -> list[dict]:
    """`mmselect condense --method dm --ipc 1 --eval` at fast, at fast with the paper row's iteration count, and at
    paper with that count."""
    rows = []
    variants = (("fast", []), (f"fast-{args.paper_iterations}it", ["--iterations", str(args.paper_iterations)]),
                (f"paper-{args.paper_iterations}it", ["--iterations", str(args.paper_iterations)]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in variants:
            key = ("condense", "dm", name, args.condense_seed)
            if key in done:
                continue
            out = Path(tmp) / f"{name}.pt"
            preset = name.split("-")[0]
            wall, load = _cli(["condense", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--eval",
                               "--preset", preset, "--seed", str(args.condense_seed), "--out", str(out), *extra])
            report = json.loads(out.with_suffix(".json").read_text())
            ev = report["eval"]
            r = {"part": "condense", "method": "dm", "preset": name, "seed": args.condense_seed, "ipc": 1,
                 "wall_seconds": wall, "load": load, "settings": report["settings"], "eval": ev}
            _append(args.cache, r)
            rows.append(r)
            print(f"condense dm ipc 1 {name}: {wall:.0f}s, test {100 * ev['mean']:.1f} ± {100 * ev['std']:.1f}", flush=True)
    return rows


def onion_rows(args, done: set) -> list[dict]:
    """`mmselect onion` (all three levels, the command's defaults) at each preset."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed, preset in ((s, p) for s in args.onion_seeds for p in PRESETS):
            key = ("onion", "onion", preset, seed)
            if key in done:
                continue
            out = Path(tmp) / f"{preset}{seed}"
            wall, load = _cli(["onion", "--dataset", "digits", "--preset", preset, "--seed", str(seed),
                               "--out", str(out)])
            report = json.loads((out / "report.json").read_text())
            r = {"part": "onion", "method": "onion", "preset": preset, "seed": seed,
                 "wall_seconds": wall, "load": load, "test_accuracy": report.get("test_accuracy"),
                 "val_accuracy": report.get("val_accuracy"), "report": report}
            _append(args.cache, r)
            rows.append(r)
            print(f"onion {preset}: {wall:.0f}s, test {r['test_accuracy']}", flush=True)
    return rows


def _key(r: dict) -> tuple:
    return (r["part"], r["method"], r["preset"], r["seed"])


def summarise(rows: list[dict]) -> str:
    lines = []
    prune = [r for r in rows if r["part"] == "prune"]
    if prune:
        seeds = sorted({r["seed"] for r in prune})
        lines += [f"prune, keep {KEEP:g}, test accuracy (%) of the kept examples under one protocol, seeds {seeds}:",
                  "| ranker | fast | paper | fast - paper (paired) | rank s fast | rank s paper |", "|---" * 6 + "|"]
        for method in ("random", *PRUNE_METHODS):
            by = {p: {r["seed"]: r for r in prune if r["method"] == method and r["preset"] == p} for p in PRESETS}
            cells = []
            for p in PRESETS:
                acc = [100 * r["test_accuracy"] for r in by[p].values()]
                cells.append(f"{np.mean(acc):.1f} ± {np.std(acc):.1f}" if acc else "-")
            both = sorted(set(by["fast"]) & set(by["paper"]))
            diff = [100 * (by["fast"][k]["test_accuracy"] - by["paper"][k]["test_accuracy"]) for k in both]
            cells.append(f"{np.mean(diff):+.1f} ± {np.std(diff) / max(1, len(diff) - 1) ** 0.5:.1f}" if diff else "-")
            for p in PRESETS:
                secs = [r["rank_seconds"] for r in by[p].values()]
                cells.append(f"{np.median(secs):.0f}" if secs else "-")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for part in ("condense", "onion"):
        sub = [r for r in rows if r["part"] == part]
        if sub:
            lines += ["", f"{part}:", "| run | wall s | load | test accuracy |", "|---|---|---|---|"]
            for r in sub:
                acc = (f"{100 * r['eval']['mean']:.1f} ± {100 * r['eval']['std']:.1f} "
                       f"(n={len(sum(r['eval']['test_accuracy'], []))})" if part == "condense"
                       else f"{100 * r['test_accuracy']:.1f}")
                lines.append(f"| {r['preset']} (seed {r['seed']}) | {r['wall_seconds']:.0f} | {r['load']} | {acc} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=("prune", "condense", "onion"), default=["prune", "condense", "onion"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="prune: seeds (default 0 1)")
    p.add_argument("--methods", nargs="+", choices=PRUNE_METHODS, default=list(PRUNE_METHODS))
    p.add_argument("--paper-iterations", type=int, default=200,
                   help="condense: DM iterations of the paper row (the paper's 20,000 take hours on a CPU)")
    p.add_argument("--condense-seed", type=int, default=0)
    p.add_argument("--onion-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "preset_cost.jsonl")
    p.add_argument("--summary-only", action="store_true", help="print the table of the cache and stop")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.cache.read_text().splitlines()] if args.cache.exists() else []
    if not args.summary_only:
        done = {_key(r) for r in rows}
        for part in args.parts:
            rows += {"prune": prune_rows, "condense": condense_rows, "onion": onion_rows}[part](args, done)
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
