"""`mmselect demo-data`: build DigitsVQA, the benchmark instruction set made from real handwritten digits."""
from __future__ import annotations

import argparse

from selector.app.commands.common import output_dir, positive_int, seed, share


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="build the DigitsVQA benchmark instruction set",
                       description="Build DigitsVQA from sklearn's handwritten digits: DIR/images/*.png, "
                                   "pretrain/train/val/test.jsonl (LLaVA JSONL) and truth.jsonl (which train "
                                   "records are clean; for measuring selections only).")
    p.add_argument("--out", "-o", type=output_dir, required=True, help="output folder")
    p.add_argument("--n-pretrain", type=positive_int, default=600, help="pretrain records (default 600)")
    p.add_argument("--n-train", type=positive_int, default=1200, help="train records (default 1200)")
    p.add_argument("--n-val", type=positive_int, default=200, help="validation records (default 200)")
    p.add_argument("--n-test", type=positive_int, default=400, help="test records (default 400)")
    p.add_argument("--noise", type=share, default=0.4, help="share of corrupted train records (default 0.4)")
    p.add_argument("--image-size", type=positive_int, default=32, help="side of the upscaled PNGs (default 32)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--mix", action="store_true",
                   help="build DigitsVQA-Mix instead: identify / parity / compare two images / sum of two images, "
                        "train pool skewed 70/10/10/10, val and test balanced (see README)")
    return p


def run(ns: argparse.Namespace) -> int:
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

    if ns.mix:
        from selector.app.demo.mix import MixConfig, build_digits_mix

        meta = build_digits_mix(ns.out, MixConfig(ns.n_pretrain, ns.n_train, ns.n_val, ns.n_test, ns.noise,
                                                  seed=ns.seed, image_size=ns.image_size))
        c, tasks = meta["counts"], meta["train_tasks"]
        print(f"DigitsVQA-Mix in {ns.out}: pretrain {c['pretrain']}, train {c['train']} ("
              + ", ".join(f"{k} {v}" for k, v in tasks.items()) + f"; {sum(meta['corruptions'].values())} "
              "corrupted: " + ", ".join(f"{k} {v}" for k, v in meta["corruptions"].items() if v)
              + f"), val {c['val']}, test {c['test']}")
        return 0

    meta = build_digits_vqa(ns.out, DigitsVQAConfig(ns.n_pretrain, ns.n_train, ns.n_val, ns.n_test, ns.noise,
                                                    ns.seed, ns.image_size))
    c = meta["counts"]
    print(f"DigitsVQA in {ns.out}: pretrain {c['pretrain']}, train {c['train']} "
          f"({sum(meta['corruptions'].values())} corrupted: "
          + ", ".join(f"{k} {v}" for k, v in meta["corruptions"].items()) + f"), val {c['val']}, test {c['test']}")
    return 0
