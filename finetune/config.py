"""Typed settings and results of one fine-tuning run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class FinetuneConfig:
    """One fine-tuning run: model, data, LoRA, optimisation, checkpoints and evaluation.

    `batch_size` is the GLOBAL batch per optimizer step before accumulation: with N processes each one takes
    batch_size / N of it, so a run's results do not depend on how many processes accelerate starts.
    """

    model: str
    data: str
    out: str
    images: str | None = None  # images root of `data` (default: the data file's folder)
    eval_data: str | None = None
    eval_images: str | None = None
    # LoRA ("lora") or full fine-tuning ("full", used for the tiny VLM's stage 1)
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_ATTENTION_PROJECTIONS  # matched inside the language model only
    freeze_vision: bool = True
    merge: bool = False  # also save the adapter merged into a full model under OUT/merged
    # optimisation
    epochs: float = 3.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"  # any transformers.get_scheduler name
    max_grad_norm: float = 1.0
    max_length: int = 512
    mixed_precision: str = "auto"  # "auto": bf16 on a GPU that supports it, fp16 on other GPUs, none on CPU
    seed: int = 0
    threads: int = 0  # torch CPU threads per process (0: torch's default, divided among local processes)
    limit: int | None = None  # train on the first `limit` valid records only
    # checkpoints
    save_every: int = 0  # optimizer steps between checkpoints (0: none)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the newest checkpoint in OUT/checkpoints
    stop_after_steps: int | None = None  # stop early (schedule unchanged), e.g. to time-box a run; resume later
    # evaluation
    eval_batch_size: int = 16
    max_new_tokens: int = 16
    short_answer_words: int = 3  # references of at most this many words count for generation accuracy
    generate: bool = True
    # logging
    report_to: str = "auto"  # "auto" (tensorboard if installed), "none", "tensorboard", "wandb", "all"
    progress: bool = True
    trust_remote_code: bool = False
    model_flag: str = "--model"  # the CLI flag named in a "model not available" error

    def __post_init__(self):
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be 'lora' or 'full', got {self.method!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        self.target_modules = tuple(self.target_modules)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FinetuneResult:
    """What a run produced: where the adapter (or full model) is, its metrics, and how long it took."""

    out: Path
    adapter_path: Path | None  # OUT/adapter for LoRA runs
    model_path: Path | None  # OUT/merged (merge=True) or OUT/model (method="full")
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    steps: int = 0
    rejected: dict = field(default_factory=dict)  # {"train": n, "eval": n}
