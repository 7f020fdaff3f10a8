"""Genuine quality labels: fine-tune on each subset, evaluate on held-out data, and use the score as the label.

Each (subset, seed) result is cached as one small JSON file keyed by the subset's ids, the seed and the label
function's key, so a re-run (or a run interrupted half-way) skips the subsets already done. Several seeds per subset
measure how noisy the labels are (`selector.learned.signal` tests the spread against that noise); a subset's label
is a robust aggregate of its seeds (median by default).

The label function that fine-tunes is `finetune.label.FinetuneLabel`; this module only needs the `LabelFn` protocol.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from selector.core.io import atomic_write
from selector.core.records import RecordSet, write_records


class LabelFn(Protocol):
    """Fine-tune on the records in `subset_file` (images under `images_root`) with `seed`; return at least
    {"label": float}. `key` names everything that changes the result (hashed into the cache key).

    A label function that is a dataclass with an `lr` field set to None gets its learning rate from a pilot run
    (`selector.learned.pilot`), which tries `dataclasses.replace(fn, lr=...)` for each candidate."""

    key: str

    def __call__(self, subset_file: Path, images_root: Path | None, seed: int) -> dict: ...


@dataclass
class LabelResult:
    per_seed: np.ndarray          # (k, n_seeds)
    seeds: tuple[int, ...]
    details: list[list[dict]] = field(default_factory=list)
    how: str = "median"           # how a subset's seeds become its label (selector.learned.signal.AGGREGATES)

    @property
    def labels(self) -> np.ndarray:
        """(k,) one label per subset: the `how` aggregate of its seeds."""
        from selector.learned.signal import aggregate

        return aggregate(self.per_seed, self.how)

    @property
    def noise(self) -> float:
        """Pooled std of one run's label within a subset, across seeds (NaN with one seed)."""
        if self.per_seed.shape[1] < 2:
            return float("nan")
        return float(np.sqrt(self.per_seed.var(axis=1, ddof=1).mean()))

    @property
    def spread(self) -> float:
        """Std of the aggregated labels across subsets: the signal the selector has to learn from."""
        return float(self.labels.std(ddof=1)) if len(self.labels) > 1 else float("nan")

    def to_dict(self) -> dict:
        return {"labels": self.labels.tolist(), "per_seed": self.per_seed.tolist(), "seeds": list(self.seeds),
                "aggregate": self.how, "noise": self.noise, "spread": self.spread, "details": self.details}


def _cache_key(ids: list[str], seed: int, fn_key: str) -> str:
    h = hashlib.sha256()
    h.update(fn_key.encode())
    h.update(f"|seed={seed}|".encode())
    h.update("\n".join(sorted(ids)).encode())
    return h.hexdigest()[:16]


def genuine_labels(records: RecordSet, rows: np.ndarray, subsets: np.ndarray, label_fn: LabelFn, cache_dir: Path,
                   seeds: tuple[int, ...] = (0,), progress: bool = True, how: str = "median",
                   names: list[int] | None = None) -> LabelResult:
    """Label every subset: `rows[i]` is the RecordSet row of pool sample i, `subsets[i]` its subset (-1 = none).
    `names[s]` numbers subset s in file names (default s), so a run of a subset has the same file wherever it is
    asked for."""
    from selector.core.progress import progress_bar

    from selector.learned.subsets import subset_members

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    members = subset_members(np.asarray(subsets))
    all_ids = records.table.column("id").to_pylist()
    per_seed = np.full((len(members), len(seeds)), np.nan)
    details: list[list[dict]] = [[{} for _ in seeds] for _ in members]
    jobs = [(s, j) for s in range(len(members)) for j in range(len(seeds))]
    bar = progress_bar(jobs, desc="genuine labels", unit="run", disable=not progress)
    for s, j in bar:
        keep = np.asarray(rows)[members[s]]
        ids = [all_ids[r] for r in keep]
        key = _cache_key(ids, seeds[j], label_fn.key)
        name = names[s] if names is not None else s
        done = cache_dir / f"subset-{name:03d}-seed{seeds[j]}-{key}.json"
        if done.exists():
            result = json.loads(done.read_text())
        else:
            subset_file = write_records(records, keep, cache_dir / f"subset-{name:03d}{records.native_suffix}")
            result = label_fn(Path(subset_file), records.images_root, seeds[j])
            if "label" not in result or result["label"] is None or not np.isfinite(result["label"]):
                raise RuntimeError(f"label function returned no finite label for subset {s} seed {seeds[j]}: {result}")
            atomic_write(done, [json.dumps({**result, "subset": s, "seed": seeds[j], "n": len(ids)}).encode()])
        per_seed[s, j] = float(result["label"])
        details[s][j] = result
        bar.set_postfix(subset=s, label=f"{per_seed[s, j]:.3f}")
    return LabelResult(per_seed, tuple(seeds), details, how)
