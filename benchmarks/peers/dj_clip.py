"""Ours vs Data-Juicer's `image_text_similarity_filter`, same HF CLIP folder, same images and texts, same run.

    /work/djvenv/bin/python benchmarks/peers/dj_clip.py            # default: 256 images, 2 rounds (~5 min quiet)
    ... --images 512 --rounds 3 --num-proc 1 2
    ... --images 1024 --num-proc 2 --ours-processes 1 2   # ours also as 2 processes x 1 thread (Data-Juicer's split)

Setup (once). Data-Juicer pins its own versions of many packages, so it lives in its own virtualenv; a .pth file
points that venv at the project venv's site-packages, so torch/transformers/datasets are the project's (no second
torch), and only Data-Juicer and the few small packages the project lacks are installed there:

    python3 -m venv /work/djvenv
    /work/main/.venv/bin/python -c "import site; print(site.getsitepackages()[0])" \\
        > /work/djvenv/lib/python3.11/site-packages/mmselect_venv.pth
    /work/djvenv/bin/pip install --no-deps py-data-juicer==1.6.1
    /work/djvenv/bin/pip install loguru tomli aiohttp httpx jsonargparse   # whatever `import data_juicer` asks for

The model is a random-init HF CLIP ViT-B/32 (transformers' default CLIPConfig) with the standard CLIP BPE
tokenizer (from the vocabulary open_clip ships), saved with save_pretrained: no download. The records are sklearn
digits written as 224 x 224 PNGs, each with a one-sentence answer. Ours: `mmselect score --metrics clip
--clip-model hf:DIR --clip-text-mode truncate` (the whole answer, as Data-Juicer does), timed as a subprocess from
start to the finished table; Data-Juicer: the op's `run` over a NestedDataset, `num_proc` 1 and 2, also timed as a
subprocess from start (import, model load, workers) to the filtered dataset. Rounds interleave. The score columns
are compared by Pearson correlation (Data-Juicer scores logits/100 = logit_scale x cosine / 100; ours 100 x cosine:
a linear map, so the correlation should be ~1). Output: one JSON file with medians, the ratio and machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PY = os.environ.get("MMSELECT_PYTHON", "/work/main/.venv/bin/python")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def build(work: Path, n: int) -> tuple[Path, Path]:
    """The HF CLIP folder and the records (JSONL, images beside it); reused when present."""
    sys.path.insert(0, str(ROOT))
    model, data = work / "hf-clip-b32", work / "records.jsonl"
    if not (model / "config.json").exists():
        import torch
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

        from tests.fixtures.tiny_models import clip_tokenizer_files

        torch.manual_seed(0)
        CLIPModel(CLIPConfig()).save_pretrained(model)
        files = clip_tokenizer_files(work / "_tok")
        CLIPTokenizer(vocab_file=str(files / "vocab.json"), merges_file=str(files / "merges.txt")).save_pretrained(model)
        CLIPImageProcessor().save_pretrained(model)
    lines = data.read_text().splitlines() if data.exists() else []
    if len(lines) != n:
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits

        d = load_digits()
        (work / "images").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        rows = []
        for i in range(n):
            j = i % len(d.images)
            img = Image.fromarray((d.images[j] * 255 / 16).astype("uint8")).resize((224, 224)).convert("RGB")
            img.save(work / "images" / f"{i:05d}.png")
            label = WORDS[int(rng.integers(10))] if i % 3 == 0 else WORDS[int(d.target[j])]  # some mismatches
            rows.append(json.dumps({"id": f"r{i:05d}", "image": f"images/{i:05d}.png", "conversations": [
                {"from": "human", "value": "<image>\nWhat digit is this?"},
                {"from": "gpt", "value": f"A handwritten digit {label} on a dark background"}]}))
        data.write_text("\n".join(rows) + "\n")
    return model, data


def run_dj(model: Path, data: Path, num_proc: int, out: Path) -> None:
    """Child process (Data-Juicer's venv): score every record with the op, write {id: score} to `out`."""
    import torch

    torch.set_num_threads(1)  # Data-Juicer's workers each use one thread; num_proc is the thread budget
    from data_juicer.core.data import NestedDataset
    from data_juicer.ops.filter.image_text_similarity_filter import ImageTextSimilarityFilter
    from data_juicer.utils.constant import Fields, StatsKeys
    from datasets import Dataset

    records = [json.loads(x) for x in data.read_text().splitlines()]
    rows = [{"id": r["id"], "images": [str(data.parent / r["image"])],
             "text": f"<__dj__image> {r['conversations'][1]['value']} <|__dj__eoc|>"} for r in records]
    op = ImageTextSimilarityFilter(hf_clip=str(model), min_score=0.0, max_score=1.0, num_proc=num_proc)
    done = op.run(NestedDataset(Dataset.from_list(rows)), reduce=False)
    scores = {row["id"]: float(row[Fields.stats][StatsKeys.image_text_similarity][0]) for row in done}
    out.write_text(json.dumps(scores))


def read_ours(table: Path) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(table).to_pydict()
    return dict(zip(t["id"], t["clip"]))


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=2, help="our thread budget (Data-Juicer: num_proc x 1 thread)")
    p.add_argument("--ours-processes", type=int, nargs="+", default=[1],
                   help="ours with `score --num-processes N` (N processes x threads/N threads each); 1 = one process")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=Path("/tmp/dj_clip_bench"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/peers_dj_clip.json")
    p.add_argument("--dj-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.dj_child:
        return run_dj(Path(args.dj_child[0]), Path(args.dj_child[1]), int(args.dj_child[2]),
                      Path(args.work) / "dj_scores.json")
    args.work.mkdir(parents=True, exist_ok=True)
    model, data = build(args.work, args.images)
    n = args.images
    ours_table = args.work / "ours.parquet"

    def ours_cmd(procs: int) -> list[str]:
        # --num-processes merges through the score cache, so that variant keeps it (removed before each run)
        return [PROJECT_PY, "-m", "selector.app.cli", "-q", "score", str(data), "--metrics", "clip",
                "--clip-model", f"hf:{model}", "--clip-text-mode", "truncate", "--batch-size", str(args.batch_size),
                "--out", str(ours_table)] + (["--no-cache"] if procs == 1 else ["--num-processes", str(procs)])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    runs = []
    for r in range(args.rounds):
        jobs = [("mmselect", k) for k in args.ours_processes] + [("data-juicer", k) for k in args.num_proc]
        for impl, k in (jobs if r % 2 == 0 else jobs[::-1]):
            if impl == "mmselect":
                ours_table.unlink(missing_ok=True)
                shutil.rmtree(f"{ours_table}.cache", ignore_errors=True)
                per = str(max(1, args.threads // k))  # the same thread budget, split over the processes
                s = timed(ours_cmd(k), {**env, "OMP_NUM_THREADS": per, "MKL_NUM_THREADS": per})
            else:
                s = timed([sys.executable, __file__, "--work", str(args.work), "--dj-child", str(model), str(data),
                           str(k)])
            rec = {"impl": impl, "num_proc": k, "round": r, "seconds": s, "img_per_s": n / s,
                   "load": os.getloadavg()[0]}
            print(json.dumps(rec), flush=True)
            runs.append(rec)
    import numpy as np

    ours, dj = read_ours(args.work / "ours.parquet"), json.loads((args.work / "dj_scores.json").read_text())
    ids = sorted(set(ours) & set(dj))
    corr = float(np.corrcoef([ours[i] for i in ids], [dj[i] for i in ids])[0, 1])
    med = {}
    for impl, k in [("mmselect", k) for k in args.ours_processes] + [("data-juicer", k) for k in args.num_proc]:
        med[f"{impl}-np{k}"] = statistics.median(x["img_per_s"] for x in runs
                                                 if x["impl"] == impl and x["num_proc"] == k)
    best_dj = max(v for k, v in med.items() if k.startswith("data-juicer"))
    best_ours = max(v for k, v in med.items() if k.startswith("mmselect"))
    doc = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "images": n, "cpus": os.cpu_count(), "load_end": os.getloadavg(), "runs": runs,
           "median_img_per_s": med, "ours_over_best_dj": best_ours / best_dj,
           "ours_default_over_best_dj": med[f"mmselect-np{args.ours_processes[0]}"] / best_dj,
           "score_correlation": corr, "scored_both": len(ids)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps({k: doc[k] for k in ("median_img_per_s", "ours_over_best_dj", "score_correlation")}))


if __name__ == "__main__":
    main()
