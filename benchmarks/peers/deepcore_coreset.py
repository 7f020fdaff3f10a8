"""Ours vs DeepCore's herding and k-center greedy, time and peak memory on the same features, same run.

    /work/main/.venv/bin/python benchmarks/peers/deepcore_coreset.py       # default: ~1 min on a quiet 2-core CPU
    ... --n 20000 --dim 512 --budget 0.1 --rounds 3

DeepCore (PatrickZH/DeepCore) is not on PyPI: the PyPI name `deepcore` (1.2.2, checked 2026-11-29) is an unrelated
package of central-tendency statistics (mean, median, mode), so the runner first checks that `deepcore.methods`
exists and otherwise says so in its result. In its place it times the behaviour ../shared/REFERENCES.md describes
for DeepCore, written here from that description, not from its code: k-center keeps a budget x n distance matrix
(`deepcore_kcenter`), herding recomputes the distance of every candidate mean to the class mean each step and picks
the argmax (`deepcore_herding`; REFERENCES.md calls argmax a bug: the argmin, as ours, is the Welling/iCaRL rule).
Memory is the largest temporary each algorithm allocates (computed, see `largest_temporary_mib`).
Ours: `vision.prune.greedy.kcenter_order` and `selector.core.herding.herding_order` (O(n) extra memory).
Also reported: the herding quality the argmin/argmax choice makes, ||mean(picked) - mean(all)||.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def deepcore_kcenter(x, k: int, start: int):
    """k-center greedy with the budget x n distance matrix (the behaviour REFERENCES.md describes)."""
    import torch

    dist = torch.full((k, x.shape[0]), float("inf"))
    order, mins = [start], torch.full((x.shape[0],), float("inf"))
    sq = (x * x).sum(1)
    for t in range(1, k):
        c = x[order[-1]]  # Euclidean distance by the norm expansion (torch.cdist is far slower for one row)
        dist[t - 1] = (sq + sq[order[-1]] - 2 * (x @ c)).clamp_(min=1e-12).sqrt_()
        mins = torch.minimum(mins, dist[t - 1])  # the running minimum, not a min over the matrix each step
        mins[order] = -1.0
        order.append(int(mins.argmax()))
    return order


def deepcore_herding(x, k: int, pick: str = "argmax"):
    """Herding recomputing ||mu - (sum + x) / (t + 1)|| for every candidate each step; DeepCore picks the argmax."""
    import torch

    mu, total, taken, order = x.mean(0), torch.zeros(x.shape[1]), torch.zeros(len(x), dtype=torch.bool), []
    for t in range(k):
        d = torch.norm(mu[None] - (total[None] + x) / (t + 1), dim=1)
        d[taken] = float("-inf") if pick == "argmax" else float("inf")
        i = int(d.argmax() if pick == "argmax" else d.argmin())
        order.append(i)
        taken[i] = True
        total += x[i]
    return order


def largest_temporary_mib(name: str, n: int, d: int, k: int) -> float:
    """The biggest buffer each implementation allocates beyond the features (float32), from its algorithm: torch's
    CPU allocations are invisible to tracemalloc, and a per-process RSS peak would mostly measure torch itself."""
    return {"ours-kcenter": 3 * n, "deepcore-kcenter": k * n, "ours-herding": 2 * n,
            "deepcore-herding": n * d}[name] * 4 / 2**20


def measure(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/peers_deepcore.json")
    args = p.parse_args()
    import numpy as np
    import torch

    from selector.core.herding import herding_order
    from vision.prune.greedy import kcenter_order

    torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("deepcore")
    real = spec is not None and importlib.util.find_spec("deepcore.methods") is not None
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((args.n, args.dim)).astype(np.float32))
    k = int(args.budget * args.n)
    start = int(torch.argmin(((x - x.mean(0)) ** 2).sum(1)))
    impls = {
        "ours-kcenter": lambda: kcenter_order(x, k, start=start).tolist(),
        "deepcore-kcenter": lambda: deepcore_kcenter(x, k, start),
        "ours-herding": lambda: herding_order(x.numpy(), k).tolist(),
        "deepcore-herding": lambda: deepcore_herding(x, k, "argmax"),
    }
    runs, orders = [], {}
    for r in range(args.rounds):
        for name in (impls if r % 2 == 0 else reversed(list(impls))):
            seconds, order = measure(impls[name])
            orders[name] = order
            rec = {"impl": name, "round": r, "seconds": seconds, "load": os.getloadavg()[0]}
            print(json.dumps(rec), flush=True)
            runs.append(rec)
    med = {name: {"seconds": statistics.median(x["seconds"] for x in runs if x["impl"] == name),
                  "largest_temporary_mib": largest_temporary_mib(name, args.n, args.dim, k)} for name in impls}
    mu = x.mean(0)
    gap = {name: float(torch.norm(x[orders[name]].mean(0) - mu)) for name in ("ours-herding", "deepcore-herding")}
    gap["random"] = float(torch.norm(x[torch.randperm(args.n, generator=torch.Generator().manual_seed(0))[:k]].mean(0)
                                     - mu))
    doc = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "deepcore_package": "PatrickZH/DeepCore" if real else ("PyPI deepcore is an unrelated statistics package"
                                                                   if spec else "not installed (PyPI's deepcore "
                                                                   "is an unrelated statistics package)"),
           "n": args.n, "dim": args.dim, "budget": k, "threads": args.threads, "cpus": os.cpu_count(),
           "load_end": os.getloadavg(), "runs": runs, "median": med,
           "kcenter_same_order": orders["ours-kcenter"] == orders["deepcore-kcenter"],
           "herding_mean_gap": gap,
           "ours_speedup": {m: med[f"deepcore-{m}"]["seconds"] / med[f"ours-{m}"]["seconds"]
                            for m in ("kcenter", "herding")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps({k: doc[k] for k in ("deepcore_package", "median", "kcenter_same_order", "herding_mean_gap",
                                           "ours_speedup")}, indent=1))


if __name__ == "__main__":
    main()
