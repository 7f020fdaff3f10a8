"""`mmselect demo-models`: build the offline demo models from a DigitsVQA folder.

MODELS/clip/      a small open_clip model trained on the clean pretrain.jsonl (load with
                  `--clip-model local-dir:MODELS/clip`)
MODELS/vlm-base/  a small VLM, when `selector.app.demo.vlm.build_vlm_base` is installed

Each builder is skipped when its output is already built from the same data and settings.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import input_path, output_dir, positive_int, seed, show_progress
from selector.core.errors import MmselectError

HELP = __doc__


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train the small offline demo models (CLIP, VLM) on DigitsVQA",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=input_path, required=True, help="DigitsVQA folder (from `mmselect demo-data`)")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="models folder to write")
    p.add_argument("--seed", type=seed, default=0, help="training seed (default 0)")
    p.add_argument("--clip-epochs", type=positive_int, default=None, help="demo CLIP epochs (default: the built-in schedule)")
    p.add_argument("--force", action="store_true", help="rebuild even when the outputs exist")
    p.add_argument("--only", choices=["clip", "vlm"], help="build just one model")
    return p


def _builders():
    """(name, build function) pairs; a builder whose module is not installed is left out."""
    import importlib
    import importlib.util

    out = [("clip", _build_clip)]
    if importlib.util.find_spec("finetune") is not None and importlib.util.find_spec("selector.app.demo.vlm"):
        module = importlib.import_module("selector.app.demo.vlm")
        if hasattr(module, "build_vlm_base"):
            out.append(("vlm", lambda data, models, seed, progress, force, ns:
                        module.build_vlm_base(data, models / "vlm-base", seed=seed, progress=progress)))
    return out


def _build_clip(data: Path, models: Path, seed: int, progress: bool, force: bool, ns) -> str:
    from dataclasses import replace

    from selector.app.demo.clip import DemoClipConfig, is_built, train_demo_clip

    config = DemoClipConfig(seed=seed)
    if ns.clip_epochs:
        config = replace(config, epochs=ns.clip_epochs)
    out = models / "clip"
    if not force and is_built(out, data, config):
        return f"clip: up to date in {out}"
    train_demo_clip(data, out, config, progress=progress)
    return f"clip: trained -> {out} (use --clip-model local-dir:{out})"


def run(ns: argparse.Namespace) -> int:
    if not (ns.data / "pretrain.jsonl").is_file():
        raise MmselectError(f"{ns.data} has no pretrain.jsonl; build DigitsVQA first with "
                            f"`mmselect demo-data --out {ns.data}`")
    ns.out.mkdir(parents=True, exist_ok=True)
    for name, build in _builders():
        if ns.only and ns.only != name:
            continue
        msg = build(ns.data, ns.out, ns.seed, show_progress(ns), ns.force, ns)
        if not ns.quiet:
            print(msg if isinstance(msg, str) else f"{name}: built -> {msg}")
    return 0
