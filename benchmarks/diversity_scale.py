"""Scale benchmark: diversity-aware `select` (DEITA greedy) at budget 10,000 over 1,000,000 x 512 float32 features.

Two pools, each run in its own subprocess so that its peak RSS (ru_maxrss) is its own:
- `topics`: 20,000 topics x 50 near-copies (same-topic cosine about 0.95): the pass at threshold 0.9 fills the budget
  after a partial scan, skipping the copies of topics it already holds;
- `copies`: 2,000 topics x 500 near-copies: only about 2,000 records pass, so the pass scans all 1,000,000
  candidates and the rest of the budget is filled from the skipped ones (the worst case for time).
Scores are uniform random (seeded); 10 groups of 100,000 get proportional quotas. Memory is reported as
(peak RSS - RSS before the features were made) / feature bytes, so it includes the features themselves (acceptance:
< 2x); time is the `select` call alone. Generation streams blocks into one preallocated float32 matrix.

    .venv/bin/python benchmarks/diversity_scale.py            # both pools, 1M x 512, budget 10,000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POOLS = {"topics": 20000, "copies": 2000}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_features(n: int, d: int, topics: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, d), dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 16384):
        e = min(n, s + 16384)
        x[s:e] = centres[rng.integers(0, topics, e - s)]
        x[s:e] += noise * rng.standard_normal((e - s, d), dtype=np.float32)
    return x


def worker(args) -> dict:
    from selector.core.diversity import Diversity
    from selector.core.ranking import Ranking, select

    base = rss_bytes()
    x = make_features(args.n, args.d, POOLS[args.pool], args.noise, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    ranking = Ranking(ids=np.arange(args.n), scores=rng.random(args.n), groups=np.arange(args.n) % 10)
    t0 = time.perf_counter()
    sel = select(ranking, args.budget, diversity=Diversity(x, args.threshold), seed=args.seed)
    seconds = time.perf_counter() - t0
    counts = np.bincount(ranking.groups[sel.indices], minlength=10)
    return {"pool": args.pool, "n": args.n, "d": args.d, "topics": POOLS[args.pool], "budget": args.budget,
            "threshold": args.threshold, "selected": len(sel), "distinct": len(set(sel.indices.tolist())),
            "quotas_kept": bool(all(counts[g] == sel.quotas[g] for g in range(10))), "seconds": round(seconds, 1),
            "feature_bytes": x.nbytes, "peak_over_features": round((peak_bytes() - base) / x.nbytes, 3),
            **sel.info["diversity"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--budget", type=int, default=10_000)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--noise", type=float, default=0.23, help="per-dimension noise around a topic (cos ~ 1/(1+noise^2))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pools", default="topics,copies")
    p.add_argument("--pool", help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "diversity_scale.json")
    args = p.parse_args()
    if args.pool:
        print(json.dumps(worker(args)))
        return 0
    rows = []
    for pool in args.pools.split(","):
        cmd = [sys.executable, __file__, "--pool", pool, "--n", str(args.n), "--d", str(args.d), "--budget",
               str(args.budget), "--threshold", str(args.threshold), "--noise", str(args.noise), "--seed",
               str(args.seed)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
