"""`mmselect prune`: rank an image dataset with a pruning score and keep the best fraction."""
from __future__ import annotations

import argparse

from selector.app.commands.common import (add_preset, announce_preset, budget, choose_preset, nonneg_int,
                                          output_dir, output_file, positive_float, positive_int, seed, share,
                                          show_progress)
from selector.core.errors import MmselectError

HELP = """Rank every example of an image dataset (forgetting, EL2N, GraNd, loss curvature, herding, k-center greedy or
random), keep the best KEEP of them (class-balanced unless --global; --stratified: a CCS coverage-centric cut)
and write OUT (JSON): the kept indices (positions in the loaded dataset, best first; for folder:PATH also the kept
files), every example's score (higher = keep), and the settings used. --subset-dir writes the kept images of a folder dataset as a folder tree.
--preset paper follows the DC family (ConvNet-3 width 128, SGD 0.01, 40-epoch proxy schedule, 28 x 28 digits);
--preset fast (the default on a CPU) shrinks the proxy so digits finish in a minute or two."""

RANKER_GROUPS = ("proxy model (all methods but random)", "method settings")  # flags that go to the ranker
RENAMED = {"keep_curvature": "keep"}  # flag dest -> ranker field, where the flag's own name is taken (--keep)


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    from vision import NETS
    from vision.prune import RANKERS

    p = sub.add_parser(name, help="prune an image dataset with a coreset score", description=HELP)
    p.add_argument("--dataset", required=True,
                   help="digits, folder:PATH (one sub-folder per class), or mnist:ROOT / cifar10:ROOT / ... "
                        "(torchvision files already on disk)")
    p.add_argument("--method", required=True, choices=RANKERS.names())
    p.add_argument("--keep", type=budget, required=True, help="fraction (0.5, 50%%) or count (300) to keep")
    p.add_argument("--out", "-o", type=output_file, required=True, help="output JSON")
    p.add_argument("--seed", type=seed, default=0, help="seed for proxy training, probes and tie-breaking")
    add_preset(p, "prune")
    p.add_argument("--image-size", type=positive_int, help="resize images to N x N (digits: 28 under --preset paper)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 = grey, 3 = RGB (default: the dataset's)")
    p.add_argument("--global", dest="global_cut", action="store_true",
                   help="one cut over the whole set instead of the same fraction per class")
    p.add_argument("--stratified", nargs="?", const="ccs", choices=["ccs", "auto"],
                   help="ccs (the value when none is given): coverage-centric cut (CCS, Zheng et al. 2023) instead "
                        "of the best scores: drop the hardest --hard-cut share, split the rest of the score range "
                        "into --strata bins and sample the budget evenly over them, smallest bin first (any method; "
                        "per class unless --global). auto: hold out --cut-val-share of the data, cut the rest both "
                        "ways, train the proxy on each and keep the cut that validates better (CCS wins at small "
                        "budgets, the best scores often at half or more; costs one proxy training per cut)")
    p.add_argument("--hard-cut", type=share, help="--stratified: share of the highest-scored (hardest) examples "
                   "dropped first (default: 0 when keeping >= 50%%, 0.1 below; "
                   "chosen on the digits validation split, see BENCHMARKS.md)")
    p.add_argument("--strata", type=positive_int, default=50, help="--stratified: score bins (default 50)")
    p.add_argument("--cut-val-share", type=share,
                   help="--stratified auto: class-stratified share held out to compare the cuts (default 0.2, at "
                        "most 0.5)")
    p.add_argument("--subset-dir", type=output_dir,
                   help="folder datasets: write the kept images here as the same class-folder tree (a new or empty "
                        "folder); OUT also names the kept files")
    p.add_argument("--link", choices=["symlink", "copy"], default="symlink",
                   help="how --subset-dir holds each kept image: a symlink to the original (default) or a copy")
    g = p.add_argument_group(RANKER_GROUPS[0])
    g.add_argument("--net", choices=NETS.names(), help="proxy network (default convnet)")
    g.add_argument("--width", type=positive_int, help="ConvNet width (default 128)")
    g.add_argument("--depth", type=positive_int, help="ConvNet depth (default 3)")
    g.add_argument("--epochs", type=positive_int, help="length of the proxy's schedule (default 40)")
    g.add_argument("--lr", type=positive_float, help="proxy learning rate (default 0.01)")
    g.add_argument("--batch-size", type=positive_int, help="proxy batch size (default 128)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    m = p.add_argument_group(RANKER_GROUPS[1])
    m.add_argument("--epoch", type=nonneg_int,
                   help="el2n/grand/curvature: score at this epoch (default 10; grand 0 = init)")
    m.add_argument("--runs", type=positive_int,
                   help="independently seeded proxy runs to average (el2n/grand 10, others 1)")
    m.add_argument("--probes", type=positive_int, help="curvature: Rademacher probes (default 10)")
    m.add_argument("--h", type=positive_float, help="curvature: finite-difference step (default 1e-3)")
    m.add_argument("--keep-curvature", choices=["low", "high"], help="curvature: keep flat (low, default) or curved")
    m.add_argument("--features", choices=["trained", "random", "pixels"],
                   help="herding/kcenter: embed with the trained proxy (default), an untrained one, or raw pixels")
    return p


def _ranker_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Dests of the flags in the ranker's argument groups (read from the parser, not listed twice)."""
    return [a.dest for g in parser._action_groups if g.title in RANKER_GROUPS for a in g._group_actions]


def _params(ns: argparse.Namespace, preset: str) -> tuple[dict, dict]:
    """(the ranker's settings, what the preset set): from the flags, with the preset filling what they leave unset.
    A flag the method does not use is refused, not silently ignored; a preset setting it does not use is skipped."""
    from vision.presets import apply
    from vision.prune import ranker_params

    accepted = ranker_params(ns.method)
    given = {RENAMED.get(k, k): getattr(ns, k) for k in _ranker_flags(ns._parser) if getattr(ns, k) is not None}
    refused = sorted(k for k in given if k not in accepted)
    if refused:
        back = {v: k for k, v in RENAMED.items()}
        flags = ", ".join("--" + back.get(k, k).replace("_", "-") for k in refused)
        raise MmselectError(f"--method {ns.method} does not use {flags}")
    given, from_preset = apply("prune", preset, given, accepted=accepted)
    balance = "per_class" if "per_class" in accepted else "balance"
    given[balance] = not ns.global_cut
    if "progress" in accepted:
        given["progress"] = show_progress(ns)
    return given, from_preset


def run(ns: argparse.Namespace) -> int:
    from vision.presets import apply
    from vision.prune_job import PruneConfig, run_prune

    from selector.core.stratified import Stratified

    if ns.hard_cut is not None and not ns.stratified:
        raise MmselectError("--hard-cut applies to --stratified selection; add --stratified")
    stratified = Stratified(beta=ns.hard_cut, strata=ns.strata) if ns.stratified else None
    if ns.cut_val_share is not None and ns.stratified != "auto":
        raise MmselectError("--cut-val-share applies to --stratified auto; add --stratified auto")
    if ns.stratified == "auto":
        from vision.prune.cut_choice import CutChoice

        stratified = CutChoice(ccs=stratified, **({} if ns.cut_val_share is None else
                                                  {"val_share": ns.cut_val_share}))
    preset = choose_preset(ns)
    params, from_preset = _params(ns, preset)
    sizes, sized = apply("prune", preset, {"image_size": ns.image_size}, accepted={"image_size"})
    announce_preset(ns, preset, {**sized, **from_preset})
    config = PruneConfig(dataset=ns.dataset, method=ns.method, keep=ns.keep, out=ns.out, seed=ns.seed,
                         image_size=sizes.get("image_size"), channels=ns.channels, params=params,
                         subset_dir=ns.subset_dir, link=ns.link, stratified=stratified, preset=preset)
    result = run_prune(config)
    if not ns.quiet:
        print(f"wrote {result.out}")
    if ns.subset_dir is not None and not ns.quiet:
        print(f"wrote the kept images to {ns.subset_dir} ({ns.link}s)")
    how = f" (CCS, hard cut {result.stratified['beta']:g})" if result.stratified else ""
    if result.cut_choice and result.cut_choice["val_accuracy"]:
        acc = ", ".join(f"{k} {100 * v:.1f} %" for k, v in result.cut_choice["val_accuracy"].items())
        how += (f"; cut chosen on a held-out {100 * result.cut_choice['val_share']:g} %: {result.cut_choice['chosen']}"
                f" (validation accuracy {acc})")
    if result.rejected:
        how += f"; {result.rejected} unreadable files rejected (listed under 'rejected' in {result.out})"
    print(f"{ns.method} (preset {preset}): kept {result.kept} of {result.total} examples{how}")
    return 0
