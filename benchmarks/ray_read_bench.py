"""The Ray engine's input read: by one Ray task per shard (a plain JSONL file) against by the driver (the same file
gzipped, which the driver reads and ships). End-to-end CLI runs of `score --metrics length` joined to one local
2-CPU Ray that this script starts (so Ray's start-up is outside the times), alternated round by round; each run's
wall time and the driver's peak memory (its own maxrss, from wait4).

    python benchmarks/ray_read_bench.py --records 40000 --rounds 2 --out benchmarks/results/ray_read.json
"""
from __future__ import annotations

import argparse
import gzip
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


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(err[-2000:])
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--answer-chars", type=int, default=1500)
    ap.add_argument("--shard-records", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ray_read.json")
    args = ap.parse_args()

    import ray

    from metrics.ray_engine import start_local_ray

    start_local_ray(num_cpus=2, env={"OMP_NUM_THREADS": "1"})
    address = ray.get_runtime_context().gcs_address
    results = {"args": vars(args) | {"out": str(args.out)}, "rounds": []}
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "text.jsonl"
            filler = "lorem ipsum dolor sit amet " * (args.answer_chars // 27 + 1)
            with open(data, "w") as f:
                for i in range(args.records):
                    f.write(json.dumps({"id": f"r{i:07d}", "conversations": [
                        {"from": "human", "value": f"Question {i}?"},
                        {"from": "gpt", "value": f"{i} {filler[:args.answer_chars - 10]}"}]}) + "\n")
            with open(data, "rb") as src, gzip.open(f"{data}.gz", "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
            results["input_mib"] = data.stat().st_size / 2**20
            variants = {"read by tasks (jsonl)": str(data), "read by the driver (jsonl.gz)": f"{data}.gz"}
            for r in range(args.rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                row = {"round": r, "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
                for name in order:
                    out = Path(tmp) / f"out-{r}-{len(row)}"
                    cmd = [sys.executable, "-m", "selector.app.cli", "-q", "score", variants[name], "--metrics",
                           "length", "--engine", "ray", "--ray-address", address, "--ray-actors", "2",
                           "--shard-records", str(args.shard_records), "--out", str(out)]
                    seconds, rss = run(cmd, env)
                    row[name] = {"seconds": seconds, "driver_peak_rss_mib": rss}
                    shutil.rmtree(out, ignore_errors=True)
                print(json.dumps(row), flush=True)
                results["rounds"].append(row)
    finally:
        ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
