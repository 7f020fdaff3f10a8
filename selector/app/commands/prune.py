"""`mmselect prune`: rank an image dataset with a pruning score and keep the best fraction."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import budget, show_progress
from selector.core.errors import MmselectError

METHODS = ("forgetting", "el2n", "grand", "curvature", "herding", "kcenter", "random")

HELP = """Rank every example of an image dataset (forgetting, EL2N, GraNd, loss curvature, herding, k-center greedy or
random), keep the best KEEP of them (class-balanced unless --global) and write OUT (JSON): the kept indices (positions
in the loaded dataset, best first), every example's score (higher = keep), and the settings used.
Defaults follow the DC family (ConvNet-3 width 128, SGD 0.01, 40-epoch proxy schedule); on a CPU try
--image-size 16 --width 32 --epochs 20."""

# Which optional flags each method takes (the rest are refused rather than silently ignored).
PROXY_FLAGS = ("net", "width", "depth", "epochs", "lr", "batch_size", "device")
METHOD_FLAGS = {
    "forgetting": ("runs",),
    "el2n": ("epoch", "runs"),
    "grand": ("epoch", "runs"),
    "curvature": ("epoch", "runs", "probes", "h", "keep_curvature"),
    "herding": ("features",),
    "kcenter": ("features",),
    "random": (),
}


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="prune an image dataset with a coreset score", description=HELP)
    p.add_argument("--dataset", required=True,
                   help="digits, folder:PATH (one sub-folder per class), or mnist:ROOT / cifar10:ROOT / ... "
                        "(torchvision files already on disk)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--keep", type=budget, required=True, help="fraction (0.5, 50%%) or count (300) to keep")
    p.add_argument("--out", "-o", type=Path, required=True, help="output JSON")
    p.add_argument("--seed", type=int, default=0, help="seed for proxy training, probes and tie-breaking")
    p.add_argument("--image-size", type=int, help="resize images to N x N (digits: 28 by default)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 = grey, 3 = RGB (default: the dataset's)")
    p.add_argument("--global", dest="global_cut", action="store_true",
                   help="one cut over the whole set instead of the same fraction per class")
    g = p.add_argument_group("proxy model (all methods but random)")
    g.add_argument("--net", choices=["convnet", "resnet18", "vit"], help="proxy network (default convnet)")
    g.add_argument("--width", type=int, help="ConvNet width (default 128)")
    g.add_argument("--depth", type=int, help="ConvNet depth (default 3)")
    g.add_argument("--epochs", type=int, help="length of the proxy's schedule (default 40)")
    g.add_argument("--lr", type=float, help="proxy learning rate (default 0.01)")
    g.add_argument("--batch-size", type=int, help="proxy batch size (default 128)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    m = p.add_argument_group("method settings")
    m.add_argument("--epoch", type=int, help="el2n/grand/curvature: score at this epoch (default 10; grand 0 = init)")
    m.add_argument("--runs", type=int, help="independently seeded proxy runs to average (el2n/grand 10, others 1)")
    m.add_argument("--probes", type=int, help="curvature: Rademacher probes (default 10)")
    m.add_argument("--h", type=float, help="curvature: finite-difference step (default 1e-3)")
    m.add_argument("--keep-curvature", choices=["low", "high"], help="curvature: keep flat (low, default) or curved")
    m.add_argument("--features", choices=["trained", "random", "pixels"],
                   help="herding/kcenter: embed with the trained proxy (default), an untrained one, or raw pixels")
    return p


def _params(ns: argparse.Namespace) -> dict:
    allowed = METHOD_FLAGS[ns.method] + (PROXY_FLAGS if ns.method != "random" else ())
    given = {k: getattr(ns, k) for k in PROXY_FLAGS + tuple(f for fl in METHOD_FLAGS.values() for f in fl)
             if getattr(ns, k, None) is not None}
    refused = sorted(set(given) - set(allowed))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise MmselectError(f"--method {ns.method} does not use {flags}")
    if "keep_curvature" in given:
        given["keep"] = given.pop("keep_curvature")
    if ns.method in ("herding", "kcenter"):
        given["per_class"] = not ns.global_cut
    else:
        given["balance"] = not ns.global_cut
    given["seed"] = ns.seed
    if ns.method != "random":
        given["progress"] = show_progress(ns)
    return given


def run(ns: argparse.Namespace) -> int:
    from vision.prune.run import PruneConfig, run_prune

    config = PruneConfig(dataset=ns.dataset, method=ns.method, keep=ns.keep, out=ns.out, seed=ns.seed,
                         image_size=ns.image_size, channels=ns.channels, params=_params(ns))
    result = run_prune(config)
    if not ns.quiet:
        print(f"wrote {result.out}")
    print(f"{ns.method}: kept {result.kept} of {result.total} examples")
    return 0
