"""`mmselect condense`: learn a synthetic set (DC, DSA, DM, IDM, CAFE), save it with a PNG grid and its settings,
optionally evaluate it with the one protocol and plot a t-SNE of real vs synthetic features."""
from __future__ import annotations

import argparse

from selector.app.commands.common import (add_preset, announce_preset, choose_preset, nonneg_int, output_file,
                                          positive_float, positive_int, registry_names, seed, show_progress)

HELP = """Learn IPC synthetic images per class from the training split of DATASET (digits, folder:PATH, mnist:ROOT,
cifar10:ROOT, ...). Writes OUT (torch file: images, labels, settings, loss history), OUT with .png (one row per
class) and .json (every setting, timing, and with --eval the test accuracy mean ± std). The split is seeded
(--split-seed); --eval trains fresh networks on the synthetic set, picks weights on the validation split and
reports test accuracy. --preset paper runs the method's paper schedule (DM: 20,000 iterations, hours on a CPU);
--preset fast (the default on a CPU) shrinks images, network, iterations and evaluation so digits finish in minutes.
"""


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
    from vision import NETS
    from vision.condense import CONDENSERS
    from vision.prune import RANKERS

    p = sub.add_parser(name, help="learn a small synthetic image set (dataset condensation)", description=HELP)
    p.add_argument("--dataset", default="digits", help="digits, folder:PATH, or mnist:ROOT / cifar10:ROOT ... "
                                                       "(default: digits)")
    add_preset(p, "condense")
    p.add_argument("--image-size", type=positive_int, help="resize images to N x N (digits: 28 under --preset paper)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 (grey) or 3 (RGB)")
    p.add_argument("--method", "-m", required=True, choices=CONDENSERS.names())
    p.add_argument("--ipc", type=positive_int, required=True, help="synthetic images per class")
    p.add_argument("--out", "-o", type=output_file, required=True, help="output file, e.g. synth.pt")
    p.add_argument("--seed", type=seed, default=0, help="seed for everything random (default: 0)")
    p.add_argument("--split-seed", type=seed, default=0, help="seed of the train/val/test split (default: 0)")
    p.add_argument("--iterations", type=nonneg_int, help="outer iterations (default: the method's paper value)")
    p.add_argument("--init", choices=("noise", "real", *RANKERS.names()),
                   help="noise, real, or a pruning ranker's best IPC images per class (default: the method's)")
    p.add_argument("--init-params", type=json_dict, default={},
                   help='settings for a ranker init, as JSON, e.g. \'{"features": "pixels"}\'')
    p.add_argument("--lr-img", type=positive_float, help="synthetic image learning rate (default: the method's)")
    p.add_argument("--batch-real", type=positive_int, help="real images per class per step (default: 256)")
    p.add_argument("--dsa", type=_bool, help="siamese augmentation while matching: on/off (default: the method's)")
    p.add_argument("--width", type=positive_int, help="ConvNet width (default: 128 under --preset paper)")
    p.add_argument("--depth", type=positive_int, help="ConvNet depth (default: 3)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--eval", action="store_true", help="evaluate the synthetic set with the one protocol")
    p.add_argument("--eval-models", type=positive_int, help="networks to train for --eval (default: 5 under --preset "
                                                                  "paper)")
    p.add_argument("--eval-epochs", type=positive_int, help="epochs per network (default: 300 under --preset paper)")
    p.add_argument("--eval-dsa", action="store_true", help="train evaluation networks with DSA augmentation")
    p.add_argument("--eval-net", default="convnet", type=registry_names(NETS), help="evaluation network: convnet or resnet18 (cross-architecture)")
    p.add_argument("--tsne", action="store_true", help="also plot a t-SNE of real vs synthetic features (OUT.tsne.png)")
    return p


def run(ns: argparse.Namespace) -> int:
    from vision.condense_job import CondenseJob, run_condense

    from vision.presets import apply

    preset = choose_preset(ns)
    keys = ("iterations", "init", "lr_img", "batch_real", "dsa")
    evals = ("eval_models", "eval_epochs") if ns.eval else ()
    given = {k: getattr(ns, k) for k in (*keys, "image_size", "width", "depth", *evals)}
    settings, from_preset = apply("condense", preset, given, method=ns.method,
                                  accepted={*keys, "image_size", "width", "depth", *evals})
    announce_preset(ns, preset, from_preset)
    params = {"init_params": ns.init_params} if ns.init_params else {}
    params.update({k: settings[k] for k in keys if k in settings})
    job = CondenseJob(dataset=ns.dataset, method=ns.method, ipc=ns.ipc, out=ns.out, seed=ns.seed,
                      split_seed=ns.split_seed, image_size=settings.get("image_size"), channels=ns.channels,
                      width=settings.get("width", 128), depth=settings.get("depth", 3), device=ns.device,
                      params=params, eval_models=settings.get("eval_models", 5) if ns.eval else 0,
                      eval_epochs=settings.get("eval_epochs", 300), eval_dsa=ns.eval_dsa, eval_net=ns.eval_net,
                      tsne=ns.tsne, progress=show_progress(ns), preset=preset)
    result = run_condense(job)
    if not ns.quiet:
        print(f"wrote {result.out} (preset {preset}, {result.size} images, {result.report['settings']['iterations_per_s']:.2f} it/s) "
              f"and {result.grid}")
    if result.eval_line is not None:
        print(f"test accuracy (preset {preset}; {ns.eval_net}, {job.eval_models} nets, {job.eval_epochs} epochs, "
              f"{'DSA' if ns.eval_dsa else 'no'} augmentation, weights chosen on validation): {result.eval_line}")
    return 0
