"""DM at the REFERENCES.md §6 setting, for an equal-iterations accuracy check against the official code's figure.

digits 1x28x28, ConvNet-3 width 128, ipc 1, 256 real per class (capped at the smallest class), DM 100 iterations,
evaluation: 5 networks, 300 epochs, DSA augmentation; random real images evaluated the same way in the same run.

    .venv/bin/python benchmarks/condense_ref_setting.py --out benchmarks/results/condense_ref_setting.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/condense_ref_setting.json"))
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--epochs", type=int, default=300)
    a = p.parse_args()
    torch.set_num_threads(1)
    from vision.data import load_digits_data, split
    from vision.evaluate import EvalConfig, evaluate_reduced
    from vision.reduce import reduce

    splits = split(load_digits_data(size=28), (0.7, 0.15, 0.15), seed=0)
    cfg = EvalConfig(models=a.models, epochs=a.epochs, dsa=True, device="cpu")
    out = {"setting": "digits 1x28x28, ConvNet-3 width 128, ipc 1, batch_real 256, DSA evaluation",
           "load_average_at_start": os.getloadavg()[0]}
    t = time.perf_counter()
    rnd = evaluate_reduced(reduce(splits.train, 1, method="random"), splits, cfg)
    out["random"] = {"line": rnd.line(), "seconds": time.perf_counter() - t}
    print("random", rnd.line(), flush=True)
    red = reduce(splits.train, 1, method="dm", iterations=a.iterations, device="cpu")
    t = time.perf_counter()
    res = evaluate_reduced(red, splits, cfg)
    out["dm"] = {"line": res.line(), "iterations": a.iterations, "it_per_s": red.settings["iterations_per_s"],
                 "eval_seconds": time.perf_counter() - t}
    print("dm", res.line(), red.settings["iterations_per_s"], flush=True)
    out["load_average_at_end"] = os.getloadavg()[0]
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
