"""`influence`: LESS-style gradient influence of each record on a target set (ICONS' per-group vote optional).

1. Warm-up: a normal `finetune` LoRA run on a seeded random share of the pool (default 5%), keeping AdamW's moments.
2. Features: per-sample gradients of the LoRA weights on the answer tokens (one backward pass per record), for the
   pool (as Adam update directions from the warm-up's moments, as LESS does; `adam=False`: plain gradients) and
   for the target set (plain gradients), reduced by one seeded random projection (default 8,192 dims, Rademacher).
3. Score: mean cosine similarity of a record's feature to the target features. Higher means keep. With `groups`
   (a field of the target records, e.g. `task`), one score per group (extra columns `influence__g_<value>`) and
   ICONS' vote: each group votes for the records above its 80th percentile; the score is the vote count plus a
   tie-break below one vote (see `finetune.gradients.vote`).

The vote needs every pool record's group scores, so the features are computed for the whole pool in `setup` (the
pool is the `pool` file: the records `mmselect score` reads), cached on disk in parts under
`cache_dir/influence-features-<key>/` (warm-up adapter, target features, pool feature parts), and a killed
run resumes from the parts it finished. `score(batch)` then looks the batch's records up. The records are encoded
with finetune's encoder (all images, all turns), exactly as a fine-tuning run sees them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.metric_api import Batch, Metric, Scored, config_key
from selector.core.io import atomic_path, atomic_write

log = logging.getLogger(__name__)
INFLUENCE_FLAG = "--influence-model"
PART = 256  # pool records per cached feature part (one projection call each)
BATCH = 16  # records per forward/backward pass


@dataclass(frozen=True)
class InfluenceSettings:
    """Everything that changes the influence features (hashed into their cache key)."""

    warmup_share: float = 0.05
    warmup_epochs: float = 4.0  # LESS warms up for 4 epochs
    warmup_lr: float | None = None  # None: finetune's width-derived LoRA rate
    lora_r: int = 16
    lora_alpha: int = 32
    dim: int = 8192
    projection: str = "rademacher"
    adam: bool = True
    vote_percentile: float = 80.0
    seed: int = 0
    max_length: int = 512


def _file_stamp(path: str | None) -> str | None:
    """Content hash of a data file (a folder or remote source: its path), so an edited pool or target re-warms."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        h = hashlib.blake2b(digest_size=8)
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    return str(path)


