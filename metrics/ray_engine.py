"""`mmselect score --engine ray`: the same scores as the local runner, computed by a Ray Data actor pool.

The input is cut into shards: fixed runs of `shard_records` lines (a plain JSONL file), rows within a row group
(Parquet) or records (other inputs) in file order, stable across runs. JSONL and Parquet are read by Ray tasks
(`metrics.ray_read`): the records stay in the object store and the driver gets only what the checks over the whole
input need (duplicate ids and content). Other inputs are parsed by the driver, which runs those checks and ships
each shard's records. Each shard is one Ray Data block and one call of a pool actor, which

- checks and decodes the shard's images once (`selector.core.images.decode_records`; a broken image is a rejection
  with the local reader's reason) and hands the decoded pixels to the metrics' preprocessing (no second decode),
- scores the shard's valid records with every metric (models loaded once per actor, on a GPU when it has one),
- writes `OUT/shards/shard-NNNNNN.parquet` atomically, with its rejections, counters and a key in its metadata.

A metric with a `shared_limit` (the judge's requests in flight) gets one limiter for the whole run
(`metrics.ray_limiter`), so N actors do not send N times the limit.

A shard whose file exists with the same key (same records, metrics and configuration) is not scored again, so a
killed run resumes where it stopped; Ray Data restarts a dead actor and retries its call (its own defaults). The
driver keeps `OUT/manifest.json` (shards done, the metrics' configuration, the input's fingerprint) up to date as
shards finish; `mmselect select --scores OUT` reads it (`selector.core.scores.read_score_dir`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from selector.core.metric_api import Batch, as_scored
from selector.core.arrow_numpy import strings
from selector.core.errors import MmselectError
from selector.core.io import atomic_path, atomic_write, check_outputs, input_fingerprint
from selector.core.scores import MANIFEST, REJECTED_KEY, STATS_KEY, merge_shards

log = logging.getLogger(__name__)

KEY = b"mmselect.shard"
ENGINE_VERSION = 1  # part of every shard's key: a change of the shard format invalidates old shards


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run (not what is computed: that is the job's metrics)."""

    address: str | None = None  # None: start a local Ray; "auto" or ray://HOST:PORT: join that cluster
    actors: int | None = None  # scoring actors; None: one per GPU when a metric uses torch and GPUs exist, else per CPU
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None: 1 when GPUs exist and a metric uses torch, else 0
    shard_records: int = 1024  # input records per shard (and per output file)


@dataclass
class RaySummary:
    shards: int
    skipped: int
    scored: int
    seconds: float
    actors: int
    busy: dict[str, float]  # actor -> seconds spent scoring
    limits: dict[str, dict] = field(default_factory=dict)  # metric column -> its run-wide limiter's counters
    read_tasks: int = 0  # Ray tasks that read the input (0: the driver read it)

    def text(self) -> str:
        rate = self.scored / self.seconds if self.seconds else 0.0
        util = ", ".join(f"{b / self.seconds:.0%}" for b in self.busy.values()) if self.seconds else ""
        limits = "".join(f"; {col}: at most {c['peak']} requests in flight (limit {c['slots']}, across all actors)"
                         for col, c in self.limits.items())
        read = f"; input read by {self.read_tasks} tasks" if self.read_tasks else ""
        return (f"{self.shards} shards ({self.skipped} already done), {self.scored} records scored in "
                f"{self.seconds:.1f} s ({rate:.1f} records/s) by {self.actors} actors"
                + (f"; actor utilisation {util}" if util else "") + read + limits)


# ------------------------------------------------------------------------------------------------ shards
def shard_spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)] or []


def shard_key(fps: list[str], ids: list[str], metric_hashes: list[str], batch_size: int) -> str:
    """What a shard file must have been computed from to be reused: its records' ids and content, the metrics'
    configurations, and the batch size (which can move floating-point results in the last bits)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([ENGINE_VERSION, metric_hashes, batch_size]).encode())
    for rid, fp in zip(ids, fps):
        h.update(rid.encode("utf-8", "surrogatepass") + b"\x00" + fp.encode() + b"\x01")
    return h.hexdigest()


def shard_name(k: int) -> str:
    return f"shards/shard-{k:06d}.parquet"


def finished_key(path: Path) -> str | None:
    """The key stored in a shard file's footer, or None when the file is absent or unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return meta.get(KEY, b"").decode() or None


