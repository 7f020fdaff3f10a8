"""Validation loss and generation-based short-answer accuracy (normalised exact match and "contains")."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from finetune.answers import contains, exact_match, normalize_answer
from finetune.data import IGNORE, EncodedSet, collate, encode_records
from finetune.modeling import load_with_adapter, stop_token_ids
from finetune.outputs import write_json, write_predictions


@dataclass
class EvalSettings:
    batch_size: int = 16
    max_new_tokens: int = 16
    short_answer_words: int = 3
    generate: bool = True
    progress: bool = False


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict, device, dtype=None) -> dict:
    """The batch on `device`, its floating inputs (the image inputs) in the model's precision."""
    return {k: v.to(device, dtype) if dtype is not None and v.is_floating_point() else v.to(device)
            for k, v in batch.items()}


def _float_dtype(model):
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


@torch.no_grad()
def answer_losses(model, encoded: EncodedSet, pad_id: int, settings: EvalSettings) -> list[tuple[float, int]]:
    """Per example: (sum of answer-token NLL, answer token count). Summed per example, so batching cannot change it."""
    from selector.core.progress import progress_bar

    device, dtype = _device_of(model), _float_dtype(model)
    out = []
    for chunk in progress_bar(list(_batches(encoded.examples, settings.batch_size)), desc="eval loss",
                      disable=not settings.progress, leave=False):
        sums, counts = example_nll(model, _to(collate(chunk, pad_id), device, dtype))
        out.extend(zip(sums.tolist(), counts.tolist()))
    return out


def example_nll(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a collated batch: (sum of answer-token NLL, answer-token count); differentiable (the caller picks
    no_grad or not)."""
    labels = batch.pop("labels")
    logits = model(**batch).logits.float()
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE,
                                            reduction="none")
    mask = shift_labels != IGNORE
    return (nll * mask).sum(1), mask.sum(1)


@torch.no_grad()
def generate_answers(model, processor, encoded: EncodedSet, settings: EvalSettings, examples=None) -> list[str]:
    """Greedy answers to each example's prompt (the conversation up to its last answer)."""
    from selector.core.progress import progress_bar

    tok = processor.tokenizer
    examples = encoded.examples if examples is None else examples
    device, dtype = _device_of(model), _float_dtype(model)
    eos = sorted(stop_token_ids(model, processor))
    answers = []
    for chunk in progress_bar(list(_batches(examples, settings.batch_size)), desc="generate",
                      disable=not settings.progress, leave=False):
        batch = _to(collate(chunk, tok.pad_token_id, prompt_only=True, padding_side="left"), device, dtype)
        seqs = model.generate(**batch, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=eos, pad_token_id=tok.pad_token_id)
        new = seqs[:, batch["input_ids"].shape[1]:]
        answers += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return answers


def is_short(reference: str, max_words: int) -> bool:
    return 0 < len(normalize_answer(reference).split()) <= max_words


def summarize(losses: list[tuple[float, int]], predictions: dict[str, str], encoded_answers: dict[str, str],
              short_answer_words: int) -> dict:
    """Metrics from per-example losses and predictions (kept separate so processes can compute them in shards)."""
    total = sum(s for s, _ in losses)
    tokens = sum(n for _, n in losses)
    metrics = {"eval_examples": len(losses), "eval_tokens": int(tokens),
               "eval_loss": total / tokens if tokens else float("nan")}
    metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50)) if tokens else float("nan")
    if predictions:
        ids = sorted(predictions)
        em = [exact_match(predictions[i], encoded_answers[i]) for i in ids]
        co = [contains(predictions[i], encoded_answers[i]) for i in ids]
        metrics.update({"short_answer_examples": len(ids), "exact_match": sum(em) / len(ids),
                        "contains": sum(co) / len(ids)})
    return metrics


def evaluate_model(model, processor, encoded: EncodedSet, settings: EvalSettings,
                   accelerator=None) -> tuple[dict, dict]:
    """(metrics, predictions by id) on `encoded`; with an accelerator, examples are sharded over its processes."""
    was_training = model.training
    model.eval()
    examples = encoded.examples
    pad = processor.tokenizer.pad_token_id
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        with accelerator.split_between_processes(list(range(len(examples)))) as mine:
            shard = EncodedSet([examples[i] for i in mine])
        losses = gather_object([(i, x) for i, x in zip(mine, answer_losses(model, shard, pad, settings))])
        losses = [x for _, x in sorted(losses, key=lambda t: t[0])]
        short = [ex for ex in shard.examples if is_short(ex.answer, settings.short_answer_words)]
        preds = generate_answers(model, processor, shard, settings, short) if settings.generate and short else []
        pairs = gather_object([(ex.id, p) for ex, p in zip(short, preds)])
    else:
        losses = answer_losses(model, encoded, pad, settings)
        short = [ex for ex in examples if is_short(ex.answer, settings.short_answer_words)]
        preds = generate_answers(model, processor, encoded, settings, short) if settings.generate and short else []
        pairs = list(zip((ex.id for ex in short), preds))
    predictions = dict(pairs)
    metrics = summarize(losses, predictions, {ex.id: ex.answer for ex in examples}, settings.short_answer_words)
    if was_training:
        model.train()
    return metrics, predictions


def evaluate(model: str, data: str, *, adapter: str | None = None, images: str | None = None,
             out: str | None = None, batch_size: int = 16, max_new_tokens: int = 16, short_answer_words: int = 3,
             max_length: int = 512, generate: bool = True, progress: bool = False, trust_remote_code: bool = False,
             flag: str = "--model", max_pixels: int | None = None, image_longest_edge: int | None = None) -> dict:
    """Evaluate a model (hub id or folder), optionally with a LoRA adapter, on an instruction file.

    Returns validation loss on the answers and, for short-answer references, normalised exact match and
    "contains" accuracy of greedy answers. With `out`, writes OUT/metrics.json and OUT/predictions.jsonl.
    """
    net, processor = load_with_adapter(model, adapter, flag=flag, trust_remote_code=trust_remote_code,
                                       max_pixels=max_pixels, image_longest_edge=image_longest_edge)
    encoded = encode_records(data, processor, images=images, max_length=max_length, dedup=False,
                             progress=progress, stop_ids=stop_token_ids(net, processor))
    settings = EvalSettings(batch_size, max_new_tokens, short_answer_words, generate, progress)
    metrics, predictions = evaluate_model(net, processor, encoded, settings)
    metrics["eval_rejected"] = len(encoded.rejected)
    metrics["eval_truncated"] = encoded.truncated
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "metrics.json", {"eval": metrics})
        write_predictions(Path(out) / "predictions.jsonl", encoded, predictions)
    return metrics
