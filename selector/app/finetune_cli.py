"""Command line of fine-tuning: flags -> FinetuneConfig -> train().

Three ways in, one set of flags: `python -m finetune` / `accelerate launch -m finetune` (any folder, the package
installed), `accelerate launch finetune` (the folder run as a script, from the repository root), and
`mmselect finetune` (the console script; `selector/app/commands/finetune.py`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from finetune.config import DEFAULT_ATTENTION_PROJECTIONS, MAX_LR, MIN_LR, REFERENCE_LR, REFERENCE_WIDTH, \
    FinetuneConfig
from selector.core.errors import MmselectError

DESCRIPTION = ("LoRA fine-tuning and evaluation of a vision-language model (LLaVA-1.5, LLaVA-OneVision, Qwen2-VL, "
               "Qwen2.5-VL, Idefics3/SmolVLM, Gemma 3 or any chat-template AutoModelForImageTextToText) on an "
               "instruction file. Run with `python -m finetune`, `accelerate launch [accelerate flags] -m finetune`, "
               "or `mmselect finetune`.")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default; flags that are off or unset by default say so in their help instead."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.required or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_arguments(p: argparse.ArgumentParser, *, quiet_flag: bool = True) -> argparse.ArgumentParser:
    """The fine-tuning flags, with FinetuneConfig's defaults (`quiet_flag`: add -q, which `mmselect` has globally)."""
    d = FinetuneConfig(model="", data="", out="")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="hub id or local folder of an image-text-to-text model")
    g.add_argument("--data", required=True, help="training instruction file (LLaVA, ShareGPT, messages, cc_sbu)")
    g.add_argument("--images", type=_folder, help="images root of --data (default: the file's folder)")
    g.add_argument("--eval-data", help="evaluation instruction file: answer loss, and accuracy on short answers")
    g.add_argument("--eval-images", type=_folder, help="images root of --eval-data (default: the file's folder)")
    g.add_argument("--out", required=True, help="output folder: adapter/, metrics.json, checkpoints/")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint (same settings)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without --resume or this, such an --out is refused)")
    g.add_argument("--limit", type=int, help="train on the first N valid records only (default: all)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folder/hub")
    g.add_argument("--max-pixels", type=int,
                   help="Qwen2-VL / Qwen2.5-VL: cap each image at this many pixels (fewer image tokens)")
    g.add_argument("--image-longest-edge", type=int,
                   help="Idefics3 / SmolVLM: resize images to this longest edge before tiling (fewer tiles)")
    g = p.add_argument_group("LoRA")
    g.add_argument("--method", choices=["lora", "full"], default=d.method, help="LoRA adapters or all weights")
    g.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank")
    g.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA scale numerator (scale = alpha / r)")
    g.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="dropout on the LoRA input")
    g.add_argument("--target-modules", default=",".join(DEFAULT_ATTENTION_PROJECTIONS),
                   help="comma-separated linear-layer names inside the language model")
    g.add_argument("--train-vision", action="store_true", help="do not freeze the vision tower (full method)")
    g.add_argument("--merge", action="store_true", help="also save the adapter merged into the model (OUT/merged)")
    g.add_argument("--load-in-4bit", action="store_true",
                   help="QLoRA: load the language model in 4 bits with bitsandbytes (CUDA only)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=d.epochs, help="passes over the training records")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="records per device per micro-batch; the global batch (x processes x --grad-accum) is "
                        "printed at the start")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=d.lr,
                   help=f"learning rate (default: derived from the language model's width, {REFERENCE_LR:g} x "
                        f"{REFERENCE_WIDTH} / hidden size within [{MIN_LR:g}, {MAX_LR:g}], the rule the learned "
                        "selector's labels use)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio, help="share of steps spent warming up")
    g.add_argument("--scheduler", default=d.scheduler, help="transformers scheduler name")
    g.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (0: none)")
    g.add_argument("--max-length", type=int, default=d.max_length,
                   help="tokens per record; longer records are cut (counted) if their first answer starts inside")
    precision = g.add_mutually_exclusive_group()
    precision.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default=d.mixed_precision,
                           help="autocast: auto = bf16 or fp16 on a CUDA GPU, none on CPU")
    precision.add_argument("--bf16", dest="mixed_precision", action="store_const", const="bf16",
                           help="bf16 autocast (CUDA GPUs only; an error on CPU)")
    precision.add_argument("--fp16", dest="mixed_precision", action="store_const", const="fp16",
                           help="fp16 autocast (CUDA GPUs only; an error on CPU)")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, about a third more time")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation, dropout and shuffling")
    g.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads per process (0: auto)")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--save-every", type=int, default=d.save_every, help="optimizer steps between checkpoints (0: none)")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="newest checkpoints kept")
    g.add_argument("--stop-after-steps", type=int,
                   help="stop after N optimizer steps (checkpointed; continue with --resume)")
    g = p.add_argument_group("evaluation and logging")
    g.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help="records per evaluation batch")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="tokens generated per answer")
    g.add_argument("--short-answer-words", type=int, default=d.short_answer_words,
                   help="references of at most this many words are scored by generation")
    g.add_argument("--no-generate", action="store_true", help="skip generation accuracy (loss only)")
    g.add_argument("--report-to", default=d.report_to, choices=["auto", "none", "tensorboard", "wandb", "all"],
                   help="trackers (auto: tensorboard if installed)")
    if quiet_flag:
        g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    return p


