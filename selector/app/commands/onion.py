"""`mmselect onion`: train a ViT with example-, token- and attention-level sparsity ("Peeling the Onion")."""
from __future__ import annotations

import argparse

from selector.app.commands.common import (add_preset, announce_preset, choose_preset, nonneg_float, nonneg_int,
                                          output_dir, positive_float, positive_int, seed, share, show_progress)
from selector.core.errors import MmselectError
from selector.core.io import atomic_write

HELP = """Train a small timm ViT on an image dataset with up to three levels of redundancy reduction (Kong et al.,
AAAI 2023): EXAMPLE level, a dynamic active subset (drop --example-drop at the start, swap the least-forgotten
active examples for set-aside ones every --swap-every epochs); TOKEN level, keep the top --keep-ratio patch tokens by
[CLS] attention in the --prune-blocks and fuse the rest into one token; ATTENTION level, keep each query's strongest
--attn-ratio share of attention connections. --levels switches levels on and off for ablations. Training uses
AdamW (--lr 3e-3, --weight-decay 0.05) by default, because small ViTs under plain SGD can sit at chance for many
epochs; --optimizer sgd (momentum 0.9; try --lr 0.05 --weight-decay 5e-4) is the shared loop's CNN protocol. Writes
OUT/report.json (settings, timing, accuracy, every swap), OUT/swaps.jsonl and OUT/training.png. --preset paper
keeps the defaults below; --preset fast (the default on a CPU) trains a smaller ViT on smaller images for the same
20 epochs (on digits: 28 s and 93.8 % vs 95 s and 89.8 % for paper, BENCHMARKS.md)."""

PAPER = {"image_size": 32, "epochs": 20, "dim": 96, "depth": 6, "heads": 3}  # the defaults --preset fast shrinks

LEVELS = ("example", "token", "attention")


def _levels(text: str) -> tuple[str, ...]:
    names = tuple(x.strip().lower() for x in text.split(",") if x.strip())
    if names in (("none",), ("dense",)):
        return ()
    bad = [x for x in names if x not in LEVELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown level(s) {bad}; use a comma-separated subset of "
                                         f"{','.join(LEVELS)}, or none")
    return names


