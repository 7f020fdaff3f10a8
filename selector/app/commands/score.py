"""`mmselect score`: score an instruction file with quality metrics into a Parquet table (one row per record id,
one column per metric, embeddings as vectors), reusable by `mmselect select --scores`.

`add_metric_args` / `metric_params` are shared with `mmselect select` so both commands configure metrics alike.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from selector.app.commands.common import (column_map, input_dir, input_file, input_spec, metric_list, nonneg_int,
                                          output_dir, output_file, positive_float, positive_int, show_progress)
from selector.core.errors import MmselectError

HELP = """Score every valid record of an instruction file. Metrics: length, clip, reward, judge, embed-image,
embed-text, influence, ifd.
Writes OUT (Parquet: id, one column per metric, `<metric>__reason` where a record could not be scored).
Scores are cached per record id and metric configuration under --score-cache (default OUT.cache), so a re-run or a
run restarted after a kill only computes what is missing. --num-processes N shards the batches over N processes with
accelerate (also works under `accelerate launch -m selector.app.cli score ...`). --engine ray scores on a Ray
cluster (or a local Ray) into the folder OUT: one Parquet file per input shard plus manifest.json, resumable shard
by shard; `mmselect select --scores OUT` reads it (see README, "Running on a cluster")."""


def add_metric_args(p: argparse.ArgumentParser) -> None:
    """Model and metric options shared by `score` and `select`."""
    g = p.add_argument_group("metric models (offline: pass local folders/files; see README)")
    g.add_argument("--clip-model", default=None,
                   help="open_clip architecture (default ViT-bigG-14), local-dir:DIR, hf-hub:ORG/REPO, or a "
                        "transformers CLIP as hf:ID|DIR")
    g.add_argument("--clip-pretrained", default=None,
                   help="open_clip pretrained tag or checkpoint FILE for an architecture name (default "
                        "laion2b_s39b_b160k; 'none' = random init, for tests only)")
    g.add_argument("--clip-text-mode", choices=["sentences", "truncate"], default="sentences",
                   help="clip text: mean of <= --clip-max-sentences sentence embeddings (default), or the whole "
                        "answer truncated to the text window")
    g.add_argument("--clip-max-sentences", type=positive_int, default=10, help="sentences kept per answer (default 10)")
    g.add_argument("--reward-model", default=None,
                   help="HF sequence-classification reward model, folder or hub id "
                        "(default OpenAssistant/reward-model-deberta-v3-large-v2)")
    g.add_argument("--reward-max-length", type=positive_int, default=512, help="reward tokens per pair (default 512)")
    g.add_argument("--judge-backend", choices=["openai", "hf"], default="openai",
                   help="openai: an OpenAI-compatible chat-completions server; hf: a local causal LM")
    g.add_argument("--judge-url", help="judge server base URL, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--judge-model", help="judge model name (openai) or folder / hub id (hf)")
    g.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge API key (the key itself is never logged)")
    g.add_argument("--judge-prompt", type=input_file, help="prompt template file with {instruction} and {answer} "
                                                     "(default: InstructionGPT-4's 0-100 rubric)")
    g.add_argument("--judge-images", action="store_true", help="send the image too (for VLM judges)")
    g.add_argument("--judge-temperature", type=float, default=0.0, help="judge sampling temperature (default 0)")
    g.add_argument("--judge-max-tokens", type=positive_int, default=64, help="judge reply tokens (default 64)")
    g.add_argument("--judge-concurrency", type=positive_int, default=8, help="judge requests in flight (default 8)")
    g.add_argument("--judge-timeout", type=positive_float, default=60.0, help="seconds per judge request (default 60)")
    g.add_argument("--judge-retries", type=nonneg_int, default=5, help="retries on 429/5xx/timeouts (default 5)")
    g.add_argument("--text-encoder", default="st",
                   help="embed-text encoder: st (bundled MiniLM), st:DIR|ID, clip, llm:DIR|ID (last-token hidden "
                        "state of the raw text), or chat:DIR|ID (of the record rendered through a chat LLM's or VLM's "
                        "chat template)")
    g.add_argument("--influence-model", help="influence: the base VLM (folder or hub id) warmed up with LoRA and "
                                             "differentiated (LESS; see README)")
    g.add_argument("--influence-target", type=input_file,
                   help="influence: the target set (e.g. val.jsonl); score = mean gradient cosine to it")
    g.add_argument("--influence-groups", metavar="FIELD",
                   help="influence: a field of the target records (e.g. task): per-group scores and ICONS' vote")
    g.add_argument("--influence-gradient-dims", type=nonneg_int, default=0, metavar="N",
                   help="influence: also write influence__grad, the first N principal components of each record's "
                        "projected gradient, for `train-selector --extra-embedding influence__grad` (default 0: not "
                        "written)")
    g.add_argument("--ifd-model", help="ifd: the base VLM (folder or hub id) whose answer losses give the "
                                       "instruction-following difficulty")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow models that ship their own code (off by default)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--score-cache", type=output_dir, default=None,
                   help="score cache folder (score: default OUT.cache; select: none)")


def metric_params(ns: argparse.Namespace, cache_dir: Path | None = None) -> dict[str, dict]:
    """Per-metric keyword arguments for `metrics.build` from parsed flags (unset flags keep metric defaults)."""
    clip: dict = {}
    if ns.clip_model:
        clip["model"] = ns.clip_model
    if ns.clip_pretrained:
        clip["pretrained"] = ns.clip_pretrained
    reward: dict = {"max_length": ns.reward_max_length, "trust_remote_code": ns.trust_remote_code}
    if ns.reward_model:
        reward["model"] = ns.reward_model
    judge: dict = {"backend": ns.judge_backend, "url": ns.judge_url, "model": ns.judge_model,
                   "api_key_env": ns.judge_key_env, "send_images": ns.judge_images,
                   "temperature": ns.judge_temperature, "max_tokens": ns.judge_max_tokens,
                   "concurrency": ns.judge_concurrency, "timeout": ns.judge_timeout, "max_retries": ns.judge_retries,
                   "trust_remote_code": ns.trust_remote_code}
    if ns.judge_prompt:
        judge["prompt"] = Path(ns.judge_prompt).read_text()
    if cache_dir is not None:
        judge["response_cache"] = str(Path(cache_dir) / "judge-responses.sqlite")
    source, images = getattr(ns, "input", None), getattr(ns, "images", None)  # `compare` has no single input
    pool = {"pool": str(source) if source else None, "images": str(images) if images else None,
            "trust_remote_code": ns.trust_remote_code, "progress": not getattr(ns, "quiet", False)}
    influence = {**pool, "model": ns.influence_model, "target": ns.influence_target, "groups": ns.influence_groups,
                 "gradient_dims": getattr(ns, "influence_gradient_dims", 0),
                 "cache_dir": str(cache_dir) if cache_dir is not None else None}
    return {
        "influence": influence,
        "ifd": {**pool, "model": ns.ifd_model},
        "clip": {**clip, "text_mode": ns.clip_text_mode, "max_sentences": ns.clip_max_sentences},
        "embed-image": dict(clip),
        "embed-text": {**clip, "encoder": ns.text_encoder, "trust_remote_code": ns.trust_remote_code},
        "reward": reward,
        "judge": judge,
    }


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="score records with quality metrics into a Parquet table", description=HELP)
    p.add_argument("input", type=input_spec,
                   help="instruction input: any that `mmselect select` reads (files, folders, shards, hf://)")
    p.add_argument("--out", "-o", type=Path, required=True,
                   help="output score table (.parquet); with --engine ray, a folder of shards and a manifest")
    p.add_argument("--columns", type=column_map, default=None,
                   help="table inputs: which column holds what, e.g. id=uid,image=img,conversations=chat")
    p.add_argument("--images", type=input_dir, help="images root (default: the input's folder)")
    p.add_argument("--format", dest="fmt", choices=["llava", "sharegpt", "messages", "cc_sbu"],
                   help="override format detection")
    p.add_argument("--metrics", type=metric_list, default=("length",),
                   help="comma-separated: length, clip, reward, judge, embed-image, embed-text, influence, ifd "
                        "(default: length)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="records per batch (default 64)")
    p.add_argument("--workers", type=nonneg_int, default=None,
                   help="image-decoding processes (default: half the CPUs, at most 4; 0 = none: decode in the main "
                        "process, as in `select`)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    p.add_argument("--num-processes", type=positive_int, default=1,
                   help="shard the batches over N processes with accelerate (GPUs when present, else CPU)")
    p.add_argument("--allow-rejects", action="store_true",
                   help="score even when one rejection reason covers most records (default: stop, naming it)")
    g = p.add_argument_group("engine (see README, 'Running on a cluster')")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this machine (default; --num-processes shards it); ray: a Ray Data actor pool")
    g.add_argument("--ray-address", default=None,
                   help="Ray cluster to join: auto (the one `ray start` made here) or ray://HOST:PORT "
                        "(default: start a local Ray on this machine)")
    g.add_argument("--ray-actors", type=positive_int, default=None,
                   help="scoring actors (default: one per GPU when a metric runs a model and GPUs exist, else one "
                        "per --ray-cpus-per-actor CPUs)")
    g.add_argument("--ray-cpus-per-actor", type=positive_float, default=1.0, help="CPUs per actor (default 1)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=None,
                   help="GPUs per actor (default 1 when the cluster has GPUs and a metric runs a model, else 0)")
    g.add_argument("--shard-records", type=positive_int, default=1024,
                   help="input records per shard: the unit of work, output file and resume (default 1024)")
    add_metric_args(p)
    return p


def _check_out(ns: argparse.Namespace) -> None:
    """--out is a table file for the local engine, a folder for --engine ray."""
    check = output_dir if ns.engine == "ray" else output_file
    try:
        check(str(ns.out))
    except argparse.ArgumentTypeError as exc:
        raise MmselectError(f"--out {exc}" + ("; --engine ray writes a folder" if ns.engine == "ray" else ""))


def run(ns: argparse.Namespace) -> int:
    import logging

    from metrics.runner import world
    from metrics.score_job import ScoreJob, launch

    from metrics import available
    from selector.core.io import check_outputs

    unknown = [m for m in ns.metrics if m not in available()]
    if unknown or not ns.metrics:
        raise MmselectError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; available: "
                            f"{', '.join(sorted(available()))}")
    for flag, value, low in (("--batch-size", ns.batch_size, 1), ("--num-processes", ns.num_processes, 1),
                             ("--workers", ns.workers if ns.workers is not None else 0, 0)):
        if value < low:
            raise MmselectError(f"{flag} must be at least {low}, got {value}")
    _check_out(ns)
    outputs = [Path(ns.out) / "manifest.json", Path(ns.out) / "scores.rejected.jsonl"] if ns.engine == "ray" else \
        [Path(ns.out), Path(f"{ns.out}.rejected.jsonl")]
    check_outputs([ns.input], outputs)
    if ns.engine == "ray" and ns.num_processes > 1:
        raise MmselectError("--num-processes shards the local engine; with --engine ray size the pool with "
                            "--ray-actors")
    cache = None if ns.no_cache else (ns.score_cache or Path(f"{ns.out}.cache"))
    if ns.num_processes > 1 and cache is None:
        raise MmselectError("--num-processes needs the score cache (the processes merge through it); "
                            "drop --no-cache")
    job = ScoreJob(input=str(ns.input), out=str(ns.out), metrics=tuple(ns.metrics),
                   params=metric_params(ns, cache), images=str(ns.images) if ns.images else None, fmt=ns.fmt,
                   batch_size=ns.batch_size, workers=ns.workers, device=ns.device, precision=ns.precision,
                   cache_dir=str(cache) if cache else None, progress=show_progress(ns),
                   allow_rejects=ns.allow_rejects, columns=ns.columns or {}, engine=ns.engine,
                   ray=_ray_options(ns) if ns.engine == "ray" else {})
    if ns.num_processes > 1 and world()[1] == 1:
        rc = launch(job, ns.num_processes, Path(cache) / "job.json")
        if rc != 0:
            raise MmselectError(f"the {ns.num_processes}-process run failed (exit {rc}); its error is above")
        if not ns.quiet:
            print(f"wrote {ns.out} ({ns.num_processes} processes)")
        return 0
    from metrics.registry import ENGINES

    result = ENGINES.get(job.engine)(job)
    if world()[0] != 0:
        return 0
    from metrics.runner import score_metadata

    meta = score_metadata(result.table)
    parts = [f"{col} ({m['missing']} missing)" if m["missing"] else col for col, m in meta.items()]
    logging.getLogger("mmselect.score").info("stats: %s", {c: m["stats"] for c, m in meta.items() if m["stats"]})
    print(f"scored {result.table.num_rows} records (read {result.read}, rejected {result.rejected}): "
          f"{', '.join(parts)} -> {result.out}" + (f"; rejected list {result.rejected_path}" if result.rejected else ""))
    if result.summary and not ns.quiet:
        print(f"{job.engine}: {result.summary}")
    return 0


def _ray_options(ns: argparse.Namespace) -> dict:
    return {"address": ns.ray_address, "actors": ns.ray_actors, "cpus_per_actor": ns.ray_cpus_per_actor,
            "gpus_per_actor": ns.ray_gpus_per_actor, "shard_records": ns.shard_records}
