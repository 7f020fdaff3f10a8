"""`mmselect score --engine ray` against the local engine, 1 vs 2 Ray actors, and the decode saved by feeding the
validating decode to the preprocessing. End-to-end CLI runs (start-up included), alternated round by round so the
shared machine's load swings hit every variant alike; `uptime` is recorded before each run.

    python benchmarks/ray_bench.py --data D --clip CLIPDIR --rounds 2 --out benchmarks/results/ray_engine.json
    python benchmarks/ray_bench.py --data D10K --build 10000 --clip CLIPDIR --running-cluster --skip-decode

D: a DigitsVQA build (`mmselect demo-data`, train.jsonl scored; `--build N` writes one with N train records when D has
none); CLIPDIR: an open_clip local-dir (the demo CLIP, or the tests' tiny one) or an HF CLIP folder. Each "ray" run
starts its own local Ray inside the CLI process (its start-up is in the time). With `--running-cluster` the "ray"
variants run again, joining a 2-CPU Ray that this script starts on 127.0.0.1 before them and shuts down after them
(`--ray-address`), as on a cluster that is already up: its start-up is not in their time, the actors' start-up is.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def clip_spec(clip: Path) -> str:
    """`--clip-model` for a folder: an HF CLIP (config.json) or an open_clip local-dir."""
    return f"hf:{clip}" if (clip / "config.json").exists() else f"local-dir:{clip}"


def alternate(names, r: int) -> list[str]:
    """`names` in order on even rounds, reversed on odd ones, so no variant always runs first."""
    return list(names) if r % 2 == 0 else list(reversed(list(names)))


def score(data: Path, images: Path, clip: Path, out: Path, extra: list[str]) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "selector.app.cli", "-q", "score", str(data), "--images", str(images), "--metrics",
           "length,clip", "--clip-model", clip_spec(clip), "--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return time.perf_counter() - start


def decode_saving(images: list[str], transform) -> dict:
    """Validate-then-preprocess as two decodes (before) vs one decode feeding the transform (now)."""
    from metrics.clip_models import LoadImage
    from selector.core.images import decode_image, image_problem

    load = LoadImage(transform)
    out = {}
    for name, run in (("two decodes", lambda p: (image_problem(p), load(p))),
                      ("one decode", lambda p: transform(decode_image(p)[0]))):
        start = time.perf_counter()
        for p in images:
            run(p)
        out[name] = time.perf_counter() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--clip", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ray_engine.json")
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--skip-decode", action="store_true", help="skip the one-decode measurement")
    ap.add_argument("--build", type=int, default=None, help="build DigitsVQA with this many train records into --data")
    ap.add_argument("--variants", default=None,
                    help="comma-separated subset of: local, ray-2, ray-1 (default all three)")
    ap.add_argument("--shard-records", type=int, default=250)
    ap.add_argument("--running-cluster", action="store_true",
                    help="also time 1 and 2 actors joining a Ray cluster started beforehand")
    args = ap.parse_args()
    data = args.data / "train.jsonl"
    if args.build and not data.exists():
        from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

        build_digits_vqa(args.data, DigitsVQAConfig(n_train=args.build))
    n = sum(1 for _ in data.open())
    results: dict = {"records": n, "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    shards = ["--shard-records", str(args.shard_records)]
    variants = {"local (--workers 1)": ["--no-cache", "--workers", "1"],
                "ray, 2 actors": ["--engine", "ray", "--ray-actors", "2", *shards],
                "ray, 1 actor": ["--engine", "ray", "--ray-actors", "1", *shards]}
    joining = {name.replace("ray, ", "ray, running cluster, "): extra for name, extra in variants.items()
               if name.startswith("ray")}

    def timed(r: int, name: str, extra: list[str]) -> None:
        out = tmp / f"{r}-{len(results['runs'])}"
        load = uptime()
        seconds = score(data, args.data, args.clip, out if "ray" in name else out.with_suffix(".parquet"), extra)
        results["runs"].append({"round": r, "variant": name, "seconds": round(seconds, 2),
                                "records_per_s": round(n / seconds, 2), "uptime": load})
        print(json.dumps(results["runs"][-1]), flush=True)

    if args.variants:
        short = {"local": "local (--workers 1)", "ray-2": "ray, 2 actors", "ray-1": "ray, 1 actor"}
        variants = {short[v]: variants[short[v]] for v in args.variants.split(",")}
    try:
        for r in range(0 if args.skip_engines else args.rounds):
            for name in alternate(variants, r):
                timed(r, name, variants[name])
            if args.running_cluster:  # a cluster that is up before the job, as a user's would be
                import ray

                from metrics.ray_engine import start_local_ray

                start_local_ray(num_cpus=2)
                address = ray.get_runtime_context().gcs_address
                try:
                    for name in alternate(joining, r):
                        timed(r, name, joining[name] + ["--ray-address", address])
                finally:
                    ray.shutdown()
        if args.skip_decode:
            return
        from metrics.clip_models import load_clip

        transform = load_clip(clip_spec(args.clip), None, "cpu").image_transform
        names = [str(args.data / json.loads(line)["image"]) for line in data.open()]
        big = tmp / "big"
        big.mkdir()
        from PIL import Image
        import numpy as np

        rng = np.random.default_rng(0)
        photos = []
        for i in range(100):
            path = big / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)).save(path, quality=90)
            photos.append(str(path))
        results["decode"] = {"digits 32 px PNG (2,000)": decode_saving(names, transform),
                             "1024x768 JPEG (100)": decode_saving(photos, transform), "uptime": uptime()}
        print(json.dumps(results["decode"]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
