"""Ours vs the reference DatasetCondensation code (VICO-UoE/DatasetCondensation @53f63a6), DM and DC, same run.

    /work/main/.venv/bin/python benchmarks/peers/dc_reference.py            # default: ~5 min on a quiet 2-core CPU
    ... --rounds 3 --dm-iterations 20 --dc-iterations 5 --ipc 1 10 --eval-models 5 --eval-epochs 300
    ... --evaluate-dir /tmp/dcref-XXXX --out R.json    # evaluate the sets of a run that was stopped early

The reference is run, never copied: its `utils.py`/`networks.py` come from ../shared/peers/dc-reference/ref (or
$REF), with the two import-time fixes the peer README lists (DSA's in-place `X[:] = X[0]`, `ConvNet.embed`'s view).
The update loops below replay main_DM.py and main.py's synthetic-data updates with the reference's own
`get_network`, `DiffAugment`, `ParamDiffAug`, `match_loss` and `epoch` (inner-loop training); they are written here,
from the papers' description, because main*.py are scripts that load torchvision datasets and cannot be imported.

Same for both: data (our digits train split, 28 x 28, normalised), network (ConvNet-3, width 128, instance norm),
real batch (256 per class), image lr (DM 1.0, DC 0.1), DSA (DM on, DC off), real-image init, thread budget
(--threads). Each measurement is its own subprocess; rounds interleave reference and ours for every (method, ipc).
Then every synthetic set is evaluated with our one protocol (`vision.evaluate`, same seeds). The reference reseeds
its DSA from the clock: kept (it is the reference). Output: one JSON file (medians, ratio, accuracy, machine load).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DEFAULT_REF = Path(os.environ.get("REF") or ROOT.parent / "shared/peers/dc-reference/ref")
SETTINGS = {"dm": {"lr_img": 1.0, "dsa": True}, "dc": {"lr_img": 0.1, "dsa": False}}


def load_reference(ref: Path):
    """The reference's utils module, with the DSA in-place fix, and networks with ConvNet.embed using reshape."""
    sys.path.insert(0, str(ref))
    src = (ref / "utils.py").read_text()
    src = re.sub(r"(\w+)\[:\] = (\w+)\[0\]$", r"\1[:] = \2[0].clone()", src, flags=re.M)
    utils = types.ModuleType("utils")
    utils.__file__ = str(ref / "utils.py")
    sys.modules["utils"] = utils
    exec(compile(src, utils.__file__, "exec"), utils.__dict__)
    import networks

    networks.ConvNet.embed = lambda self, x: self.features(x).reshape(x.shape[0], -1)
    return utils


def digits_train():
    from vision.condense_job import SPLIT
    from vision.data import load_dataset, split

    return split(load_dataset("digits"), SPLIT, seed=0)


