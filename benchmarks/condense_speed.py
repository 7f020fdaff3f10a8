"""Condensation speed, each figure a ratio measured in ONE run.

1. DSA: the batched augmentation vs a per-image loop applying the same sampled transforms (outputs must agree).
2. Condensers: iterations/s of DC, DSA, DM, IDM, CAFE at the REFERENCES.md §6 setting (digits 1x28x28, ConvNet-3
   width 128, ipc 1, 256 real images per class, capped at the smallest class); for DM the same objective computed
   the reference's way (one forward per class in a Python loop) as the baseline, for DC (per-class loop by default
   on CPU) the vmapped all-classes form.

    .venv/bin/python benchmarks/condense_speed.py --out benchmarks/results/condense_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bench_dsa(n_per_class: int, classes: int, size: int, repeats: int) -> dict:
    from vision.condense.dsa import DSA, DSAConfig

    dsa = DSA(DSAConfig(mode="all"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(classes * n_per_class, 1, size, size, generator=g)
    out = {}
    for label, groups in (("per-image parameters", len(x)), ("one parameter set per class", classes)):
        p = dsa.sample(groups, size, size, torch.Generator().manual_seed(1))
        index = None if groups == len(x) else torch.arange(classes).repeat_interleave(n_per_class)
        batched, looped = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            a = dsa.apply(x, p, index)
            batched.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = dsa.apply_per_image(x, p, index)
            looped.append(time.perf_counter() - t)
        assert torch.allclose(a, b, atol=1e-5), "batched and per-image outputs differ"
        out[label] = {"images": len(x), "batched_s": min(batched), "per_image_s": min(looped),
                      "ratio": min(looped) / min(batched)}
    return out


def loop_variants():
    """DM and DC with the reference's per-class loop (same objective) as the speed baseline."""
    from vision.condense.dc import DC
    from vision.condense.distance import gradient_distance
    from vision.condense.dm import DM

    class LoopDM(DM):
        name = "dm-per-class-loop"

        def matching_loss(self, net, real, syn):
            loss = 0.0
            for c in range(real.shape[0]):
                with torch.no_grad():
                    er = net.embed(real[c])
                es = net.embed(syn[c])
                loss = loss + ((er.mean(0) - es.mean(0)) ** 2).sum()
            return loss

    class LoopDC(DC):
        name = "dc-per-class-loop"

        def matching_loss(self, net, real, syn):
            params = list(net.parameters())
            loss = 0.0
            for c in range(real.shape[0]):
                yr = torch.full((real.shape[1],), c, device=real.device)
                ys = torch.full((syn.shape[1],), c, device=real.device)
                gr = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(real[c]), yr), params)]
                gs = torch.autograd.grad(F.cross_entropy(net(syn[c]), ys), params, create_graph=True)
                loss = loss + gradient_distance(gr, gs)
            return loss

    return {"dm": LoopDM, "dc": LoopDC}


def bench_condensers(a) -> list[dict]:
    from vision.condense import build_condenser, condenser_class
    from vision.data import load_digits_data, split

    data = split(load_digits_data(size=a.size), (0.7, 0.15, 0.15), seed=0).train
    net = {"width": a.width, "depth": 3}
    rows = []
    loops = loop_variants()
    # warm-up on a tiny set (one-off imports, e.g. the optimiser's) so no method is charged for them
    tiny = data.subset(list(range(0, len(data), 20)))
    for method in a.methods:
        build_condenser(method, ipc=1, iterations=1, net_options={"width": 8, "depth": 3}, batch_real=4,
                        device="cpu").condense(tiny)
    for method in a.methods:
        iters = a.iters.get(method, 2)
        settings = {"ipc": a.ipc, "iterations": iters, "net_options": net, "batch_real": a.batch_real,
                    "device": "cpu", "seed": 0}
        if method == "idm":
            settings.update(batch_train=a.batch_real)
        red = build_condenser(method, **settings).condense(data)
        row = {"method": method, "iterations": iters, "it_per_s": red.settings["iterations_per_s"],
               "s_per_it": 1 / red.settings["iterations_per_s"], "real_per_class": red.settings["real_per_class"]}
        if method == "dc":
            # DC's default on CPU is the per-class loop; time the vmapped all-classes form against it
            vm = build_condenser(method, **{**settings, "class_loop": False}).condense(data)
            row["vmap_it_per_s"] = vm.settings["iterations_per_s"]
            row["vmap_vs_loop"] = row["vmap_it_per_s"] / row["it_per_s"]
            row["max_abs_diff_vs_vmap"] = float((red.images - vm.images).abs().max())
        elif method in loops:
            cls = loops[method]
            base = cls(condenser_class(method).Config(**settings)).condense(data)
            row["loop_it_per_s"] = base.settings["iterations_per_s"]
            row["vectorised_speedup"] = row["it_per_s"] / row["loop_it_per_s"]
            # same seed, same objective: the two must learn the same images
            row["max_abs_diff_vs_loop"] = float((red.images - base.images).abs().max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/condense_speed.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--methods", nargs="+", default=["dm", "dc", "dsa", "idm", "cafe"])
    p.add_argument("--dsa-repeats", type=int, default=3)
    p.add_argument("--skip-condensers", action="store_true")
    a = p.parse_args()
    a.iters = {"dm": 2, "idm": 2, "dc": 1, "dsa": 1, "cafe": 2}
    torch.set_num_threads(a.threads)
    result = {"machine": "2-core CPU shared with other jobs, no GPU", "threads": a.threads,
              "load_average_at_start": os.getloadavg()[0],
              "dsa": bench_dsa(256, 10, a.size, a.dsa_repeats)}
    print(json.dumps(result["dsa"], indent=1), flush=True)
    if not a.skip_condensers:
        result["setting"] = {"image": f"1x{a.size}x{a.size}", "net": f"ConvNet-3 width {a.width}", "ipc": a.ipc,
                             "batch_real": a.batch_real}
        result["condensers"] = bench_condensers(a)
    result["load_average_at_end"] = os.getloadavg()[0]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
