"""LLM-judge throughput: the `judge` metric end to end (runner -> client -> local OpenAI-compatible server that
adds `--latency` seconds per call), sequential (concurrency 1) against concurrency 16, in one run.
Acceptance: concurrency 16 gives >= 8x the sequential throughput.

    python benchmarks/judge_bench.py --n 64 --latency 0.1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(n: int, concurrency: int, server_url: str, batch_size: int) -> float:
    from metrics import build
    from metrics.runner import RunnerConfig, score_records

    table = pa.table({"id": [f"r{i}" for i in range(n)], "instruction": ["Describe the image."] * n,
                      "answer": [f"Answer {i}. case:ok-{i % 101}" for i in range(n)], "images": [[]] * n})
    metric = build("judge", url=server_url, model="bench", concurrency=concurrency, timeout=10, backoff=0.05)
    t = time.perf_counter()
    out = score_records(table, [metric], RunnerConfig(batch_size=batch_size, progress=False))
    elapsed = time.perf_counter() - t
    assert out.column("judge").null_count == 0
    return elapsed


def main() -> int:
    from tests.fixtures.fake_judge_server import FakeJudge

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="records per run")
    p.add_argument("--latency", type=float, default=0.1, help="seconds the server adds per call")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="runner batch size (records in flight per batch)")
    p.add_argument("--json", help="write results here")
    args = p.parse_args()
    with FakeJudge(latency_s=args.latency) as server:
        run(4, 4, server.url, args.batch_size)  # warm-up
        seq = run(args.n, 1, server.url, args.batch_size)
        par = run(args.n, args.concurrency, server.url, args.batch_size)
    res = {"n": args.n, "latency_s": args.latency, "batch_size": args.batch_size,
           "sequential_records_per_s": round(args.n / seq, 2),
           f"concurrency_{args.concurrency}_records_per_s": round(args.n / par, 2),
           "speedup": round(seq / par, 2)}
    print(f"judge: sequential {res['sequential_records_per_s']} rec/s, concurrency {args.concurrency} "
          f"{args.n / par:.2f} rec/s, speedup {res['speedup']}x ({'PASS' if res['speedup'] >= 8 else 'FAIL'} >= 8x)")
    print(json.dumps(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
