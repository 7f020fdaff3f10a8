"""`train(config)`: LoRA (or full) fine-tuning of a vision-language model through accelerate, then evaluation.

The same function serves `python -m finetune`, `accelerate launch finetune` and the learned selector's label loop.
Under `accelerate launch` it runs data-parallel over the configured processes with no code change.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path

import torch

from finetune.config import FinetuneConfig, FinetuneResult, lr_for_width, text_width
from finetune.data import IGNORE, EncodedSet, collate, encode_records
from finetune.evaluation import EvalSettings, evaluate_model
from finetune.modeling import (load_model, prepare_model, quantization_4bit, save_outputs, stop_token_ids,
                               trainable_summary)
from finetune.outputs import write_json, write_predictions, write_rejected
from selector.core.errors import MmselectError
from selector.core.io import atomic_path, check_output_dir

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


def _mixed_precision(setting: str) -> str:
    """accelerate's mixed-precision mode: bf16/fp16 autocast is for CUDA GPUs; asked for on CPU it is an error."""
    cuda = torch.cuda.is_available()
    if setting == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if setting != "no" and not cuda:
        raise MmselectError(f"--{setting} needs a CUDA GPU; none is visible here, so drop the flag (CPU training "
                            "runs in float32)")
    if setting == "bf16" and not torch.cuda.is_bf16_supported():
        raise MmselectError("--bf16: this GPU does not support bfloat16; use --fp16")
    return setting


def _trackers(setting: str) -> list[str]:
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    if setting == "none":
        return []
    if setting == "auto":  # only local trackers unasked: wandb would upload, so it must be named explicitly
        return ["tensorboard"] if is_tensorboard_available() else []
    if setting == "all":
        return [n for n, ok in (("tensorboard", is_tensorboard_available()), ("wandb", is_wandb_available())) if ok]
    return [setting]