# ------------------------------------------------------------------------------------------------ the actor
class ShardScorer:
    """A Ray Data actor: loads the metrics once, then validates, decodes, scores and writes one shard per call."""

    def __init__(self, metrics: tuple[str, ...], params: dict, images_root: str, embedded: bool, out: str,
                 batch_size: int, device: str, precision: str, limiters: dict | None = None,
                 parts: dict | None = None):
        """`limiters`: metric column -> the run's `Limiter` for that metric's `shared_limit`; `parts`: shard ->
        object ref of its records as read by `metrics.ray_read` (a call then names rows of it, not records)."""
        from metrics import build
        from metrics.runner import choose_device

        self.metrics = [build(name, **params.get(name, {})) for name in metrics]
        for m in self.metrics:
            if m.column in (limiters or {}):
                m.share_limit(limiters[m.column])
        self.device = choose_device(device) if any(m.uses_torch for m in self.metrics) else "cpu"
        for m in self.metrics:
            if not m.columnar:
                m.setup(self.device)
        self.root, self.embedded, self.out = images_root, embedded, Path(out)
        self.batch_size, self.precision = batch_size, precision
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self.parts = parts or {}

    def __call__(self, batch: dict) -> dict:
        done = {"shard": [], "rows": [], "rejected": [], "seconds": [], "actor": []}
        for k, payload, key in zip(batch["shard"], batch["payload"], batch["key"]):
            start = time.perf_counter()
            rows, rejected = self.score_shard(int(k), self._records(int(k), payload), str(key))
            done["shard"].append(int(k))
            done["rows"].append(rows)
            done["rejected"].append(rejected)
            done["seconds"].append(time.perf_counter() - start)
            done["actor"].append(self.name)
        return {name: np.asarray(values) for name, values in done.items()}

    def _records(self, k: int, payload: bytes) -> pa.Table:
        """A call's records (id, instruction, answer, images, row): shipped in the call, or taken from the shard's
        part in the object store."""
        records = pa.ipc.open_stream(payload).read_all()
        if "local" not in records.column_names:
            return records
        import ray

        from metrics.ray_read import SCORED

        part = ray.get(self.parts[k]).take(records.column("local"))
        return pa.table({"id": records.column("id"), **{c: part.column(c) for c in SCORED},
                         "row": records.column("row")})

    def score_shard(self, k: int, records: pa.Table, key: str) -> tuple[int, int]:
        from selector.core.images import decode_records

        names = records.column("images").to_pylist()
        keep = any("image" in m.needs for m in self.metrics)
        images, reasons = decode_records(self.root, names, self.embedded) if any(names) else \
            ([None] * len(names), [None] * len(names))
        valid = [i for i, r in enumerate(reasons) if r is None]
        rows = records.column("row").to_pylist()
        rejected = [[rows[i], reasons[i]] for i in range(len(rows)) if reasons[i] is not None]
        table = records.take(pa.array(valid, pa.int64()))
        images = [images[i] for i in valid] if keep else None
        before = [m.stats() for m in self.metrics]
        cols = self._score(table, images)
        stats = {m.column: _delta(b, m.stats()) for m, b in zip(self.metrics, before)}
        out = pa.table(cols).replace_schema_metadata({
            KEY: key.encode(), REJECTED_KEY: json.dumps(rejected).encode(),
            STATS_KEY: json.dumps(stats, default=str).encode()})
        path = self.out / shard_name(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(out, tmp)
        return table.num_rows, len(rejected)

    def _score(self, table: pa.Table, images: list | None) -> dict[str, pa.Array]:
        from metrics.runner import REASON_SUFFIX, _value_array, inference_context

        n = table.num_rows
        ids = table.column("id").to_pylist()
        instructions, answers = table.column("instruction").to_pylist(), table.column("answer").to_pylist()
        cols: dict[str, pa.Array] = {"id": strings(ids)}
        ordered = [m for m in self.metrics if not m.columnar] + [m for m in self.metrics if m.columnar]
        for metric in ordered:
            if metric.columnar:
                parts = [as_scored(metric.score_column(table), n, metric.name)]
            else:
                parts = []
                for s in range(0, n, self.batch_size):
                    e = min(s + self.batch_size, n)
                    batch = Batch(ids[s:e], instructions[s:e], answers[s:e])
                    if "image" in metric.needs:
                        batch.images, batch.image_errors = self._preprocessed(metric, images[s:e],
                                                                              table.column("images")[s:e])
                    with inference_context(self.device, self.precision):
                        parts.append(as_scored(metric.score(batch), e - s, metric.name))
            values = np.concatenate([p.values for p in parts]) if parts else np.zeros(0)
            reasons = [r for p in parts for r in p.reasons]
            missing = np.array([r is not None for r in reasons], dtype=bool)
            if metric.kind == "vector" and values.ndim == 1:
                values = values.reshape(0, 0)
            cols[metric.column] = _value_array(values, metric.kind, missing)
            cols[metric.column + REASON_SUFFIX] = strings(reasons)
            for extra in (parts[0].extra if parts else {}):
                cols[f"{metric.column}__{extra}"] = pa.array([v for p in parts for v in p.extra[extra]])
        return cols

    def _preprocessed(self, metric, decoded: list, names) -> tuple[Any, list[str | None]]:
        """The metric's preprocessing of each record's first image: from the decoded pixels where it can take them,
        else from the file (as the local runner does)."""
        from metrics.runner import collate_images
        from selector.core.embedded import describe, image_file, is_ref

        transform = metric.image_transform()
        loader = None if transform is not None else metric.preprocessor()
        items = []
        for i, (image, recs) in enumerate(zip(decoded, names.to_pylist())):
            if not recs:
                items.append((i, None, "record has no image"))
                continue
            try:
                x = transform(image) if transform is not None else loader(image_file(self.root, recs[0]))
                items.append((i, x, None))
            except Exception as exc:  # noqa: BLE001 - recorded as this record's missing reason, as locally
                shown = describe(recs[0]) if is_ref(recs[0]) else recs[0]
                items.append((i, None, f"cannot read image {shown}: {exc}"))
        if not items:
            return [], []
        _, images, errors = collate_images(items)
        return images, errors


def _delta(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, (int, float))}


