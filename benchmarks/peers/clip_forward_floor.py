"""The bare CLIP forward's ceiling on this CPU, for the Data-Juicer comparison (`dj_clip.py`): image + text pairs per
second of the same HF CLIP folder in each tool's configuration, no reading, decoding or start-up.

    .venv/bin/python benchmarks/peers/clip_forward_floor.py --model /tmp/dj1024/hf-clip-b32

Configurations (2 cores in all): ours as one process, 2 threads, batch 64; ours as two processes (`score
--num-processes 2`), 1 thread, batch 64 each, run at the same time; Data-Juicer's `num_proc` 2: two processes, 1
thread, batch 1 (its op scores one sample per call), run at the same time. Text: 41 tokens (what the benchmark's
answers tokenize to with that folder's tokenizer). Last, the CPU's fp32 ceiling: `torch.mm` of two 4,096 x 4,096
matrices at 2 threads, in GFLOP/s (the floor argument for condensation in BENCHMARKS.md uses it too). Prints one
JSON line per configuration.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def child(model: str, threads: int, batch: int, pairs: int) -> None:
    """One process: warm up, then time `pairs` image + text forwards at `batch`; print pairs/s."""
    import torch
    from transformers import CLIPModel

    torch.set_num_threads(threads)
    net = CLIPModel.from_pretrained(model).eval()
    x, ids = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch, 41))
    with torch.inference_mode():
        net.get_image_features(pixel_values=x), net.get_text_features(input_ids=ids)
        steps = max(1, pairs // batch)
        start = time.perf_counter()
        for _ in range(steps):
            net.get_image_features(pixel_values=x)
            net.get_text_features(input_ids=ids)
        print(steps * batch / (time.perf_counter() - start), flush=True)


def matmul_gflops(threads: int = 2, n: int = 4096, repeats: int = 5) -> float:
    """Best of `repeats` fp32 n x n matrix products, in GFLOP/s (2 n^3 FLOP each)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="an HF CLIP folder (dj_clip.py builds one)")
    p.add_argument("--pairs", type=int, default=128, help="pairs timed per process")
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(str(args.model), *args.child)
    configs = {"ours, 1 process x 2 threads, batch 64": [(2, 64)],
               "ours, 2 processes x 1 thread, batch 64": [(1, 64), (1, 64)],
               "Data-Juicer num_proc 2: 2 processes x 1 thread, batch 1": [(1, 1), (1, 1)]}
    for name, procs in configs.items():
        running = [subprocess.Popen([sys.executable, __file__, "--model", str(args.model), "--child", str(t), str(b),
                                     str(args.pairs if b > 1 else args.pairs // 4)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for t, b in procs]
        rates = [float(proc.communicate()[0].strip().splitlines()[-1]) for proc in running]
        print(json.dumps({"config": name, "pairs_per_s": round(sum(rates), 2),
                          "per_process": [round(r, 2) for r in rates]}), flush=True)
    print(json.dumps({"config": "fp32 torch.mm 4096 x 4096, 2 threads", "gflops": round(matmul_gflops(), 1)}))


if __name__ == "__main__":
    main()