def _set_threads(threads: int, accelerator) -> None:
    """Avoid oversubscribing CPU cores: N local processes each get cores / N threads unless told otherwise."""
    if accelerator.device.type != "cpu":
        return
    if threads <= 0:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if local <= 1:
            return
        threads = max(1, (os.cpu_count() or 1) // local)
    torch.set_num_threads(threads)


def _derived_lr(model, name: str) -> tuple[float, str]:
    """The default LoRA rate from the language model's width (the rule the learned selector's labels use)."""
    width = text_width(model.config)
    if width is None:
        raise MmselectError(f"model {name!r}: its config names no hidden size to derive a learning rate from; "
                            "pass --lr")
    return lr_for_width(width)


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled record order of one epoch: a function of (seed, epoch) only, so a resumed run sees the same."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _micro_batches(n: int, batch_size: int, seed: int, start: int, total: int):
    """Global micro-batches number start..total-1 as (epoch, record indices). Epochs restart the shuffle."""
    per_epoch = math.ceil(n / batch_size)
    epoch, order = -1, []
    for k in range(start, total):
        e, pos = divmod(k, per_epoch)
        if e != epoch:
            epoch, order = e, _epoch_order(n, seed, e)
        yield e, order[pos * batch_size:(pos + 1) * batch_size]


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    root = out / "checkpoints"
    found = []
    if root.is_dir():
        for p in root.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and (p / "trainer_state.json").is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def batch_nll(model, batch: dict, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of answer-token NLL, answer-token count) of one batch; summed so processes can share one normaliser."""
    labels = batch.pop("labels")
    if dtype is not None:  # image inputs in the model's precision
        batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
    logits = model(**batch).logits
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                            shift_labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return nll, (shift_labels != IGNORE).sum()


# What a previous run leaves in OUT; a new run refuses to write over them unless resumed or told to overwrite.
RUN_OUTPUTS = ("checkpoints", "adapter", "merged", "model", "metrics.json", "predictions.jsonl", "rejected.jsonl",
               "logs")
# Settings a checkpoint's trainable weights depend on: resuming with others cannot load them.
WEIGHT_SETTINGS = ("model", "method", "lora_r", "lora_alpha", "target_modules", "freeze_vision")


def _check_out(config: FinetuneConfig, out: Path, is_main: bool) -> None:
    """Never silently wipe a previous run: --resume continues it, --overwrite removes its outputs, else refuse."""
    previous = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if out.exists() and not out.is_dir():
        raise MmselectError(f"--out {out} is a file; pass a folder")
    if not previous or config.resume:
        if config.resume and previous and not _checkpoints(out):
            raise MmselectError(f"--resume: {out} holds a run but no checkpoint to continue from (it finished, or "
                                "saved none); pass --overwrite to start it again")
        return
    if not config.overwrite:
        raise MmselectError(f"--out {out} already holds a run ({', '.join(previous)}); pass --resume to continue "
                            "it from its newest checkpoint or --overwrite to replace it")
    for name in previous:  # a previous run's model (OUT/merged) may be this run's --model: never delete an input
        inputs = [config.model, config.data, config.images, config.eval_data, config.eval_images]
        check_output_dir([p for p in inputs if p and os.path.exists(p)], out / name, "--out",
                         f"--overwrite would delete {out / name} with the previous run")
    if is_main:
        for name in previous:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _weight_settings(config: FinetuneConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items() if k in WEIGHT_SETTINGS}


class _Run:
    """State of one training run (kept small: the loop itself lives in `train`)."""

    def __init__(self, config: FinetuneConfig):
        self.config = config
        self.out = Path(config.out)
        self.step = 0
        self.history: list[dict] = []  # one entry per optimizer step: step, epoch, loss, lr, tokens

    def state(self, processes: int) -> dict:
        return {"step": self.step, "history": self.history, "processes": processes,
                "settings": _weight_settings(self.config)}


def _save_checkpoint(accelerator, run: _Run) -> None:
    out = run.out / "checkpoints"
    final = out / f"step-{run.step}"
    tmp = out / f".tmp-step-{run.step}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", run.state(accelerator.num_processes))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)  # a checkpoint is only visible once complete
        for _, old in _checkpoints(run.out)[:-max(1, run.config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(accelerator, run: _Run, trainable: dict[str, tuple]) -> bool:
    found = _checkpoints(run.out)
    if not found:
        log.warning("--resume: no checkpoint under %s/checkpoints; starting from step 0", run.out)
        return False
    step, path = found[-1]
    state = json.loads((path / "trainer_state.json").read_text())
    saved_settings, settings = state.get("settings"), _weight_settings(run.config)
    if saved_settings is not None and saved_settings != settings:
        diff = ", ".join(f"{k} {saved_settings.get(k)!r} -> {settings[k]!r}" for k in settings
                         if saved_settings.get(k) != settings[k])
        raise MmselectError(f"--resume: {path} was written with other settings ({diff}); resume with the same "
                            "ones, or pass --overwrite to start again")
    if state.get("processes", 1) != accelerator.num_processes:
        # Weight names carry the process wrapper's prefix and the RNG states are per process.
        raise MmselectError(f"{path} was written by {state.get('processes', 1)} process(es); resume it with the "
                            f"same number (this run has {accelerator.num_processes})")
    saved = path / "model.safetensors"
    if saved.is_file():
        from safetensors import safe_open

        with safe_open(str(saved), "pt") as f:
            keys = set(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
        if keys != set(trainable) or any(shapes[k] != trainable[k] for k in keys):
            raise MmselectError(f"--resume: {path} holds other trainable weights than this run ({len(keys)} vs "
                                f"{len(trainable)} tensors, or other shapes): it was written with other LoRA or "
                                "method settings; resume with those, or pass --overwrite to start again")
    accelerator.load_state(str(path), strict=False)  # checkpoints hold trainable weights only
    run.step, run.history = state["step"], state["history"]
    log.info("resumed from %s (step %d)", path, run.step)
    return True


OPTIMIZER_STATE = "optimizer-state.safetensors"


def save_optimizer_state(net, optimizer, path: Path) -> None:
    """AdamW's first and second moments of every trainable parameter, by parameter name (`<name>.exp_avg`,
    `<name>.exp_avg_sq`), with its betas and eps as metadata: what LESS's Adam-preconditioned gradients need."""
    from safetensors.torch import save_file

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    state = inner.state
    tensors = {}
    for name, p in net.named_parameters():
        if p.requires_grad and p in state and "exp_avg" in state[p]:
            tensors[f"{name}.exp_avg"] = state[p]["exp_avg"].detach().cpu().contiguous()
            tensors[f"{name}.exp_avg_sq"] = state[p]["exp_avg_sq"].detach().cpu().contiguous()
    group = inner.param_groups[0]
    meta = {"beta1": str(group["betas"][0]), "beta2": str(group["betas"][1]), "eps": str(group["eps"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def train(config: FinetuneConfig, eval_cache: dict | None = None) -> FinetuneResult:
    """Fine-tune `config.model` on `config.data`, evaluate on `config.eval_data`, write OUT/metrics.json.

    LoRA runs save only the adapter (OUT/adapter, safetensors); `merge` adds OUT/merged; full runs save OUT/model.
    The caller's torch thread count is restored afterwards (the selector calls this many times in one process).
    `eval_cache`, a dict the caller owns, keeps the encoded eval set between runs that evaluate on the same file
    with the same model (the selector's label runs: encoding 200 eval examples costs more than training on 50).
    """
    threads = torch.get_num_threads()
    try:
        return _train(config, eval_cache)
    finally:
        torch.set_num_threads(threads)


def _eval_key(config: FinetuneConfig) -> tuple:
    """What the encoded eval set depends on: the file (and its size and mtime), its images, the model, the length."""
    stat = Path(config.eval_data).stat()
    return (str(Path(config.eval_data).resolve()), stat.st_size, stat.st_mtime_ns, config.eval_images, config.model,
            config.max_length, config.trust_remote_code, config.max_pixels, config.image_longest_edge)


def _train(config: FinetuneConfig, eval_cache: dict | None = None) -> FinetuneResult:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
    from selector.core.progress import progress_bar
    from transformers import get_scheduler

    t_start = time.perf_counter()
    out = Path(config.out)
    mixed_precision = _mixed_precision(config.mixed_precision)
    if config.load_in_4bit:
        quantization_4bit()  # no CUDA or no bitsandbytes: the one-line error before any work
    # Launched as several processes (torchrun / `accelerate launch --multi_gpu`) on a machine without CUDA: run them
    # as accelerate's MULTI_CPU (gloo) group instead of as unrelated single-process runs.
    cpu_group = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # Full fine-tuning may leave the vision tower unused in a text-only batch; DDP must then not wait for its grads.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=config.method == "full")
    accelerator = Accelerator(cpu=cpu_group, mixed_precision=mixed_precision,
                              kwargs_handlers=[ddp],
                              log_with=_trackers(config.report_to) or None,
                              project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    world, rank = accelerator.num_processes, accelerator.process_index
    _set_threads(config.threads, accelerator)
    set_seed(config.seed)
    show = config.progress and accelerator.is_local_main_process
    _check_out(config, out, accelerator.is_main_process)
    accelerator.wait_for_everyone()

    model, processor = load_model(config.model, flag=config.model_flag, trust_remote_code=config.trust_remote_code,
                                  load_in_4bit=config.load_in_4bit, max_pixels=config.max_pixels,
                                  image_longest_edge=config.image_longest_edge)
    pad_id = processor.tokenizer.pad_token_id
    if pad_id is None:
        raise MmselectError(f"model {config.model!r}: its tokenizer has no pad token; set one in tokenizer_config")
    lr, lr_how = (config.lr, "set") if config.lr is not None else _derived_lr(model, config.model)
    encoding = dict(max_length=config.max_length, stop_ids=stop_token_ids(model, processor))
    train_set = encode_records(config.data, processor, images=config.images, limit=config.limit, progress=show,
                               **encoding)
    if len(train_set) == 0:
        raise MmselectError(f"{config.data}: no usable training records ({len(train_set.rejected)} rejected; "
                            f"see {out / 'rejected.jsonl'})")
    key = _eval_key(config) if config.eval_data and eval_cache is not None else None
    if key is not None and key in eval_cache:
        eval_set = eval_cache[key]
    else:
        eval_set = (encode_records(config.eval_data, processor, images=config.eval_images, dedup=False,
                                   progress=show, **encoding)
                    if config.eval_data else EncodedSet([]))
        if key is not None:
            eval_cache.clear()  # one eval set at a time: the label runs of one selector share one
            eval_cache[key] = eval_set
    t_data = time.perf_counter()

    model = prepare_model(model, method=config.method, lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, target_modules=config.target_modules,
                          freeze_vision=config.freeze_vision, gradient_checkpointing=config.gradient_checkpointing)
    params_info = trainable_summary(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    n = len(train_set)
    global_batch = config.batch_size * world  # per device x processes, per micro-batch
    per_epoch = math.ceil(n / global_batch)
    total_micro = math.ceil(config.epochs * per_epoch)
    total_steps = math.ceil(total_micro / config.grad_accum)
    try:
        scheduler = get_scheduler(config.scheduler, optimizer,
                                  num_warmup_steps=round(config.warmup_ratio * total_steps),
                                  num_training_steps=total_steps)
    except ValueError as exc:  # an unknown scheduler name: transformers lists the known ones
        raise MmselectError(f"--scheduler {config.scheduler!r}: {str(exc).splitlines()[0]}") from None
    # The scheduler is stepped here once per optimizer step, not through accelerator.prepare (which would step it
    # once per process); it is registered so checkpoints carry it.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    trainable = {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad}
    accelerator.register_save_state_pre_hook(
        lambda models, weights, _dir: weights.__setitem__(0, {k: v for k, v in weights[0].items() if k in trainable}))
    dtype = next(p.dtype for p in accelerator.unwrap_model(model).parameters() if p.is_floating_point())

    run = _Run(config)
    if config.resume:
        _load_checkpoint(accelerator, run, trainable)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_rejected(out / "rejected.jsonl", train_set.rejected)
        # A run without progress is one of many (label runs, evaluation fine-tunes): its settings line is detail.
        (log.info if config.progress else log.debug)(
            "batch: %d per device x %d process(es) x %d accumulation = global batch %d; lr %g (%s); "
            "%d records, %d truncated to max_length %d", config.batch_size, world, config.grad_accum,
            global_batch * config.grad_accum, lr, lr_how, n, train_set.truncated, config.max_length)
    trackers = _trackers(config.report_to)
    if trackers:
        accelerator.init_trackers("finetune", config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                      for k, v in config.to_dict().items()})

    stop = total_steps if config.stop_after_steps is None else min(total_steps, config.stop_after_steps)
    model.train()
    bar = progress_bar(total=total_steps, initial=run.step, desc="finetune", disable=not show)
    batches = _micro_batches(n, global_batch, config.seed, run.step * config.grad_accum, total_micro)
    t_train = time.perf_counter()
    while run.step < stop:
        group = [b for _, b in zip(range(config.grad_accum), batches)]
        epoch = None
        step_nll = torch.zeros((), device=accelerator.device)
        step_tokens = torch.zeros((), device=accelerator.device)
        for j, (epoch, idx) in enumerate(group):
            mine = idx[rank::world]
            weight = 1.0
            if not mine:  # fewer records than processes: take part in the all-reduce with a zero-weight sample
                mine, weight = idx[:1], 0.0
            batch = {k: v.to(accelerator.device) for k, v in
                     collate([train_set.examples[i] for i in mine], pad_id).items()}
            # The loss is normalised by the answer tokens of the whole global micro-batch (all processes), so the
            # gradient equals the single-process one; DDP averages over processes, hence the factor `world`.
            global_tokens = sum(int((train_set.examples[i].labels[1:] != IGNORE).sum()) for i in idx)
            sync = j == len(group) - 1
            with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
                nll, tokens = batch_nll(model, batch, dtype)
                loss = nll * weight * world / max(global_tokens, 1) / len(group)
                accelerator.backward(loss)
            step_nll += nll.detach() * weight
            step_tokens += tokens * weight
        if config.max_grad_norm and config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.step += 1
        tot_nll, tot_tokens = accelerator.reduce(torch.stack([step_nll, step_tokens.float()]), "sum").tolist()
        entry = {"step": run.step, "epoch": epoch, "loss": tot_nll / max(tot_tokens, 1.0),
                 "lr": scheduler.get_last_lr()[0], "tokens": int(tot_tokens)}
        run.history.append(entry)
        if trackers:
            accelerator.log({"train/loss": entry["loss"], "train/lr": entry["lr"]}, step=run.step)
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.4f}")
        if config.save_every and run.step % config.save_every == 0 and run.step < total_steps:
            _save_checkpoint(accelerator, run)
    bar.close()
    t_trained = time.perf_counter()
    finished = run.step >= total_steps
    if not finished:
        _save_checkpoint(accelerator, run)

    net = accelerator.unwrap_model(model)
    if finished and config.save_optimizer_state and accelerator.is_main_process:
        save_optimizer_state(net, optimizer, out / OPTIMIZER_STATE)
    eval_metrics, predictions = {}, {}
    if finished and len(eval_set):
        settings = EvalSettings(config.eval_batch_size, config.max_new_tokens, config.short_answer_words,
                                config.generate, show)
        eval_metrics, predictions = evaluate_model(net, processor, eval_set, settings, accelerator)
        eval_metrics["eval_rejected"] = len(eval_set.rejected)
        eval_metrics["eval_truncated"] = eval_set.truncated
    t_eval = time.perf_counter()
    if trackers and eval_metrics:
        accelerator.log({f"eval/{k}": v for k, v in eval_metrics.items() if isinstance(v, (int, float))},
                        step=run.step)

    adapter_path = model_path = None
    accelerator.wait_for_everyone()
    if finished and accelerator.is_main_process:
        adapter_path, model_path = save_outputs(net, processor, out, method=config.method, merge=config.merge)
    t_end = time.perf_counter()
    losses = [h["loss"] for h in run.history]
    train_metrics = {"steps": run.step, "total_steps": total_steps, "finished": finished,
                     "examples": n, "epochs": config.epochs, "processes": world,
                     "final_loss": losses[-1] if losses else float("nan"),
                     "first_loss": losses[0] if losses else float("nan"),
                     "mean_loss": sum(losses) / len(losses) if losses else float("nan"),
                     "rejected": len(train_set.rejected), "truncated": train_set.truncated,
                     "global_batch": global_batch * config.grad_accum, "lr": lr, "lr_how": lr_how, **params_info}
    timings = {"load_and_encode_s": t_data - t_start, "train_s": t_trained - t_train,
               "eval_s": t_eval - t_trained, "save_s": t_end - t_eval, "total_s": t_end - t_start}
    metrics = {"train": train_metrics, "eval": eval_metrics}
    if accelerator.is_main_process:
        write_json(out / "metrics.json", {**metrics, "history": run.history, "timings": timings,
                                          "config": config.to_dict()})
        if predictions:
            write_predictions(out / "predictions.jsonl", eval_set, predictions)
    if trackers:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return FinetuneResult(out=out, adapter_path=adapter_path, model_path=model_path, metrics=metrics,
                          timings=timings, steps=run.step,
                          rejected={"train": len(train_set.rejected), "eval": len(eval_set.rejected)})