# ------------------------------------------------------------------------------------------------ the driver
def start_local_ray(num_cpus: int | None = None, env: dict[str, str] | None = None) -> None:
    """A Ray that listens on this machine only (127.0.0.1), whose workers import the same mmselect as the driver
    (PYTHONPATH), with `env` added to their environment; `num_cpus` None: all of them."""
    import ray

    code_root = str(Path(__file__).resolve().parents[1])
    env_vars = {"PYTHONPATH": os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p), **(env or {})}
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"env_vars": env_vars}, _node_ip_address="127.0.0.1")


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started or joined it (and so
    should shut it down). Reuses a Ray already initialised in this process."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            start_local_ray()
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MmselectError(f"cannot reach a Ray cluster at {address or 'a new local Ray'} ({exc}); "
                            "start one with `ray start --head` or drop --ray-address") from None
    return True


def pool_size(options: RayOptions, uses_torch: bool, shards: int) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) from the cluster's resources and the overrides."""
    import ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    per_gpu = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if gpus >= 1 and uses_torch
                                                                                 else 0.0)
    per_cpu = options.cpus_per_actor
    if options.actors:
        actors = options.actors
    elif per_gpu > 0:
        actors = max(1, int(gpus // per_gpu))
    else:
        actors = max(1, int(float(resources.get("CPU", 1)) // max(per_cpu, 1e-9)))
    return max(1, min(actors, shards)), per_cpu, per_gpu


def _write_manifest(out: Path, manifest: dict) -> None:
    atomic_write(out / MANIFEST, [json.dumps(manifest, indent=1, default=str).encode()])


def run_ray_job(job):
    """Score `job` (a `metrics.score_job.ScoreJob`; `job.ray` holds `RayOptions`' fields) on Ray into the folder
    `job.out`; returns its `ScoreResult` (the merged table, counts, and the run's summary line)."""
    from metrics.score_job import build_metrics

    options = RayOptions(**job.ray)
    out = Path(job.out)
    if out.exists() and not out.is_dir():
        raise MmselectError(f"--out {out}: --engine ray writes a folder of shards; name a folder")
    outputs = [out / MANIFEST, out / "scores.rejected.jsonl"]
    check_outputs([Path(job.input)], outputs)
    try:
        metrics = build_metrics(job.metrics, job.params)
    except (KeyError, TypeError, ValueError) as exc:
        raise MmselectError(str(exc).strip("'\"")) from None
    started = connect(options.address)
    try:
        return _run(job, options, metrics, out, outputs)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run(job, options: RayOptions, metrics: list, out: Path, outputs: list[Path]):
    from metrics.ray_read import read_sharded
    from metrics.runner import fingerprints
    from metrics.score_job import ScoreResult
    from selector.core.records import check_record_outputs, check_rejections, read_records, set_reasons, write_rejected

    sharded = read_sharded(job, options.shard_records)  # JSONL or Parquet: read by Ray tasks, shard by shard
    records = sharded.records if sharded is not None else read_records(
        job.input, images=job.images, fmt=job.fmt, workers=job.read_workers, columns=job.columns,
        check_image_files=False)
    check_record_outputs(records, outputs)
    check_rejections(records, job.allow_rejects)
    table = records.table
    root = str(records.images_root or "")
    embedded = records.source is not None and records.source.kind != "json"
    valid = np.flatnonzero(records.valid_mask())
    ids = table.column("id").to_pylist()
    if sharded is None:
        fps = fingerprints(table.column("instruction").to_pylist(), table.column("answer").to_pylist(),
                           table.column("images").to_pylist(), root)
        spans = shard_spans(table.num_rows, options.shard_records)
    else:
        fps, spans = sharded.fingerprints, sharded.spans
    hashes = [m.config_hash() for m in metrics]
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "mmselect-scores", "version": ENGINE_VERSION, "input": input_fingerprint(records.files),
                "metrics": {m.column: {"metric": m.name, "config": m.config(), "hash": m.config_hash(),
                                       "kind": m.kind} for m in metrics},
                "total_shards": len(spans), "shards": [], "complete": False}
    done: dict[int, dict] = {}
    todo = []
    for k, (s, e) in enumerate(spans):
        rows = valid[(valid >= s) & (valid < e)]
        key = shard_key([fps[i] for i in rows], [ids[i] for i in rows], hashes, job.batch_size)
        if finished_key(out / shard_name(k)) == key:
            done[k] = {"shard": k, "file": shard_name(k), "key": key, "reused": True}
            continue
        if sharded is None:  # the records themselves
            part = table.take(pa.array(rows, pa.int64())).select(["id", "instruction", "answer", "images"])
        else:  # which records of the shard's part (in the object store) to score, and their final ids
            part = pa.table({"id": table.column("id").take(pa.array(rows, pa.int64())),
                             "local": pa.array(rows - s, pa.int64())})
        part = part.append_column("row", pa.array(rows, pa.int64()))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        todo.append({"shard": k, "payload": sink.getvalue().to_pybytes(), "key": key})

    def save(complete: bool = False) -> None:
        manifest["shards"] = [done[k] for k in sorted(done)]
        manifest["complete"] = complete
        _write_manifest(out, manifest)

    parts = {t["shard"]: sharded.parts[t["shard"]] for t in todo} if sharded is not None else {}
    if sharded is not None:
        sharded.parts = []  # finished shards' parts are not needed: let Ray free them
    save()
    busy: dict[str, float] = {}
    t0 = time.perf_counter()
    actors = 0
    limiters: dict = {}
    limits: dict[str, dict] = {}
    try:
        if todo:
            import ray.data

            from metrics.ray_limiter import start_limiter

            limiters = {m.column: start_limiter(m.shared_limit()) for m in metrics if m.shared_limit()}
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = job.progress
            actors, cpus, gpus = pool_size(options, any(m.uses_torch for m in metrics), len(todo))
            ds = ray.data.from_items(todo, override_num_blocks=len(todo))
            scored = ds.map_batches(
                ShardScorer, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus,
                num_gpus=gpus or None,
                fn_constructor_kwargs=dict(metrics=tuple(job.metrics), params=job.params, images_root=root,
                                           embedded=embedded, out=str(out.resolve()), batch_size=job.batch_size,
                                           device=job.device, precision=job.precision, limiters=limiters,
                                           parts=parts))
            by_key = {t["shard"]: t["key"] for t in todo}
            for row in scored.iter_rows():
                k = int(row["shard"])
                done[k] = {"shard": k, "file": shard_name(k), "key": by_key[k], "rows": int(row["rows"]),
                           "rejected": int(row["rejected"]), "seconds": float(row["seconds"]), "reused": False}
                busy[str(row["actor"])] = busy.get(str(row["actor"]), 0.0) + float(row["seconds"])
                save()
            limits = {col: lim.counters() for col, lim in limiters.items()}
    finally:
        for lim in limiters.values():
            lim.close()
    seconds = time.perf_counter() - t0
    missing = [k for k in range(len(spans)) if finished_key(out / shard_name(k)) != done.get(k, {}).get("key")]
    if missing:
        raise MmselectError(f"{len(missing)} shards have no scores after the run (first: {shard_name(missing[0])}); "
                            "rerun to finish them")
    save(complete=True)
    merged = merge_shards(out, manifest)
    rows, reasons = _shard_rejections(out, len(spans))
    records.table = set_reasons(records.table, rows, reasons)
    check_rejections(records, job.allow_rejects)
    rejected_path = write_rejected(records, out / "scores")
    summary = RaySummary(len(spans), sum(1 for d in done.values() if d.get("reused")),
                         sum(int(d.get("rows", 0)) for d in done.values() if not d.get("reused")), seconds, actors,
                         busy, limits, sharded.tasks if sharded is not None else 0)
    n_valid = int(records.valid_mask().sum())
    return ScoreResult(merged, len(records), len(records) - n_valid, out, rejected_path, summary.text())


def _shard_rejections(out: Path, shards: int) -> tuple[np.ndarray, list[str]]:
    """Every shard's image rejections: (record rows, reasons)."""
    import pyarrow.parquet as pq

    rows, reasons = [], []
    for k in range(shards):
        meta = pq.read_schema(out / shard_name(k)).metadata or {}
        for row, reason in json.loads(meta.get(REJECTED_KEY, b"[]")):
            rows.append(int(row))
            reasons.append(reason)
    return np.asarray(rows, np.int64), reasons
