"""`mmselect finetune`: LoRA fine-tuning and evaluation of a vision-language model (the same flags and code as
`python -m finetune` / `accelerate launch -m finetune`; see selector/app/finetune_cli.py)."""
from __future__ import annotations

import argparse

from selector.app.finetune_cli import DESCRIPTION, DefaultsHelpFormatter, add_arguments


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="LoRA fine-tune and evaluate a vision-language model on an instruction file",
                       description=DESCRIPTION, formatter_class=DefaultsHelpFormatter)
    return add_arguments(p, quiet_flag=False)


def run(ns: argparse.Namespace) -> int:
    from selector.app.finetune_cli import config_from_args, run as run_finetune

    return run_finetune(config_from_args(ns), quiet=ns.quiet)
