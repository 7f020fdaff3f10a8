"""The Ray engine's run-wide judge limit: what it costs and what it holds.

A local 2-CPU Ray (127.0.0.1) and the tests' fake judge server (each request takes `--latency` s). Per round:
- `run`: `score --engine ray --metrics judge` over `--records` text records, 2 actors, `--judge-concurrency C`:
  the scoring seconds (Ray start-up excluded), the ideal records x latency / C, and the most requests the server
  saw at once;
- `round trip`: one acquire + release of the limiter from the driver, averaged over `--pairs` calls.

    python benchmarks/judge_limit_bench.py --rounds 2 --out benchmarks/results/judge_limit.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=96)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/judge_limit.json")
    args = ap.parse_args()

    import ray

    from metrics.ray_engine import run_ray_job, start_local_ray
    from metrics.ray_limiter import start_limiter
    from metrics.score_job import ScoreJob
    from selector.core.metric_api import SharedLimit
    from tests.fixtures.fake_judge_server import FakeJudge

    start_local_ray(num_cpus=2, env={"OMP_NUM_THREADS": "1"})
    results = {"args": vars(args) | {"out": str(args.out)}, "rounds": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "text.jsonl"
            data.write_text("".join(json.dumps({"id": f"r{i:04d}", "conversations": [
                {"from": "human", "value": f"Say {i}."}, {"from": "gpt", "value": f"{i % 100} (case:ok-{i % 100})"}]})
                + "\n" for i in range(args.records)))
            for r in range(args.rounds):
                load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
                with FakeJudge(latency_s=args.latency) as judge:
                    job = ScoreJob(input=str(data), out=str(Path(tmp) / f"out{r}"), metrics=("judge",),
                                   params={"judge": {"url": judge.url, "model": "fake", "api_key_env": None,
                                                     "concurrency": args.concurrency}},
                                   batch_size=16, progress=False, engine="ray",
                                   ray={"actors": 2, "shard_records": 16})
                    result = run_ray_job(job)
                    seconds = float(result.summary.split(" records scored in ")[1].split(" s")[0])
                    peak = judge.max_in_flight
                limiter = start_limiter(SharedLimit(args.concurrency, 60.0))
                limiter.release(limiter.acquire())  # the actor started
                start = time.perf_counter()
                for _ in range(args.pairs):
                    limiter.release(limiter.acquire())
                pair_ms = (time.perf_counter() - start) / args.pairs * 1000
                limiter.close()
                row = {"round": r, "uptime": load, "scoring_s": seconds,
                       "ideal_s": args.records * args.latency / args.concurrency, "server_peak_in_flight": peak,
                       "acquire_release_ms": pair_ms, "summary": result.summary}
                print(json.dumps(row), flush=True)
                results["rounds"].append(row)
    finally:
        ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
