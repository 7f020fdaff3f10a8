"""The digits table: ConvNet test accuracy (mean ± std) of pruned and condensed sets at ipc 1 and 10.

Rows: random, herding, k-center, forgetting (pruning through vision.prune + select), DC, DSA, DM, IDM, CAFE
(condensation) and full data, every one evaluated by the one protocol (vision.evaluate: fresh ConvNets, weights
chosen on the validation split, test accuracy reported). CPU-feasible settings, far below the papers' iteration
counts; every setting used is written next to the figures. Results are appended to a JSON file row by row, so an
interrupted run resumes where it stopped.

    .venv/bin/python benchmarks/condense_table.py --out benchmarks/results/condense_table.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

PRUNERS = ("random", "herding", "kcenter", "forgetting")
CONDENSERS = ("dc", "dsa", "dm", "idm", "cafe")


def condenser_settings(method: str, ipc: int, a) -> dict:
    net = {"width": a.width, "depth": a.depth}
    base = {"net_options": net, "batch_real": a.batch_real, "device": "cpu"}
    if method in ("dc", "dsa", "cafe"):
        inner = {"inner_loop": a.dc_inner} if a.dc_inner and ipc > 1 else {}
        return {**base, "iterations": a.dc_iters[0] if ipc == 1 else a.dc_iters[1], **inner}
    if method == "idm":
        return {**base, "iterations": a.dm_iters, "batch_train": a.batch_real, "queue_size": 5, "net_interval": 10}
    return {**base, "iterations": a.dm_iters}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/condense_table.json"))
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--ipcs", type=int, nargs="+", default=[1, 10])
    p.add_argument("--rows", nargs="+", default=[*PRUNERS, *CONDENSERS, "full"])
    p.add_argument("--sets", type=int, default=1, help="sets per row (seeds)")
    p.add_argument("--models", type=int, default=3)
    p.add_argument("--epochs", type=int, nargs=2, default=[300, 100], help="evaluation epochs at ipc 1 and ipc 10")
    p.add_argument("--full-epochs", type=int, default=30)
    p.add_argument("--dm-iters", type=int, default=200)
    p.add_argument("--dc-iters", type=int, nargs=2, default=[100, 3], help="DC/DSA/CAFE iterations at ipc 1, 10")
    p.add_argument("--dc-inner", type=int, default=0, help="override the inner loop at ipc > 1 (0: paper schedule)")
    p.add_argument("--batch-real", type=int, default=64)
    p.add_argument("--proxy-epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from vision.data import load_digits_data, split
    from vision.evaluate import EvalConfig, evaluate_reduced
    from vision.reduce import reduce

    data = load_digits_data(size=a.size)
    splits = split(data, (0.7, 0.15, 0.15), seed=0)
    done = json.loads(a.out.read_text()) if a.out.exists() else {"rows": []}
    have = {(r["row"], r["ipc"]) for r in done["rows"]}
    done["setup"] = {"dataset": f"sklearn digits upsampled to {a.size}x{a.size}, split 70/15/15 seed 0",
                     "train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                     "net": f"ConvNet-{a.depth} width {a.width}, instance norm", "models": a.models, "sets": a.sets,
                     "eval_epochs": {"ipc1": a.epochs[0], "ipc10": a.epochs[1], "full": a.full_epochs},
                     "eval_augmentation": "none", "machine": "2-core CPU shared with other jobs, no GPU",
                     "load_average_at_start": os.getloadavg()[0]}
    for ipc in a.ipcs:
        for row in a.rows:
            if row == "full" and ipc != a.ipcs[0]:
                continue
            key = ("full", 0) if row == "full" else (row, ipc)
            if key in have:
                continue
            t0 = time.perf_counter()
            results, info = [], {}
            for s in range(a.sets):
                if row == "full":
                    results = [splits.train]
                    break
                if row in PRUNERS:
                    params = {} if row == "random" else {"epochs": a.proxy_epochs, "width": a.width,
                                                         "depth": a.depth, "device": "cpu"}
                    results.append(reduce(splits.train, ipc, method=row, seed=s, **params))
                    info["ranker_settings"] = params
                else:
                    settings = condenser_settings(row, ipc, a)
                    red = reduce(splits.train, ipc, method=row, seed=s, **settings)
                    results.append(red)
                    info.setdefault("iterations_per_s", []).append(red.settings["iterations_per_s"])
                    info["settings"] = {k: red.settings[k] for k in ("iterations", "lr_img", "batch_real", "dsa",
                                                                        "init") if k in red.settings}
                    if row in ("dc", "dsa", "cafe"):
                        from vision.condense.dc import dc_schedule

                        outer, inner = dc_schedule(ipc)
                        info["settings"]["outer_inner"] = (outer, settings.get("inner_loop", inner))
            build_s = time.perf_counter() - t0
            epochs = a.full_epochs if row == "full" else a.epochs[0] if ipc == 1 else a.epochs[1]
            cfg = EvalConfig(models=a.models, epochs=epochs, net_options={"width": a.width, "depth": a.depth},
                             device="cpu")
            res = evaluate_reduced(results, splits, cfg)
            rec = {"row": row, "ipc": 0 if row == "full" else ipc, "mean": res.mean, "std": res.std,
                   "n": int(res.test_accuracy.size), "line": res.line(), "test_accuracy": res.test_accuracy.tolist(),
                   "build_seconds": build_s, "eval_seconds": time.perf_counter() - t0 - build_s,
                   "eval_epochs": epochs, **info}
            done["rows"].append(rec)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = a.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            tmp.replace(a.out)
            print(f"ipc {ipc:>2} {row:>10}: {res.line()}  (build {build_s:.0f}s, eval {rec['eval_seconds']:.0f}s)",
                  flush=True)
            if row in CONDENSERS and ipc == 1 and a.sets >= 1:
                from vision.condense.plots import save_grid

                save_grid(results[0].as_data(), a.out.parent / f"condense_{row}_ipc{ipc}.png",
                          title=f"{row} ipc {ipc}")


if __name__ == "__main__":
    main()
