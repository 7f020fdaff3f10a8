"""CLIP scoring throughput: the full `clip` metric runner (PNG files from disk -> DataLoader workers -> model ->
score table) against the bare model's own encode_image + encode_text on already preprocessed tensors, same model,
same batch size, measured alternately in one run. Acceptance: ratio >= 0.9.

With --signal it also checks real signal: the demo CLIP (trained by `mmselect demo-models`) must separate
DigitsVQA's wrong-digit and other-image answers from clean ones with AUC >= 0.9 against truth.jsonl.

    python benchmarks/score_bench.py --n 96 --batch-size 32 --repeats 3
    python benchmarks/score_bench.py --signal --skip-speed
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_pngs(folder: Path, n: int, size: int) -> Path:
    """`n` real digit images upscaled to `size` px, saved as PNG, and a LLaVA JSONL with one-sentence captions."""
    from PIL import Image

    from selector.app.demo.data import WORDS, load_digit_images

    imgs, labels = load_digit_images(size)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = f"images/{i:05d}.png"
        Image.fromarray(imgs[i % len(imgs)]).convert("RGB").save(folder / name)
        d = int(labels[i % len(labels)])
        lines.append(json.dumps({"id": f"b{i:05d}", "image": name, "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"},
            {"from": "gpt", "value": f"A handwritten digit {WORDS[d]}"}]}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "data.jsonl"


def bare_run(backend, pixels, tokens, batch_size: int) -> float:
    """Seconds for the bare model over preprocessed tensors (encode_image + encode_text, normalise, dot)."""
    import torch

    t = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(pixels), batch_size):
            fi = backend.model.encode_image(pixels[s:s + batch_size])
            ft = backend.model.encode_text(tokens[s:s + batch_size])
            (torch.nn.functional.normalize(fi, dim=-1) * torch.nn.functional.normalize(ft, dim=-1)).sum(-1)
    return time.perf_counter() - t


def speed(args) -> dict:
    import torch

    from metrics import build
    from metrics.runner import RunnerConfig, score_records
    from selector.core.records import read_records

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    data = make_pngs(tmp, args.n, args.image_size)
    records = read_records(data, images=tmp, workers=1)
    valid = records.valid()
    metric = build("clip", model=args.model, pretrained="none")
    metric.setup("cpu")
    backend = metric.backend  # the very model object the metric scores with
    from PIL import Image

    pixels = torch.stack([backend.image_transform(Image.open(tmp / p[0]).convert("RGB")) for p in valid["images"]])
    tokens = backend.tokenizer(list(valid["answer"]))
    config = RunnerConfig(batch_size=args.batch_size, workers=args.workers, progress=False)

    def ours() -> float:
        t = time.perf_counter()
        table = score_records(valid, [metric], config, images_root=str(tmp))
        assert table.column("clip").null_count == 0
        return time.perf_counter() - t

    bare_run(backend, pixels[:args.batch_size], tokens[:args.batch_size], args.batch_size)  # warm-up
    ours()
    bare_t, ours_t = [], []
    for _ in range(args.repeats):
        bare_t.append(bare_run(backend, pixels, tokens, args.batch_size))
        ours_t.append(ours())
        print(f"  bare {args.n / bare_t[-1]:.2f} img/s   ours {args.n / ours_t[-1]:.2f} img/s", flush=True)
    bare_ips, ours_ips = args.n / statistics.median(bare_t), args.n / statistics.median(ours_t)
    pairwise = [b / o for b, o in zip(bare_t, ours_t)]
    return {"model": args.model, "image_size": args.image_size, "n": args.n, "batch_size": args.batch_size,
            "workers": args.workers, "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
            "bare_images_per_s": round(bare_ips, 2), "ours_images_per_s": round(ours_ips, 2),
            "ratio_of_medians": round(ours_ips / bare_ips, 3),
            "ratio_of_best": round(min(bare_t) / min(ours_t), 3),  # best-of-N: least disturbed by other load
            "ratio_per_pair": [round(r, 3) for r in pairwise]}


def signal(args) -> dict:
    from sklearn.metrics import roc_auc_score

    from metrics import build
    from selector.app.demo.clip import DemoClipConfig, is_built, train_demo_clip
    from metrics.runner import RunnerConfig, score_records
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa, load_truth
    from selector.core.records import read_records

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="dvqa-")) / "digits"
    if not (data / "train.jsonl").is_file():
        build_digits_vqa(data, DigitsVQAConfig())
    models = Path(args.models) if args.models else data.parent / "models"
    t = time.perf_counter()
    trained = not is_built(models / "clip", data, DemoClipConfig())
    if trained:
        train_demo_clip(data, models / "clip", DemoClipConfig(), progress=False)
    train_s = time.perf_counter() - t
    records = read_records(data / "train.jsonl", images=data, workers=1)
    table = score_records(records.valid(), [build("clip", model=f"local-dir:{models / 'clip'}")],
                          RunnerConfig(batch_size=128, progress=False), images_root=str(records.images_root))
    truth = load_truth(data / "truth.jsonl")
    ids, scores = table.column("id").to_pylist(), table.column("clip").to_numpy()
    out = {"train_seconds": round(train_s, 1) if trained else "cached", "n_scored": len(ids)}
    for name, kinds in {"wrong_digit+other_image": ("wrong_digit", "other_image"), "wrong_digit": ("wrong_digit",),
                        "other_image": ("other_image",), "off_topic": ("off_topic",),
                        "truncated": ("truncated",)}.items():
        keep = np.array([truth[i]["clean"] or truth[i]["corruption"] in kinds for i in ids])
        y = np.array([truth[i]["clean"] for i in ids])[keep]
        out[f"auc_{name}"] = round(float(roc_auc_score(y, scores[keep])), 4)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--n", type=int, default=96, help="images per timed run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="runner's image-decoding processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--signal", action="store_true", help="also check the demo CLIP's AUC on DigitsVQA")
    p.add_argument("--data", help="DigitsVQA folder (default: build one in a temp dir)")
    p.add_argument("--models", help="demo models folder (default: next to the data; trained if missing)")
    p.add_argument("--json", help="write results here")
    args = p.parse_args()
    results = {}
    if not args.skip_speed:
        results["speed"] = speed(args)
        s = results["speed"]
        print(f"clip scoring {s['model']} {s['image_size']}px, batch {s['batch_size']}: bare "
              f"{s['bare_images_per_s']} img/s, ours {s['ours_images_per_s']} img/s, ratio {s['ratio_of_medians']} "
              f"({'PASS' if s['ratio_of_medians'] >= 0.9 else 'FAIL'} >= 0.9)")
    if args.signal:
        results["signal"] = signal(args)
        a = results["signal"]["auc_wrong_digit+other_image"]
        print(f"demo CLIP AUC (wrong_digit + other_image vs clean): {a} ({'PASS' if a >= 0.9 else 'FAIL'} >= 0.9)")
        print(json.dumps(results["signal"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results.get("speed", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
