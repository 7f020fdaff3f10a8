"""Parquet benchmark (issue 16): read, validate and select by length on 1,000,000 text rows in Parquet against a bare
`pyarrow.parquet.read_table` of the same columns; and validation throughput of 20,000 embedded 64x64 PNGs on 1 and
2 workers beside the same images as JSONL + files.

Each stage runs in its own subprocess, so its wall time and peak RSS are its own; the stages take turns over the
rounds, so a slow spell of a shared machine falls on all of them alike.

    python benchmarks/formats_bench.py --rows 1000000 --images 20000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
stage, path, extra = sys.argv[1], sys.argv[2], sys.argv[3]
t = t0 = time.perf_counter()
if stage == "read_table":
    import pyarrow.parquet as pq
    t = time.perf_counter()
    pq.read_table(path, columns=["id", "conversations"])
elif stage in ("select", "select+write"):
    from pathlib import Path
    from selector.core.arrow_memory import prefer_fast_allocator
    prefer_fast_allocator()  # what the mmselect CLI sets at its entry
    from selector.app.pipeline import SelectConfig, run_select, score_table
    from selector.core.rankers import MetricRanker
    from selector.core.ranking import select
    from selector.core.records import read_records
    import metrics.length
    t = time.perf_counter()
    if stage == "select":  # read + validate + length + select 200, as the acceptance states it
        rs = read_records(path)
        scores = score_table(rs, SelectConfig(input=path, out=Path(extra), budget=200, progress=False))
        chosen = select(MetricRanker(("length",)).rank(scores), 200)
        assert len(chosen) == 200 and len(rs) == rs.valid_rows().size
    else:  # the whole `mmselect select` run, Parquet output and report included
        r = run_select(SelectConfig(input=path, out=extra, budget=200, metrics=("length",), progress=False))
        print(r.accounting.line(), file=sys.stderr)
elif stage == "images":
    from selector.core.arrow_memory import prefer_fast_allocator
    from selector.core.records import read_records
    prefer_fast_allocator()
    t = time.perf_counter()  # validation throughput: imports excluded
    rs = read_records(path, workers=int(extra))
    assert len(rs.rejected()) == 0, rs.rejected()[:3]
now = time.perf_counter()
wall, after_imports = now - t0, now - t
# This process's own peak (VmHWM: ru_maxrss would carry the parent's peak across exec on Linux), and the peak of
# the decoder processes it forked.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
rss = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"wall": wall, "work": after_imports, "rss_mib": rss / 1024}))
"""


def make_text_parquet(path: Path, n: int, row_group: int = 65536, seed: int = 0) -> None:
    """`n` LLaVA rows (id, conversations), text only, the same word statistics as io_bench's JSONL."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    words = np.array("the a cat dog image shows red blue small large on under with and of picture digit".split())
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    schema = pa.schema([("id", pa.string()), ("conversations", pa.list_(turn))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, row_group):
            m = min(row_group, n - start)
            lens = rng.integers(5, 40, m)
            q = [" ".join(rng.choice(words, 8)) for _ in range(m)]
            a = [" ".join(rng.choice(words, k)) for k in lens]
            values = pa.StructArray.from_arrays([pa.array(["human", "gpt"] * m), pa.array([x for p in zip(q, a) for x in p])],
                                                names=["from", "value"])
            conv = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * m + 1, 2, dtype=np.int32)), values)
            ids = pa.array([f"rec-{start + i:07d}" for i in range(m)])
            writer.write_table(pa.table({"id": ids, "conversations": conv}, schema=schema), row_group_size=row_group)


def make_image_inputs(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """The same `n` random 64x64 PNGs embedded in Parquet (HF Image structs, 100 rows per row group as `datasets`
    writes image data) and as files beside a JSONL."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    with open(folder / "images.jsonl", "w") as f:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
            (folder / "img" / f"{i}.png").write_bytes(buf.getvalue())
            conv = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": f"Noise {i}."}]
            f.write(json.dumps({"id": f"r{i}", "image": f"img/{i}.png", "conversations": conv}) + "\n")
            rows.append({"id": f"r{i}", "image": {"bytes": buf.getvalue(), "path": f"{i}.png"}, "conversations": conv})
    pq.write_table(pa.Table.from_pylist(rows), folder / "images.parquet", row_group_size=100)
    return folder / "images.parquet", folder / "images.jsonl"


def run(stage: str, path: Path, extra: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, stage, str(path), extra], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mmselect-formats-bench")
    ap.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many rounds")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    text = args.workdir / f"text-{args.rows}.parquet"
    if not text.exists():
        make_text_parquet(text, args.rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"file: {text.stat().st_size / 2**20:.0f} MiB Parquet, {args.rows:,} rows\n")
    out = str(args.workdir / "selected.parquet")
    rounds = [(run("read_table", text), run("select", text, out), run("select+write", text, out))
              for _ in range(args.repeats)]
    bare, sel, full = (min((r[k] for r in rounds), key=lambda r: r["wall"]) for k in range(3))
    paired = sorted(r[1]["wall"] / r[0]["wall"] for r in rounds)
    work = sorted(r[1]["work"] / r[0]["work"] for r in rounds)
    print("| stage | wall with imports (s) | without imports (s) | peak RSS (MiB) |\n|---|---|---|---|")
    for name, r in (("bare pyarrow.parquet.read_table(id, conversations)", bare),
                    ("mmselect: read + validate + select 200 by length", sel),
                    ("mmselect select (the above + Parquet output + report)", full)):
        print(f"| {name} | {r['wall']:.2f} | {r['work']:.2f} | {r['rss_mib']:.0f} |")
    print(f"\nratio (target <= 1.5x), per round, median [range]: with imports {paired[len(paired) // 2]:.2f}x "
          f"[{paired[0]:.2f}-{paired[-1]:.2f}], without imports {work[len(work) // 2]:.2f}x "
          f"[{work[0]:.2f}-{work[-1]:.2f}]; peak RSS {max(sel['rss_mib'], full['rss_mib']) / 1024:.2f} GiB "
          "(target < 2 GiB)")
    if args.images:
        pq_path, jl = args.workdir / f"img-{args.images}" / "images.parquet", args.workdir / f"img-{args.images}" / "images.jsonl"
        if not pq_path.exists():
            make_image_inputs(pq_path.parent, args.images)
        print(f"\nimage records ({args.images:,} PNGs, 64x64, full decode; imports excluded):\n")
        print("| input | workers | wall (s) | records/s | peak RSS (MiB) |\n|---|---|---|---|---|")
        for name, path in (("Parquet, embedded bytes", pq_path), ("JSONL + image files", jl)):
            for workers in (1, 2):
                r = min((run("images", path, str(workers)) for _ in range(args.repeats)), key=lambda r: r["wall"])
                print(f"| {name} | {workers} | {r['wall']:.2f} | {args.images / r['wall']:.0f} | {r['rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