def _folder(text: str) -> str:
    """An images root: an existing folder (kept as text, as `FinetuneConfig` takes it). Not `commands.common`'s
    `input_dir`: `commands/finetune` imports this module, so that import would be a cycle."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: {'is a file' if os.path.exists(text) else 'no such folder'}, "
                                         "expected the folder the records' image paths are relative to")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="finetune", description=DESCRIPTION, formatter_class=DefaultsHelpFormatter)
    return add_arguments(p)


def config_from_args(ns: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        model=ns.model, data=ns.data, out=ns.out, images=ns.images, eval_data=ns.eval_data,
        eval_images=ns.eval_images, method=ns.method, lora_r=ns.lora_r, lora_alpha=ns.lora_alpha,
        lora_dropout=ns.lora_dropout, target_modules=tuple(t for t in ns.target_modules.split(",") if t),
        freeze_vision=not ns.train_vision, merge=ns.merge, epochs=ns.epochs, batch_size=ns.batch_size,
        grad_accum=ns.grad_accum, lr=ns.lr, weight_decay=ns.weight_decay, warmup_ratio=ns.warmup_ratio,
        scheduler=ns.scheduler, max_grad_norm=ns.max_grad_norm, max_length=ns.max_length,
        mixed_precision=ns.mixed_precision, gradient_checkpointing=ns.gradient_checkpointing,
        load_in_4bit=ns.load_in_4bit, max_pixels=ns.max_pixels, image_longest_edge=ns.image_longest_edge,
        seed=ns.seed, threads=ns.threads, limit=ns.limit, save_every=ns.save_every,
        keep_checkpoints=ns.keep_checkpoints, resume=ns.resume, overwrite=ns.overwrite,
        stop_after_steps=ns.stop_after_steps, eval_batch_size=ns.eval_batch_size, max_new_tokens=ns.max_new_tokens,
        short_answer_words=ns.short_answer_words, generate=not ns.no_generate, report_to=ns.report_to,
        progress=not ns.quiet, trust_remote_code=ns.trust_remote_code)


def run(config: FinetuneConfig, *, quiet: bool = False) -> int:
    """Train, then print a one-line JSON summary on the main process."""
    from finetune.trainer import train

    result = train(config)
    if not quiet and int(os.environ.get("RANK", "0")) == 0:
        summary = {"out": str(result.out), "steps": result.steps, **{
            k: v for k, v in result.metrics["eval"].items() if k in ("eval_loss", "exact_match", "contains")}}
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(config_from_args(ns), quiet=ns.quiet)
    except MmselectError as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("finetune: interrupted (resume with --resume if checkpoints were saved)", file=sys.stderr)
        return 130


__all__ = ["DefaultsHelpFormatter", "add_arguments", "build_parser", "config_from_args", "main", "run"]
