"""Scale benchmark: herding and k-center greedy picking 10% of 200,000 x 512-d features, ours vs plain NumPy.

Each (method, implementation) runs in its own subprocess so its peak RSS (ru_maxrss) is its own. Peak memory is
reported as (peak RSS - RSS before the features were made) / feature-matrix bytes; the acceptance bar is <= 1.5.
Features are 10 Gaussian classes; selection is per class (the DC authors' setting), 10% of each class.

Every greedy step costs the same (one pass over the class's n_c x d rows), so time is compared per pick: ours makes
all picks, the (slow) NumPy baseline makes the first `--baseline-picks` share of them (default 10%) in the same run, and
the two orders must agree on those picks.

The NumPy baseline is the straightforward form: per step `np.linalg.norm(X - c, axis=1)` (k-center) and
`np.linalg.norm(mu - (S + X) / (t + 1), axis=1)` (herding), which allocate n x d temporaries each step.

    .venv/bin/python benchmarks/coreset_scale.py --n 200000 --d 512 --threads 1
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


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def make_features(n: int, d: int, classes: int, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.empty(n, d, dtype=torch.float32)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=gen) * 2
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        x[s:e] = torch.randn(e - s, d, generator=gen) + centres[labels[s:e]]
    return x, labels.numpy()


def numpy_kcenter(x: np.ndarray, k: int) -> list[int]:
    mind = np.full(len(x), np.inf, dtype=x.dtype)
    i = int(np.argmin(np.linalg.norm(x - x.mean(0), axis=1)))
    order = []
    for _ in range(k):
        order.append(i)
        mind = np.minimum(mind, np.linalg.norm(x - x[i], axis=1))
        i = int(np.argmax(mind))
    return order


def numpy_herding(x: np.ndarray, k: int) -> list[int]:
    mu = x.mean(0)
    s = np.zeros_like(mu)
    taken = np.zeros(len(x), dtype=bool)
    order = []
    for t in range(k):
        cost = np.linalg.norm(mu - (s + x) / (t + 1), axis=1)
        cost[taken] = np.inf
        i = int(np.argmin(cost))
        order.append(i)
        taken[i] = True
        s += x[i]
    return order


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from vision.prune.greedy import herding_order, kcenter_order

    base = rss_peak_bytes()
    x, labels = make_features(args.n, args.d, args.classes, args.seed)
    feat_bytes = x.element_size() * x.nelement()
    device = torch.device(args.device)
    xd = x.to(device) if device.type != "cpu" else x
    t0 = time.perf_counter()
    picks = {}
    for c in range(args.classes):
        idx = np.flatnonzero(labels == c)
        k = int(np.ceil(args.frac * len(idx)))
        if args.impl == "torch":
            xc = xd[torch.as_tensor(idx, device=device)]
            fn = herding_order if args.method == "herding" else kcenter_order
            order = fn(xc, k).cpu().numpy()
            if device.type == "cuda":
                torch.cuda.synchronize()
        else:
            xc = x.numpy()[idx]
            fn = numpy_herding if args.method == "herding" else numpy_kcenter
            order = np.asarray(fn(xc, max(1, int(np.ceil(args.baseline_picks * k)))))
        picks[c] = idx[order].tolist()
        del xc
    seconds = time.perf_counter() - t0
    peak = rss_peak_bytes()
    out = {"method": args.method, "impl": args.impl, "device": args.device, "seconds": seconds,
           "feature_bytes": feat_bytes, "peak_extra_bytes": peak - base, "mem_ratio": (peak - base) / feat_bytes,
           "picked": sum(len(v) for v in picks.values()), "picks": {str(c): v for c, v in picks.items()}}
    if device.type == "cuda":
        out["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
        out["gpu_mem_ratio"] = out["gpu_peak_bytes"] / feat_bytes
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--frac", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", default="kcenter,herding")
    p.add_argument("--impls", default="torch,numpy")
    p.add_argument("--baseline-picks", type=float, default=0.1, help="share of the picks the NumPy baseline makes")
    p.add_argument("--device", default="cpu", help="device for the torch implementation (cuda to use a GPU)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "coreset_scale.json")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "IMPL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.method, args.impl = args.worker
        print(json.dumps(worker(args)))
        return 0
    results = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    for method in args.methods.split(","):
        for impl in args.impls.split(","):
            cmd = [sys.executable, __file__, "--worker", method, impl, "--n", str(args.n), "--d", str(args.d),
                   "--classes", str(args.classes), "--frac", str(args.frac), "--seed", str(args.seed),
                   "--threads", str(args.threads), "--baseline-picks", str(args.baseline_picks), "--device", args.device if impl == "torch" else "cpu"]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
            r["seconds_per_pick"] = r["seconds"] / r["picked"]
            print(f"{method:8s} {impl:6s} {r['picked']:6d} picks {r['seconds']:8.1f} s  peak extra {r['peak_extra_bytes'] / 2**20:7.0f} MiB "
                  f"= {r['mem_ratio']:.2f}x features", flush=True)
            results.append(r)
    summary = []
    for method in args.methods.split(","):
        rs = {r["impl"]: r for r in results if r["method"] == method}
        row = {"method": method, **{f"{k}_picks": v["picked"] for k, v in rs.items()},
               **{f"{k}_seconds": v["seconds"] for k, v in rs.items()},
               **{f"{k}_ms_per_pick": 1000 * v["seconds_per_pick"] for k, v in rs.items()},
               **{f"{k}_mem_ratio": v["mem_ratio"] for k, v in rs.items()}}
        if "torch" in rs and "numpy" in rs:
            row["speedup_vs_numpy"] = rs["numpy"]["seconds_per_pick"] / rs["torch"]["seconds_per_pick"]
            a, b = rs["torch"]["picks"], rs["numpy"]["picks"]
            same = sum(a[c][:len(b[c])] == b[c] for c in a)
            row["baseline_orders_agree"] = f"{same}/{len(a)} classes"
        summary.append(row)
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("n", "d", "classes", "frac", "seed", "threads", "device")}
    args.out.write_text(json.dumps({"settings": settings, "summary": summary,
                                    "runs": [{k: v for k, v in r.items() if k != "picks"} for r in results]},
                                   indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
