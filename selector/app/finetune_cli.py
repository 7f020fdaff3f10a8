"""Command line of `python -m finetune` / `accelerate launch finetune`: flags -> FinetuneConfig -> train()."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from finetune.config import DEFAULT_ATTENTION_PROJECTIONS, FinetuneConfig
from selector.core.errors import MmselectError


def build_parser() -> argparse.ArgumentParser:
    d = FinetuneConfig(model="", data="", out="")
    p = argparse.ArgumentParser(
        prog="finetune", description="LoRA fine-tuning and evaluation of a vision-language model on an instruction "
        "file. Run with `python -m finetune` or `accelerate launch [accelerate flags] finetune` (multi-process).")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="hub id or local folder of an image-text-to-text model")
    g.add_argument("--data", required=True, help="training instruction file (LLaVA, ShareGPT, messages, cc_sbu)")
    g.add_argument("--images", help="images root of --data (default: the file's folder)")
    g.add_argument("--eval-data", help="evaluation instruction file: answer loss, and accuracy on short answers")
    g.add_argument("--eval-images", help="images root of --eval-data")
    g.add_argument("--out", required=True, help="output folder: adapter/, metrics.json, checkpoints/")
    g.add_argument("--limit", type=int, help="train on the first N valid records only")
    g.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folder/hub")
    g = p.add_argument_group("LoRA")
    g.add_argument("--method", choices=["lora", "full"], default=d.method)
    g.add_argument("--lora-r", type=int, default=d.lora_r)
    g.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
    g.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    g.add_argument("--target-modules", default=",".join(DEFAULT_ATTENTION_PROJECTIONS),
                   help="comma-separated linear-layer names inside the language model (default: %(default)s)")
    g.add_argument("--train-vision", action="store_true", help="do not freeze the vision tower (full method)")
    g.add_argument("--merge", action="store_true", help="also save the adapter merged into the model (OUT/merged)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=float, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch per step, split over processes")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    g.add_argument("--scheduler", default=d.scheduler, help="transformers scheduler name (default: %(default)s)")
    g.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    g.add_argument("--max-length", type=int, default=d.max_length)
    g.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default=d.mixed_precision)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads per process (0: auto)")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--save-every", type=int, default=d.save_every, help="optimizer steps between checkpoints")
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    g.add_argument("--stop-after-steps", type=int, help="stop after N optimizer steps (checkpointed; resume later)")
    g = p.add_argument_group("evaluation and logging")
    g.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    g.add_argument("--short-answer-words", type=int, default=d.short_answer_words,
                   help="references of at most this many words are scored by generation")
    g.add_argument("--no-generate", action="store_true", help="skip generation accuracy (loss only)")
    g.add_argument("--report-to", default=d.report_to, choices=["auto", "none", "tensorboard", "wandb", "all"])
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(ns: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        model=ns.model, data=ns.data, out=ns.out, images=ns.images, eval_data=ns.eval_data,
        eval_images=ns.eval_images, method=ns.method, lora_r=ns.lora_r, lora_alpha=ns.lora_alpha,
        lora_dropout=ns.lora_dropout, target_modules=tuple(t for t in ns.target_modules.split(",") if t),
        freeze_vision=not ns.train_vision, merge=ns.merge, epochs=ns.epochs, batch_size=ns.batch_size,
        grad_accum=ns.grad_accum, lr=ns.lr, weight_decay=ns.weight_decay, warmup_ratio=ns.warmup_ratio,
        scheduler=ns.scheduler, max_grad_norm=ns.max_grad_norm, max_length=ns.max_length,
        mixed_precision=ns.mixed_precision, seed=ns.seed, threads=ns.threads, limit=ns.limit, save_every=ns.save_every,
        keep_checkpoints=ns.keep_checkpoints, resume=ns.resume, stop_after_steps=ns.stop_after_steps,
        eval_batch_size=ns.eval_batch_size, max_new_tokens=ns.max_new_tokens,
        short_answer_words=ns.short_answer_words, generate=not ns.no_generate, report_to=ns.report_to,
        progress=not ns.quiet, trust_remote_code=ns.trust_remote_code)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(ns)
        from finetune.trainer import train

        result = train(config)
    except (MmselectError, ValueError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("finetune: interrupted (resume with --resume if checkpoints were saved)", file=sys.stderr)
        return 130
    if not ns.quiet and int(os.environ.get("RANK", "0")) == 0:
        summary = {"out": str(result.out), "steps": result.steps, **{
            k: v for k, v in result.metrics["eval"].items() if k in ("eval_loss", "exact_match", "contains")}}
        print(json.dumps(summary))
    return 0


__all__ = ["build_parser", "config_from_args", "main"]
