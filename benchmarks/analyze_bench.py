"""`mmselect analyze` at scale: 1,000,000 text-only records with the `length` metric (issue 21: < 60 s, RSS < 2 GiB,
page < 5 MB). The command runs in its own process (the CLI, as a user runs it), timed from outside; its peak RSS is
the child's own.

    python benchmarks/analyze_bench.py --records 1000000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.io_bench import make_text_file

TARGETS = {"wall_s": 60.0, "rss_gib": 2.0, "page_mb": 5.0}


def run(records: int, work: Path) -> dict:
    data = work / f"text-{records}.jsonl"
    if not data.exists():
        make_text_file(data, records)
    out = work / "report"
    cmd = [sys.executable, "-m", "selector.app.cli", "-q", "analyze", str(data), "--metrics", "length",
           "--out", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"analyze failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # KiB -> GiB
    page = (out / "index.html").stat().st_size / 1e6
    result = {"records": records, "file_mib": data.stat().st_size / 2 ** 20, "wall_s": wall, "rss_gib": rss,
              "page_mb": page, "stdout": proc.stdout.strip(), "cpus": os.cpu_count(),
              "load": os.getloadavg(), "python": platform.python_version(),
              "command": " ".join(["mmselect"] + cmd[3:])}
    result["met"] = {k: result[k] < v for k, v in TARGETS.items()}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--work", type=Path, help="folder for the generated file and the page (default: a temp folder)")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.records, args.work or Path(tmp))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