class InfluenceMetric(Metric):
    name = "influence"
    needs = frozenset({"text"})  # the records are encoded from `pool` itself (all images), not from the batch

    def __init__(self, model: str | None = None, target: str | None = None, pool: str | None = None,
                 images: str | None = None, target_images: str | None = None, groups: str | None = None,
                 cache_dir: str | None = None, progress: bool = True, trust_remote_code: bool = False,
                 gradient_dims: int = 0, **settings: Any):
        if not model or not target or not pool:
            from selector.core.errors import SettingsError

            missing = [f for f, v in (("--influence-model", model), ("--influence-target", target),
                                      ("the pool file", pool)) if not v]
            raise SettingsError(f"metric influence needs {', '.join(missing)} (a base VLM, a target set such as "
                                "val.jsonl, and the records to score)")
        self.model, self.target, self.pool = model, target, pool
        self.images, self.target_images, self.groups = images, target_images, groups
        self.cache_dir, self.progress, self.trust_remote_code = cache_dir, progress, trust_remote_code
        self.settings = InfluenceSettings(**settings)
        self.gradient_dims = int(gradient_dims)
        if self.gradient_dims < 0:
            from selector.core.errors import SettingsError

            raise SettingsError(f"--influence-gradient-dims must be 0 or more, not {gradient_dims}")
        self._grads: dict[str, list[float]] = {}
        self._scores: dict[str, tuple[float, dict[str, float]]] = {}
        self._reasons: dict[str, str] = {}
        self._group_names: list[str] = []
        self._stats: dict[str, Any] = {}
        self._tmp = None

    def _feature_config(self) -> dict[str, Any]:
        """What the cached gradient features depend on. Not the groups (only the scores' combination does), so the
        per-task vote reuses the plain run's features; "groups": None keeps the key of caches written before."""
        from selector.core.resolve import spec_fingerprint

        return {**spec_fingerprint(self.model, None), "target": _file_stamp(self.target),
                "pool": _file_stamp(self.pool), "groups": None, **asdict(self.settings)}

    def config(self) -> dict[str, Any]:
        return {**self._feature_config(), "groups": self.groups,
                **({"gradient_dims": self.gradient_dims} if self.gradient_dims else {})}

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    # ------------------------------------------------------------------------------------------------ setup
    def _work_dir(self) -> Path:
        if self.cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mmselect-influence-")
            root = Path(self._tmp.name)
        else:
            root = Path(self.cache_dir)
        work = root / f"influence-features-{config_key(self.name, self._feature_config())}"
        work.mkdir(parents=True, exist_ok=True)
        return work

    def setup(self, device: str = "cpu") -> None:
        from finetune.data import encode_records

        work = self._work_dir()
        t0 = time.perf_counter()
        adapter, adam_file = self._warm_up(work)
        t_warm = time.perf_counter()
        model, processor, params, projector, adam = self._load(adapter, adam_file, device)
        from finetune.modeling import stop_token_ids

        encoding = dict(max_length=self.settings.max_length, stop_ids=stop_token_ids(model, processor))
        pool = encode_records(self.pool, processor, images=self.images, dedup=False, **encoding)
        target = encode_records(self.target, processor, images=self.target_images, dedup=False, **encoding)
        if not len(target):
            from selector.core.errors import SettingsError

            raise SettingsError(f"--influence-target {self.target}: no usable records ({len(target.rejected)} "
                                "rejected)")
        for row in pool.rejected:
            self._reasons[str(row["id"])] = f"influence: {row['reason']}"
        log.info("influence cost: %d pool + %d target records x 1 backward pass each (%d LoRA weights -> %d dims); "
                 "warm-up took %.0f s", len(pool), len(target), projector.n_in, projector.dim, t_warm - t0)
        grads_of = _per_sample_grads(model, processor.tokenizer.pad_token_id, device)
        tfeat = self._features(work / "target", target.examples, grads_of, params, projector, None, "target")
        pfeat = self._features(work / "pool", pool.examples, grads_of, params, projector, adam, "pool")
        self._combine(pfeat, tfeat, [ex.id for ex in pool.examples], self._target_groups(target))
        if self.gradient_dims:
            self._grads = dict(zip((str(ex.id) for ex in pool.examples),
                                   gradient_pca(pfeat, self.gradient_dims, self.settings.seed).tolist()))
        self._stats = {"pool": len(pool), "target": len(target), "lora_weights": projector.n_in,
                       "dims": projector.dim, "warmup_s": round(t_warm - t0, 1),
                       "features_s": round(time.perf_counter() - t_warm, 1), "groups": self._group_names}

    def _warm_up(self, work: Path) -> tuple[Path, Path | None]:
        """The LoRA warm-up on a seeded share of the pool (cached in work/warmup); (adapter, optimiser state)."""
        from finetune.config import FinetuneConfig
        from finetune.trainer import OPTIMIZER_STATE, train
        from selector.core.records import read_records, write_records

        out = work / "warmup"
        adapter, state = out / "adapter", out / OPTIMIZER_STATE
        if (adapter / "adapter_config.json").is_file() and state.is_file():
            return adapter, state
        records = read_records(self.pool, images=self.images)
        rows = records.valid_rows()
        n = max(1, math.ceil(self.settings.warmup_share * len(rows)))
        pick = np.sort(np.random.default_rng(self.settings.seed).choice(rows, size=min(n, len(rows)), replace=False))
        subset = write_records(records, pick, work / "warmup-subset.jsonl")
        images = self.images or str(Path(self.pool).parent)
        log.info("influence warm-up: LoRA on %d of %d pool records (%.0f%%, seed %d), %g epochs", len(pick),
                 len(rows), 100 * self.settings.warmup_share, self.settings.seed, self.settings.warmup_epochs)
        train(FinetuneConfig(model=self.model, data=str(subset), images=images, out=str(out),
                             epochs=self.settings.warmup_epochs, lr=self.settings.warmup_lr,
                             lora_r=self.settings.lora_r, lora_alpha=self.settings.lora_alpha,
                             seed=self.settings.seed, max_length=self.settings.max_length, report_to="none",
                             progress=self.progress, save_optimizer_state=True, overwrite=True,
                             trust_remote_code=self.trust_remote_code, model_flag=INFLUENCE_FLAG))
        return adapter, state

    def _load(self, adapter: Path, adam_file: Path | None, device: str):
        import torch

        from finetune.modeling import load_with_adapter
        from finetune.gradients import AdamState, Projector

        model, processor = load_with_adapter(self.model, adapter, flag=INFLUENCE_FLAG, trainable=True,
                                             trust_remote_code=self.trust_remote_code)
        model.to(device).eval()  # eval: no LoRA dropout, so a record's gradient is a function of the record
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        projector = Projector(sum(p.numel() for p in params), self.settings.dim, self.settings.seed,
                              self.settings.projection)
        adam = None
        if self.settings.adam and adam_file is not None:
            from safetensors import safe_open

            with safe_open(str(adam_file), "pt") as f:
                meta = f.metadata() or {}
                keys = set(f.keys())
                if all(f"{n}.exp_avg" in keys for n, _ in named):
                    m = torch.cat([f.get_tensor(f"{n}.exp_avg").reshape(-1) for n, _ in named])
                    v = torch.cat([f.get_tensor(f"{n}.exp_avg_sq").reshape(-1) for n, _ in named])
                    adam = AdamState(m, v, float(meta.get("beta1", 0.9)), float(meta.get("beta2", 0.999)),
                                     float(meta.get("eps", 1e-8)))
                else:
                    log.warning("influence: the warm-up's optimiser state does not match the adapter's weights; "
                                "using plain gradients")
        return model, processor, params, projector, adam

    def _features(self, where: Path, examples: list, grads_of, params, projector, adam, what: str) -> np.ndarray:
        """Projected gradients of `examples`, in parts of PART records cached as .npy (resumable)."""
        from tqdm.auto import tqdm

        from finetune.gradients import project_gradients

        where.mkdir(parents=True, exist_ok=True)
        n_parts = math.ceil(len(examples) / PART)
        parts = []
        show = self.progress and sys.stderr.isatty()
        bar = tqdm(total=len(examples), desc=f"influence {what} gradients", unit="rec", disable=not show)
        t0, done_new = time.perf_counter(), 0
        for k in range(n_parts):
            chunk = examples[k * PART:(k + 1) * PART]
            path = where / f"part-{k:06d}.npy"
            ids_path = where / f"part-{k:06d}.json"
            ids = [ex.id for ex in chunk]
            if path.is_file() and ids_path.is_file() and json.loads(ids_path.read_text()) == ids:
                parts.append(np.load(path))
            else:
                feats = np.concatenate([project_gradients(grads_of(chunk[j:j + BATCH], params), projector, adam)
                                        for j in range(0, len(chunk), BATCH)])
                with atomic_path(path) as tmp:
                    np.save(tmp, feats, allow_pickle=False)
                atomic_write(ids_path, [json.dumps(ids).encode()])
                parts.append(feats)
                done_new += len(chunk)
                if not show and self.progress:
                    rate = done_new / max(time.perf_counter() - t0, 1e-9)
                    left = len(examples) - (k + 1) * PART
                    log.info("influence %s gradients: %d/%d records, %.1f rec/s, about %.0f s left", what,
                             min((k + 1) * PART, len(examples)), len(examples), rate, max(left, 0) / rate)
            bar.update(len(chunk))
        bar.close()
        return np.concatenate(parts) if parts else np.zeros((0, projector.dim), np.float32)

    def _target_groups(self, target) -> list[str] | None:
        """Each encoded target record's group (the `groups` field), or None without groups."""
        if not self.groups:
            return None
        from selector.core.records import read_records

        recs = read_records(self.target, images=self.target_images, dedup=False, group_by=self.groups)
        if recs.groups is None:
            from selector.core.errors import SettingsError

            raise SettingsError(f"--influence-groups {self.groups}: the target records have no such field")
        of = dict(zip(recs.table.column("id").to_pylist(), recs.groups.to_pylist()))
        return [str(of.get(ex.id)) for ex in target.examples]

    def _combine(self, pfeat: np.ndarray, tfeat: np.ndarray, ids: list[str], groups: list[str] | None) -> None:
        from finetune.gradients import mean_cosine, vote

        overall = mean_cosine(pfeat, tfeat)
        per_group: dict[str, np.ndarray] = {}
        if groups is not None:
            self._group_names = sorted(set(groups))
            labels = np.array(groups)
            for g in self._group_names:
                per_group[g] = mean_cosine(pfeat, tfeat[labels == g])
            matrix = np.stack([per_group[g] for g in self._group_names], axis=1)
            overall = vote(matrix, self.settings.vote_percentile)
        for i, rid in enumerate(ids):
            self._scores[str(rid)] = (float(overall[i]), {g: float(s[i]) for g, s in per_group.items()})

    # ------------------------------------------------------------------------------------------------ scoring
    def score(self, batch: Batch) -> Scored:
        values = np.full(len(batch), np.nan)
        reasons: list[str | None] = [None] * len(batch)
        extra: dict[str, list] = {f"g_{g}": [None] * len(batch) for g in self._group_names}
        if self.gradient_dims:
            extra["grad"] = [self._grads.get(str(rid)) for rid in batch.ids]
        for i, rid in enumerate(batch.ids):
            hit = self._scores.get(str(rid))
            if hit is None:
                reasons[i] = self._reasons.get(str(rid), "influence: record not in the pool file")
                continue
            values[i] = hit[0]
            for g, s in hit[1].items():
                extra[f"g_{g}"][i] = s
        return Scored(values, reasons, extra)