def run_reference(method: str, ipc: int, iterations: int, seed: int, ref: Path):
    """The reference update loop on our training split; returns (images, labels, seconds)."""
    import numpy as np
    import torch
    import torch.nn as nn

    utils = load_reference(ref)
    train = digits_train().train
    images_all, labels_all = train.images, train.labels
    channel, im_size, num_classes = images_all.shape[1], tuple(images_all.shape[2:]), len(train.classes)
    by_class = [np.flatnonzero(labels_all.numpy() == c) for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    def real(c, n):
        return images_all[rng.permutation(by_class[c])[:n]]

    syn = torch.cat([real(c, ipc) for c in range(num_classes)]).clone().requires_grad_(True)
    label_syn = torch.arange(num_classes).repeat_interleave(ipc)
    opt_img = torch.optim.SGD([syn], lr=SETTINGS[method]["lr_img"], momentum=0.5)
    param, strategy = utils.ParamDiffAug(), "color_crop_cutout_flip_scale_rotate"
    args = types.SimpleNamespace(device="cpu", dis_metric="ours", dsa=SETTINGS[method]["dsa"], dsa_param=param,
                                 dsa_strategy=strategy, dc_aug_param=None)
    outer, inner = utils.get_loops(ipc) if method == "dc" else (1, 0)
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(iterations):
        net = utils.get_network("ConvNet", channel, num_classes, im_size)
        net.train()
        if method == "dm":
            for p in net.parameters():
                p.requires_grad = False
            loss = torch.tensor(0.0)
            for c in range(num_classes):
                seed_aug = int(time.time() * 1000) % 100000
                r = utils.DiffAugment(real(c, 256), strategy, seed=seed_aug, param=param)
                s = utils.DiffAugment(syn[c * ipc:(c + 1) * ipc], strategy, seed=seed_aug, param=param)
                loss = loss + ((net.embed(r).detach().mean(0) - net.embed(s).mean(0)) ** 2).sum()
            opt_img.zero_grad()
            loss.backward()
            opt_img.step()
            continue
        params = list(net.parameters())
        opt_net = torch.optim.SGD(net.parameters(), lr=0.01)
        for ol in range(outer):
            loss = torch.tensor(0.0)
            for c in range(num_classes):
                r = real(c, 256)
                lab_r = torch.full((len(r),), c, dtype=torch.long)
                g_real = [g.detach() for g in torch.autograd.grad(criterion(net(r), lab_r), params)]
                s = syn[c * ipc:(c + 1) * ipc]
                g_syn = torch.autograd.grad(criterion(net(s), label_syn[c * ipc:(c + 1) * ipc]), params,
                                            create_graph=True)
                loss = loss + utils.match_loss(g_syn, g_real, args)
            opt_img.zero_grad()
            loss.backward()
            opt_img.step()
            if ol == outer - 1:
                break
            loader = torch.utils.data.DataLoader(utils.TensorDataset(syn.detach().clone(), label_syn),
                                                 batch_size=256, shuffle=True, num_workers=0)
            for _ in range(inner):
                utils.epoch("train", loader, net, opt_net, criterion, args, aug=False)
    return syn.detach(), label_syn, time.perf_counter() - start


def run_ours(method: str, ipc: int, iterations: int, seed: int):
    from vision.condense import build_condenser

    train = digits_train().train
    red = build_condenser(method, ipc=ipc, iterations=iterations, batch_real=256, init="real", seed=seed,
                          device="cpu", net_options={"width": 128, "depth": 3}, **SETTINGS[method]).condense(train)
    return red.images, red.labels, red.settings["seconds"]


def one(args) -> None:
    """Child process: one measurement, the synthetic set saved to args.save, one JSON line on stdout."""
    import torch

    torch.set_num_threads(args.threads)
    cpu0 = time.process_time()
    if args.impl == "reference":
        images, labels, seconds = run_reference(args.method, args.ipc_one, args.iterations, args.seed, args.ref)
    else:
        images, labels, seconds = run_ours(args.method, args.ipc_one, args.iterations, args.seed)
    torch.save({"images": images, "labels": labels}, args.save)
    print(json.dumps({"impl": args.impl, "method": args.method, "ipc": args.ipc_one, "iterations": args.iterations,
                      "seconds": seconds, "it_per_s": args.iterations / seconds,
                      "cpu_s": time.process_time() - cpu0}))


def evaluate(paths: dict[str, list[str]], models: int, epochs: int, seed: int) -> dict:
    import torch

    from vision.data import ImageData
    from vision.evaluate import EvalConfig, evaluate_sets

    splits = digits_train()
    out = {}
    for key, files in paths.items():
        sets = []
        for f in files:
            d = torch.load(f, weights_only=True)
            sets.append(ImageData(d["images"], d["labels"], splits.train.classes, splits.train.mean,
                                  splits.train.std, None, key))
        res = evaluate_sets(sets, splits.val, splits.test,
                            EvalConfig(models=models, epochs=epochs, seed=seed, device="cpu",
                                       net_options={"width": 128, "depth": 3}))
        out[key] = {"test_accuracy_mean": res.mean, "test_accuracy_std": res.std, "sets": len(sets),
                    "networks_per_set": models, "epochs": epochs}
    return out


def saved_sets(folder: Path) -> dict[str, list[str]]:
    """The synthetic sets a run saved (IMPL-METHOD-IPC-ROUND.pt), grouped as IMPL-METHOD-ipcIPC: one key per row."""
    paths: dict[str, list[str]] = {}
    for f in sorted(folder.glob("*-*-*-*.pt")):
        impl, method, ipc, _ = f.stem.split("-")
        paths.setdefault(f"{impl}-{method}-ipc{ipc}", []).append(str(f))
    return paths


def write_result(out: Path, fields: dict) -> None:
    """The JSON result: the command and date, then `fields`."""
    doc = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **fields}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=["dm", "dc"], choices=["dm", "dc"])
    p.add_argument("--ipc", nargs="+", type=int, default=[1, 10])
    p.add_argument("--dm-iterations", type=int, default=10)
    p.add_argument("--dc-iterations", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-models", type=int, default=2, help="0: timing only")
    p.add_argument("--eval-epochs", type=int, default=100)
    p.add_argument("--ref", type=Path, default=DEFAULT_REF)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/peers_dc_reference.json")
    p.add_argument("--evaluate-dir", type=Path, default=None,
                   help="only evaluate the sets a run saved in this folder (IMPL-METHOD-IPC-ROUND.pt; the run prints "
                        "it), e.g. after stopping it early")
    p.add_argument("--one", dest="impl", choices=["reference", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--ipc-one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.impl:
        return one(args)
    if args.evaluate_dir:
        paths = saved_sets(args.evaluate_dir)
        accuracy = evaluate(paths, args.eval_models, args.eval_epochs, seed=0)
        write_result(args.out, {"sets": paths, "accuracy": accuracy})
        return print(json.dumps(accuracy, indent=1))
    work = Path(tempfile.mkdtemp(prefix="dcref-"))
    print(f"synthetic sets saved in {work}", file=sys.stderr, flush=True)
    runs = []
    for r in range(args.rounds):
        for method in args.methods:
            its = args.dm_iterations if method == "dm" else args.dc_iterations
            for ipc in args.ipc:
                order = ("reference", "ours") if r % 2 == 0 else ("ours", "reference")
                for impl in order:
                    save = work / f"{impl}-{method}-{ipc}-{r}.pt"
                    cmd = [sys.executable, __file__, "--one", impl, "--method", method, "--ipc-one", str(ipc),
                           "--iterations", str(its), "--seed", str(r), "--save", str(save),
                           "--threads", str(args.threads), "--ref", str(args.ref)]
                    env = {**os.environ, "PYTHONPATH": str(ROOT)}
                    line = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                    rec = {**json.loads(line.strip().splitlines()[-1]), "round": r, "load": os.getloadavg()[0]}
                    print(json.dumps(rec), flush=True)
                    runs.append(rec)
    summary = {}
    for method in args.methods:
        for ipc in args.ipc:
            med = {impl: statistics.median(x["it_per_s"] for x in runs
                                           if x["impl"] == impl and x["method"] == method and x["ipc"] == ipc)
                   for impl in ("reference", "ours")}
            summary[f"{method}-ipc{ipc}"] = {"reference_it_per_s": med["reference"], "ours_it_per_s": med["ours"],
                                             "ours_over_reference": (med["ours"] / med["reference"]
                                                                     if med["reference"] else None)}
    accuracy = evaluate(saved_sets(work), args.eval_models, args.eval_epochs, seed=0) if args.eval_models else {}
    write_result(args.out, {"threads": args.threads, "cpus": os.cpu_count(), "load_end": os.getloadavg(),
                            "runs": runs, "speed": summary, "accuracy": accuracy})
    print(json.dumps({"speed": summary, "accuracy": accuracy}, indent=1))


if __name__ == "__main__":
    main()
