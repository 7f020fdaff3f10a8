"""One scoring run as a typed, serialisable job: read records -> build metrics -> score -> write the table.

`mmselect score --num-processes N` writes the job as JSON and starts `accelerate launch -m metrics.score_job JOB`;
every process runs the same job on its shard of the batches and rank 0 writes the merged table.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from metrics import build
from metrics.runner import RunnerConfig, score_records, world
from selector.core.errors import MmselectError
from selector.core.io import SCORES_INPUT_KEY, atomic_write, check_outputs, input_fingerprint
from selector.core.records import check_record_outputs, check_rejections, read_records, write_rejected


@dataclass(frozen=True)
class ScoreJob:
    input: str
    out: str
    metrics: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: str | None = None
    fmt: str | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    cache_dir: str | None = None
    progress: bool = True
    read_workers: int = 0
    allow_rejects: bool = False
    columns: dict = field(default_factory=dict)  # table inputs: role -> column (see --columns)
    engine: str = "local"  # metrics.registry.ENGINES: local (this machine, accelerate) or ray
    ray: dict = field(default_factory=dict)  # --engine ray: metrics.ray_engine.RayOptions' fields

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ScoreJob":
        data = json.loads(text)
        data["metrics"] = tuple(data["metrics"])
        return cls(**data)


@dataclass
class ScoreResult:
    table: pa.Table
    read: int
    rejected: int
    out: Path
    rejected_path: Path | None = None
    summary: str | None = None  # the engine's closing line (throughput, shards), when it has one


def build_metrics(names, params: dict[str, dict[str, Any]]):
    return [build(name, **params.get(name, {})) for name in names]


def write_table(table: pa.Table, out: Path) -> None:
    """Atomic Parquet write (temp file, then rename), following the umask."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write(Path(out), [sink.getvalue().to_pybytes()])


def read_validated(job: ScoreJob):
    """The job's records, validated once per run: under N processes rank 0 reads them and decodes every image,
    the others only parse (no image decode) and take rank 0's verdicts from the shared cache folder."""
    rank, size = world()
    options = dict(images=job.images, fmt=job.fmt, workers=job.read_workers, columns=job.columns)
    if size == 1:
        return read_records(job.input, **options)
    from metrics.runner import barrier

    if job.cache_dir is None:
        raise MmselectError("a multi-process scoring run needs the score cache (the processes share it); "
                            "drop --no-cache")
    verdicts = Path(job.cache_dir) / "validated.parquet"
    records = error = None
    try:
        if rank == 0:
            verdicts.unlink(missing_ok=True)
            records = read_records(job.input, **options)
            write_table(records.table.select(["id", "reason"]), verdicts)
        else:
            records = read_records(job.input, check_image_files=False, **options)
    except Exception as exc:  # noqa: BLE001 - re-raised below, once every process has passed the barrier
        error = exc
    finally:
        barrier()  # every process passes here exactly once, failed or not
    if error is not None:
        raise error
    if rank != 0:
        import pyarrow.parquet as pq

        try:
            checked = pq.read_table(verdicts)
        except (OSError, pa.ArrowException):
            raise MmselectError("the first process could not validate the input; see its error") from None
        if checked.column("id") != records.table.column("id"):
            raise MmselectError(f"{job.input} changed while the processes read it; rerun")
        records.table = records.table.set_column(records.table.schema.get_field_index("reason"), "reason",
                                                 checked.column("reason"))
    return records


def run_score_job(job: ScoreJob) -> ScoreResult:
    """Read, score, and write the table (with the input's fingerprint in its metadata) and `OUT.rejected.jsonl`
    (one line per record rejected before scoring, as `select` writes)."""
    check_outputs([Path(job.input)], [Path(job.out), Path(f"{job.out}.rejected.jsonl")])
    records = read_validated(job)
    check_record_outputs(records, [Path(job.out), Path(f"{job.out}.rejected.jsonl")])
    check_rejections(records, job.allow_rejects)
    valid = records.valid_table()
    config = RunnerConfig(batch_size=job.batch_size, device=job.device, workers=job.workers,
                          precision=job.precision, cache_dir=Path(job.cache_dir) if job.cache_dir else None,
                          progress=job.progress)
    try:
        metrics = build_metrics(job.metrics, job.params)
    except (KeyError, TypeError, ValueError) as exc:
        raise MmselectError(str(exc).strip("'\"")) from None
    table = score_records(valid, metrics, config,
                          images_root=str(records.images_root) if records.images_root else None)
    meta = dict(table.schema.metadata or {})
    meta[SCORES_INPUT_KEY] = json.dumps(input_fingerprint(records.files)).encode()
    table = table.replace_schema_metadata(meta)
    out = Path(job.out)
    rejected_path = None
    if world()[0] == 0:
        rejected_path = write_rejected(records, out)
        write_table(table, out)
    return ScoreResult(table, len(records), len(records) - valid.num_rows, out, rejected_path)


def launch(job: ScoreJob, num_processes: int, job_file: Path) -> int:
    """Run `job` in `num_processes` processes: `accelerate launch` on GPUs, torch's own launcher (gloo) on CPUs,
    where `accelerate launch --cpu` would start a single process."""
    import subprocess

    import torch

    atomic_write(job_file, [job.to_json().encode()])
    if torch.cuda.is_available():
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if num_processes > 1:
            cmd.append("--multi_gpu")
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes)]
    cmd += ["-m", "metrics.score_job", str(job_file)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return subprocess.run(cmd, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m metrics.score_job JOB.json", file=sys.stderr)
        return 2
    try:
        run_score_job(ScoreJob.from_json(Path(args[0]).read_text()))
    except MmselectError as exc:
        print(f"mmselect score: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
