"""Typed settings and results of one fine-tuning run."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from selector.core.errors import SettingsError

DEFAULT_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")

REFERENCE_LR, REFERENCE_WIDTH = 2e-4, 4096  # LLaVA-1.5-7B's LoRA rate at its language model's width
MIN_LR, MAX_LR = 5e-5, 3e-3


def text_width(config) -> int | None:
    """Hidden size of a model config's language model (a VLM's text config, else the config's own), or None."""
    text = getattr(config, "text_config", None) or config
    width = getattr(text, "hidden_size", None) or getattr(text, "d_model", None)
    return int(width) if width else None


def lr_for_width(hidden: int) -> tuple[float, str]:
    """The LoRA rate for a language model of width `hidden`: LoRA rates scale roughly inversely with the hidden size
    (muP-style), from the 2e-4 that LLaVA-1.5 uses at width 4096, capped at `MAX_LR`, above which LoRA runs blow
    up. Returns (rate, how it was derived). The one rule for `finetune`'s default rate and the selector's labels."""
    lr = float(min(MAX_LR, max(MIN_LR, REFERENCE_LR * REFERENCE_WIDTH / hidden)))
    return lr, (f"derived from the base model's width: hidden size {hidden} -> {REFERENCE_LR:g} x "
                f"{REFERENCE_WIDTH}/{hidden}, within [{MIN_LR:g}, {MAX_LR:g}]")


@dataclass
class FinetuneConfig:
    """One fine-tuning run: model, data, LoRA, optimisation, checkpoints and evaluation.

    `batch_size` is per process (accelerate's convention): the global batch per optimizer step is
    batch_size x processes x grad_accum, and the run logs it. `lr=None` derives the rate from the language model's
    width (`lr_for_width`). An `out` that already holds a run is refused unless `resume` or `overwrite`.
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
    save_optimizer_state: bool = False  # also save AdamW's moments (OUT/optimizer-state.safetensors; for LESS)
    # optimisation
    epochs: float = 3.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None: derived from the language model's width (lr_for_width)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"  # any transformers.get_scheduler name
    max_grad_norm: float = 1.0
    max_length: int = 512
    mixed_precision: str = "auto"  # "auto": bf16 on a GPU that supports it, fp16 on other GPUs, none on CPU
    gradient_checkpointing: bool = False
    load_in_4bit: bool = False  # QLoRA through bitsandbytes (CUDA only)
    max_pixels: int | None = None  # Qwen2-VL / Qwen2.5-VL: image resolution cap in pixels
    image_longest_edge: int | None = None  # Idefics3 / SmolVLM: images resized to this longest edge before tiling
    seed: int = 0
    threads: int = 0  # torch CPU threads per process (0: torch's default, divided among local processes)
    limit: int | None = None  # train on the first `limit` valid records only
    # checkpoints
    save_every: int = 0  # optimizer steps between checkpoints (0: none)
    keep_checkpoints: int = 2
    resume: bool = False  # continue from the newest checkpoint in OUT/checkpoints
    overwrite: bool = False  # replace the run already in OUT (without it, or resume, such an OUT is refused)
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
            raise SettingsError(f"method must be 'lora' or 'full', got {self.method!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise SettingsError("batch_size and grad_accum must be >= 1")
        if self.epochs <= 0:
            raise SettingsError(f"epochs must be > 0, got {self.epochs}")
        if self.lr is not None and self.lr <= 0:
            raise SettingsError(f"lr must be > 0, got {self.lr}")
        if self.max_length < 2:
            raise SettingsError(f"max_length must be >= 2, got {self.max_length}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise SettingsError(f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.resume and self.overwrite:
            raise SettingsError("--resume continues the run in OUT and --overwrite replaces it: choose one")
        if self.load_in_4bit and self.method != "lora":
            raise SettingsError("--load-in-4bit trains LoRA adapters on a frozen 4-bit model; it needs --method lora")
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