def _blocks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated block numbers (0-based), got {text!r}")


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train a ViT with example/token/attention sparsity", description=HELP)
    p.add_argument("--dataset", default="digits", help="digits, folder:PATH, mnist:ROOT, cifar10:ROOT, ... "
                                                       "(default: digits)")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="output folder")
    add_preset(p, "onion")
    p.add_argument("--image-size", type=positive_int, help="resize images to this size (default: 32)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="image channels (default: the dataset's)")
    p.add_argument("--levels", type=_levels, default=LEVELS,
                   help="levels to switch on, comma-separated subset of example,token,attention or 'none' "
                        "(default: all three)")
    p.add_argument("--keep-ratio", type=share, default=0.7, help="token level: share of patch tokens kept (0.7)")
    p.add_argument("--prune-blocks", type=_blocks, help="token level: blocks that prune (default: 1/4, 1/2, 3/4 depth)")
    p.add_argument("--no-fuse", action="store_true", help="token level: drop pruned tokens instead of fusing them")
    p.add_argument("--attn-ratio", type=share, default=0.3,
                   help="attention level: share of each query's connections kept (0.3)")
    p.add_argument("--attn-blocks", type=_blocks, help="attention level: blocks that sparsify (default: all)")
    p.add_argument("--example-drop", type=share, default=0.2, help="example level: share set aside at start (0.2)")
    p.add_argument("--swap-every", type=positive_int, default=5, help="example level: epochs between swaps (default: 5)")
    p.add_argument("--max-swaps", type=nonneg_int, default=5, help="example level: most swaps (default: 5)")
    p.add_argument("--swap-share", type=share, default=0.5,
                   help="example level: examples swapped per update, as a share of the set-aside pool (0.5)")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: 20)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="adamw (default; suits ViTs) or sgd (momentum 0.9)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="learning rate, x0.1 at half-way (default: 3e-3, for AdamW)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.05,
                   help="weight decay (default: 0.05, decoupled under AdamW; use ~5e-4 with sgd)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch size (default: 64)")
    p.add_argument("--dim", type=positive_int, help="ViT width (default: 96)")
    p.add_argument("--depth", type=positive_int, help="ViT blocks (default: 6)")
    p.add_argument("--heads", type=positive_int, help="attention heads (default: 3)")
    p.add_argument("--patch", type=positive_int, default=4, help="patch size (default: 4)")
    p.add_argument("--split", type=share, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                   help="train/val/test fractions (default: 0.7 0.15 0.15)")
    p.add_argument("--seed", type=seed, default=0, help="seed for weights, shuffling and the example level (0)")
    p.add_argument("--split-seed", type=seed, default=0, help="seed of the train/val/test split (default: 0)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    return p


def run(ns: argparse.Namespace) -> int:
    import json

    from selector.core.io import check_outputs
    from vision.data import dataset_files, load_dataset, rejected_entries, split

    check_outputs(dataset_files(ns.dataset), [ns.out / "report.json", ns.out / "swaps.jsonl", ns.out / "training.png"])
    from vision.onion.examples import ExampleLevelConfig
    from vision.onion.plot import plot_training
    from vision.onion.run import OnionConfig, run_onion
    from vision.onion.vit import OnionViTConfig

    from vision.presets import apply

    preset = choose_preset(ns)
    settings, from_preset = apply("onion", preset, {k: getattr(ns, k) for k in PAPER})
    announce_preset(ns, preset, from_preset)
    ns.__dict__.update({k: settings.get(k, v) for k, v in PAPER.items()})
    levels = set(ns.levels)
    data = load_dataset(ns.dataset, size=ns.image_size, channels=ns.channels)
    splits = split(data, tuple(ns.split), seed=ns.split_seed)
    try:
        vit = OnionViTConfig(img_size=data.image_size, patch_size=ns.patch, in_chans=data.channels,
                             num_classes=data.num_classes, embed_dim=ns.dim, depth=ns.depth, num_heads=ns.heads,
                             keep_ratio=ns.keep_ratio if "token" in levels else 1.0, prune_blocks=ns.prune_blocks,
                             fuse_pruned=not ns.no_fuse,
                             attn_ratio=ns.attn_ratio if "attention" in levels else 1.0, attn_blocks=ns.attn_blocks)
        example = ExampleLevelConfig(drop=ns.example_drop if "example" in levels else 0.0, every=ns.swap_every,
                                     max_swaps=ns.max_swaps, swap_share=ns.swap_share, seed=ns.seed)
        config = OnionConfig(vit=vit, example=example, epochs=ns.epochs, optimizer=ns.optimizer, lr=ns.lr,
                             weight_decay=ns.weight_decay, batch_size=ns.batch_size,
                             seed=ns.seed, device=ns.device, progress=show_progress(ns))
    except ValueError as exc:
        raise MmselectError(f"invalid onion settings: {exc}") from exc
    if data.image_size % ns.patch:
        raise MmselectError(f"--patch {ns.patch} does not divide --image-size {data.image_size}")
    result = run_onion(splits, config)
    ns.out.mkdir(parents=True, exist_ok=True)
    summary = {"preset": preset, **result.summary()}
    if data.rejected:  # dataset files the loader could not use, each with its reason
        summary["rejected"] = rejected_entries(data)
    atomic_write(ns.out / "report.json", [json.dumps(summary, indent=1, default=str).encode()])
    atomic_write(ns.out / "swaps.jsonl", [(json.dumps(s.as_dict()) + "\n").encode() for s in result.swaps])
    plot_training(result, ns.out / "training.png")
    if not ns.quiet:
        print(f"wrote {ns.out / 'report.json'}, {ns.out / 'swaps.jsonl'}, {ns.out / 'training.png'}")
    print(f"preset {preset}; levels: {','.join(config.levels) or 'none (dense)'}; {result.train_seconds:.1f} s training, "
          f"{result.throughput:.1f} img/s processed, {result.epoch_throughput:.1f} img/s per full epoch; "
          f"val {result.val_accuracy:.4f}, test {result.test_accuracy:.4f}; {len(result.swaps)} swaps")
    return 0