def gradient_pca(features: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """The pool's projected gradients reduced to their first `dims` principal components (sklearn's seeded
    randomized PCA; fewer when the pool is smaller), float32: a compact gradient description the learned selector
    can take as features (`train-selector --extra-embedding influence__grad`)."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float32)
    k = max(0, min(dims, x.shape[0] - 1, x.shape[1]))
    if k == 0:
        return np.zeros((len(x), 0), np.float32)
    return PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def _per_sample_grads(model, pad_id: int, device: str):
    """A list of Examples -> per-sample gradients of their mean answer-token NLL (the loss fine-tuning
    minimises), from one batched pass when the trainable weights are all LoRA matrices, else one pass per sample."""
    import torch

    from finetune.data import collate
    from finetune.evaluation import example_nll
    from finetune.gradients import flat_grad, linear_per_sample_gradients

    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())

    def losses(examples):
        batch = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
                 for k, v in collate(examples, pad_id).items()}
        sums, counts = example_nll(model, batch)
        return sums / counts.clamp(min=1)

    def gradients_of(examples, params):
        rows = linear_per_sample_gradients(model, params, lambda: losses(examples))
        if rows is None:
            rows = torch.stack([flat_grad(losses([ex])[0], params) for ex in examples])
        return rows.detach()

    return gradients_of


__all__ = ["InfluenceMetric", "InfluenceSettings"]
