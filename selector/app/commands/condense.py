"""`mmselect condense`: learn a synthetic set (DC, DSA, DM, IDM, CAFE), save it with a PNG grid and its settings,
optionally evaluate it with the one protocol and plot a t-SNE of real vs synthetic features."""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import show_progress
from selector.core.io import atomic_write

HELP = """Learn IPC synthetic images per class from the training split of DATASET (digits, folder:PATH, mnist:ROOT,
cifar10:ROOT, ...). Writes OUT (torch file: images, labels, settings, loss history), OUT with .png (one row per
class) and .json (every setting, timing, and with --eval the test accuracy mean ± std). The split is seeded
(--split-seed); --eval trains fresh networks on the synthetic set, picks weights on the validation split and
reports test accuracy."""

METHODS = ("dc", "dsa", "dm", "idm", "cafe")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {text!r}")


def json_dict(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="learn a small synthetic image set (dataset condensation)", description=HELP)
    p.add_argument("--dataset", default="digits", help="digits, folder:PATH, or mnist:ROOT / cifar10:ROOT ... "
                                                       "(default: digits)")
    p.add_argument("--image-size", type=int, help="resize images to N x N (digits default: 28)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 (grey) or 3 (RGB)")
    p.add_argument("--method", "-m", required=True, choices=METHODS)
    p.add_argument("--ipc", type=int, required=True, help="synthetic images per class")
    p.add_argument("--out", "-o", type=Path, required=True, help="output file, e.g. synth.pt")
    p.add_argument("--seed", type=int, default=0, help="seed for everything random (default: 0)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default: 0)")
    p.add_argument("--iterations", type=int, help="outer iterations (default: the method's paper value)")
    p.add_argument("--init", help="noise, real, or a pruning ranker (herding, kcenter, forgetting, ...)")
    p.add_argument("--init-params", type=json_dict, default={},
                   help='settings for a ranker init, as JSON, e.g. \'{"features": "pixels"}\'')
    p.add_argument("--lr-img", type=float, help="synthetic image learning rate (default: the method's)")
    p.add_argument("--batch-real", type=int, help="real images per class per step (default: 256)")
    p.add_argument("--dsa", type=_bool, help="siamese augmentation while matching: on/off (default: the method's)")
    p.add_argument("--width", type=int, default=128, help="ConvNet width (default: 128)")
    p.add_argument("--depth", type=int, default=3, help="ConvNet depth (default: 3)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--eval", action="store_true", help="evaluate the synthetic set with the one protocol")
    p.add_argument("--eval-models", type=int, default=5, help="networks to train for --eval (default: 5)")
    p.add_argument("--eval-epochs", type=int, default=300, help="epochs per network (default: 300)")
    p.add_argument("--eval-dsa", action="store_true", help="train evaluation networks with DSA augmentation")
    p.add_argument("--eval-net", default="convnet", help="evaluation network: convnet or resnet18 (cross-architecture)")
    p.add_argument("--tsne", action="store_true", help="also plot a t-SNE of real vs synthetic features (OUT.tsne.png)")
    return p


def run(ns: argparse.Namespace) -> int:
    import json

    from vision.condense import build_condenser
    from vision.condense.plots import save_grid, save_tsne
    from vision.data import load_dataset, split

    progress = show_progress(ns)
    data = load_dataset(ns.dataset, size=ns.image_size, channels=ns.channels)
    splits = split(data, (0.7, 0.15, 0.15), seed=ns.split_seed)
    settings = {"ipc": ns.ipc, "seed": ns.seed, "progress": progress, "device": ns.device,
                "net_options": {"width": ns.width, "depth": ns.depth}}
    if ns.init_params:
        settings["init_params"] = ns.init_params
    for key, value in (("iterations", ns.iterations), ("init", ns.init), ("lr_img", ns.lr_img),
                       ("batch_real", ns.batch_real), ("dsa", ns.dsa)):
        if value is not None:
            settings[key] = value
    reduction = build_condenser(ns.method, **settings).condense(splits.train)
    out = Path(ns.out)
    reduction.save(out)
    grid = save_grid(reduction.as_data(), out.with_suffix(".png"),
                     title=f"{ns.method} ipc={ns.ipc} on {data.name}")
    report = {"out": str(out), "grid": str(grid), "dataset": ns.dataset, "split_seed": ns.split_seed,
              "train_size": len(splits.train), "settings": reduction.settings,
              "final_loss": reduction.history[-1]["loss"] if reduction.history else None}
    if not ns.quiet:
        print(f"wrote {out} ({len(reduction)} images, {reduction.settings['iterations_per_s']:.2f} it/s) and {grid}")
    if ns.eval:
        from vision.evaluate import EvalConfig, evaluate_reduced

        net_options = {"width": ns.width, "depth": ns.depth} if ns.eval_net.lower().startswith("convnet") else {}
        cfg = EvalConfig(net=ns.eval_net, net_options=net_options, models=ns.eval_models, epochs=ns.eval_epochs,
                         dsa=ns.eval_dsa, seed=ns.seed, device=ns.device, progress=progress)
        result = evaluate_reduced(reduction, splits, cfg)
        report["eval"] = result.to_dict()
        print(f"test accuracy ({ns.eval_net}, {ns.eval_models} nets, {ns.eval_epochs} epochs, "
              f"{'DSA' if ns.eval_dsa else 'no'} augmentation, weights chosen on validation): {result.line()}")
    if ns.tsne:
        from vision.nets import build_net
        from vision.train import TrainConfig, train

        net = build_net("convnet", data.channels, data.num_classes, data.image_size, seed=ns.seed,
                        width=ns.width, depth=ns.depth)
        net = train(net, splits.train, TrainConfig(epochs=10, seed=ns.seed, device=ns.device)).net
        report["tsne"] = str(save_tsne(net, splits.train, reduction.as_data(), out.with_suffix(".tsne.png"),
                                       seed=ns.seed, title=f"{ns.method} ipc={ns.ipc}: real (dots) vs synthetic"))
    atomic_write(out.with_suffix(".json"), [json.dumps(report, indent=2, default=str).encode()])
    return 0
