"""Genuine quality labels: fine-tune on each subset, evaluate on held-out data, and use the score as the label.

Each (subset, seed) result is cached as one small JSON file keyed by the subset's ids, the seed and the label
function's key, so a re-run (or a run interrupted half-way) skips the subsets already done. Several seeds per subset
measure how noisy the labels are: `LabelResult.noise` is the mean over subsets of the std across seeds.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from selector.core.io import atomic_write
from selector.core.records import RecordSet, write_records
from selector.core.resolve import model_fingerprint


class LabelFn(Protocol):
    """Fine-tune on the records in `subset_file` (images under `images_root`) with `seed`; return at least
    {"label": float}. `key` names everything that changes the result (hashed into the cache key)."""

    key: str

    def __call__(self, subset_file: Path, images_root: Path | None, seed: int) -> dict: ...


@dataclass
class LabelResult:
    labels: np.ndarray            # (k,) mean over seeds
    per_seed: np.ndarray          # (k, n_seeds)
    seeds: tuple[int, ...]
    details: list[list[dict]] = field(default_factory=list)

    @property
    def noise(self) -> float:
        """Mean over subsets of the std of the label across seeds (NaN with one seed)."""
        if self.per_seed.shape[1] < 2:
            return float("nan")
        return float(self.per_seed.std(axis=1, ddof=1).mean())

    @property
    def spread(self) -> float:
        """Std of the (seed-averaged) labels across subsets: the signal the selector has to learn from."""
        return float(self.labels.std(ddof=1)) if len(self.labels) > 1 else float("nan")

    def to_dict(self) -> dict:
        return {"labels": self.labels.tolist(), "per_seed": self.per_seed.tolist(), "seeds": list(self.seeds),
                "noise": self.noise, "spread": self.spread, "details": self.details}


def _cache_key(ids: list[str], seed: int, fn_key: str) -> str:
    h = hashlib.sha256()
    h.update(fn_key.encode())
    h.update(f"|seed={seed}|".encode())
    h.update("\n".join(sorted(ids)).encode())
    return h.hexdigest()[:16]


def genuine_labels(records: RecordSet, rows: np.ndarray, subsets: np.ndarray, label_fn: LabelFn, cache_dir: Path,
                   seeds: tuple[int, ...] = (0,), progress: bool = True) -> LabelResult:
    """Label every subset: `rows[i]` is the RecordSet row of pool sample i, `subsets[i]` its subset (-1 = none)."""
    from tqdm.auto import tqdm

    from selector.learned.subsets import subset_members

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    members = subset_members(np.asarray(subsets))
    all_ids = records.table.column("id").to_pylist()
    per_seed = np.full((len(members), len(seeds)), np.nan)
    details: list[list[dict]] = [[{} for _ in seeds] for _ in members]
    jobs = [(s, j) for s in range(len(members)) for j in range(len(seeds))]
    bar = tqdm(jobs, desc="genuine labels", unit="run", disable=not progress)
    for s, j in bar:
        keep = np.asarray(rows)[members[s]]
        ids = [all_ids[r] for r in keep]
        key = _cache_key(ids, seeds[j], label_fn.key)
        done = cache_dir / f"subset-{s:03d}-seed{seeds[j]}-{key}.json"
        if done.exists():
            result = json.loads(done.read_text())
        else:
            subset_file = write_records(records, keep, cache_dir / f"subset-{s:03d}.jsonl")
            result = label_fn(Path(subset_file), records.images_root, seeds[j])
            if "label" not in result or result["label"] is None or not np.isfinite(result["label"]):
                raise RuntimeError(f"label function returned no finite label for subset {s} seed {seeds[j]}: {result}")
            atomic_write(done, [json.dumps({**result, "subset": s, "seed": seeds[j], "n": len(ids)}).encode()])
        per_seed[s, j] = float(result["label"])
        details[s][j] = result
        bar.set_postfix(subset=s, label=f"{per_seed[s, j]:.3f}")
    return LabelResult(per_seed.mean(axis=1), per_seed, tuple(seeds), details)


@dataclass
class FinetuneLabel:
    """The genuine label: LoRA-fine-tune `base_model` on the subset (`finetune.train`), evaluate on `eval_data`, and
    return the chosen evaluation metric. `metric` is a key of the eval metrics: "exact_match", "contains", or
    "eval_loss" / "eval_perplexity", which are negated so that higher is better like every label."""

    base_model: str
    eval_data: str
    work_dir: str
    eval_images: str | None = None
    metric: str = "exact_match"
    epochs: float = 3.0
    batch_size: int = 8
    lr: float = 2e-4
    lora_r: int = 16
    extra: dict = field(default_factory=dict)  # any other FinetuneConfig fields

    @property
    def key(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "work_dir"}
        fields["base_model_sha256"] = model_fingerprint(self.base_model)
        return "finetune-v2:" + json.dumps(fields, sort_keys=True, default=str)

    def __call__(self, subset_file: Path, images_root: Path | None, seed: int) -> dict:
        # Submodule imports: they work even where `finetune` resolves as a namespace package (stale editable install).
        from finetune.config import FinetuneConfig
        from finetune.trainer import train

        out = Path(self.work_dir) / f"{Path(subset_file).stem}-seed{seed}"
        cfg = FinetuneConfig(model=self.base_model, data=str(subset_file), out=str(out),
                                      images=str(images_root) if images_root else None, eval_data=self.eval_data,
                                      eval_images=self.eval_images, epochs=self.epochs, batch_size=self.batch_size,
                                      lr=self.lr, lora_r=self.lora_r, lora_alpha=2 * self.lora_r, seed=seed,
                                      progress=False, report_to="none", **self.extra)
        result = train(cfg)
        ev = result.metrics.get("eval", {})
        name = self.metric.lstrip("-")
        negate = self.metric.startswith("-") or name in ("eval_loss", "eval_perplexity")
        if name not in ev:
            raise RuntimeError(f"fine-tuning on {subset_file} reported no eval metric {name!r} (got {sorted(ev)}); "
                               f"pass an eval set with short answers or choose --label-metric eval_loss")
        value = float(ev[name])
        return {"label": -value if negate else value, "eval": ev,
                "train_s": result.timings.get("total_s")}
