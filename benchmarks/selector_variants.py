"""The README's learned-selector commands, as written, on DigitsVQA variants the project has never seen.

For each variant (data seed, noise): `mmselect demo-data`, `mmselect demo-models`, `mmselect score`, then
`mmselect train-selector` with DEFAULT settings and `mmselect select --selector ... --budget 200`, all as
subprocesses exactly as a user types them. Then LoRA on the selection, on a random 200, on the top 200 by CLIP and on
the full pool (the demo's evaluation protocol: 3 epochs, lr 3e-3, test.jsonl), and the clean share of each 200
from truth.jsonl, which nothing upstream reads.

    .venv/bin/python benchmarks/selector_variants.py --work /tmp/variants --variants 11:0.5,12:0.3,13:0.6
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MMSELECT = [sys.executable, "-m", "selector.app.cli", "-q"]
SCORE_METRICS = "length,clip,ifd,embed-image,embed-text"  # the README's learned-selector score command
EVAL_EPOCHS, EVAL_LR = 3.0, 3e-3  # the demo's evaluation fine-tunes (DemoConfig.finetune_epochs / finetune_lr)


def sh(args: list[str], log: Path, allowed: tuple[int, ...] = (0,)) -> tuple[float, int]:
    """Run one CLI command; its output goes to `log`; returns (seconds, exit code)."""
    t = time.perf_counter()
    with log.open("a") as fh:
        fh.write("$ mmselect " + " ".join(args) + "\n")
        fh.flush()
        rc = subprocess.run(MMSELECT + args, stdout=fh, stderr=subprocess.STDOUT, cwd=log.parent).returncode
    if rc not in allowed:
        raise SystemExit(f"command failed ({rc}): mmselect {' '.join(args)}; see {log}")
    return time.perf_counter() - t, rc


def clean_share(ids, truth) -> float:
    return float(np.mean([truth[str(i)]["clean"] for i in ids]))


def run_variant(work: Path, seed: int, noise: float, budget: int, reuse: bool = False,
                train_args: tuple[str, ...] = (), sel_name: str = "SEL") -> dict:
    import pyarrow.parquet as pq

    from selector.app.demo.data import load_truth
    from selector.app.demo.loop import finetune_and_test
    from selector.core.rankers import MetricRanker, RandomRanker
    from selector.core.ranking import select
    from selector.core.records import read_records, write_records
    from selector.core.scores import align_scores

    v = work / f"seed{seed}-noise{noise:g}"
    v.mkdir(parents=True, exist_ok=True)
    log = v / "commands.log"
    t = {}
    # --reuse: a variant's data and models from an earlier run stand (neither depends on the selector's code);
    # the baselines' LoRA runs are then cached too (finetune_and_test keys them by selection and model hash).
    if not (reuse and (v / "D" / "meta.json").exists() and (v / "M" / "vlm-base").exists()):
        t["data"], _ = sh(["demo-data", "--out", "D", "--seed", str(seed), "--noise", str(noise)], log)
        t["models"], _ = sh(["demo-models", "--data", "D", "--out", "M", "--seed", str(seed)], log)
    # The README's score command; always run: the score cache (s.parquet.cache) makes metrics scored before free.
    t["score"], _ = sh(["score", "D/train.jsonl", "--images", "D", "--metrics", SCORE_METRICS, "--clip-model",
                        "local-dir:M/clip", "--ifd-model", "M/vlm-base", "--text-encoder", "st", "--out", "s.parquet"],
                       log)
    t["train-selector"], rc = sh(["train-selector", "--data", "D/train.jsonl", "--images", "D", "--scores",
                                  "s.parquet", "--eval-data", "D/val.jsonl", "--eval-images", "D", "--base-model",
                                  "M/vlm-base", "--out", sel_name, *train_args], log, allowed=(0, 2))
    data, truth = v / "D", load_truth(v / "D" / "truth.jsonl")
    if rc == 0:
        t["select"], _ = sh(["select", "D/train.jsonl", "--images", "D", "--selector", sel_name, "--scores",
                             "s.parquet", "--budget", str(budget), "--out", f"selected-{sel_name}.jsonl"], log)
        manifest = json.loads((v / sel_name / "selector.json").read_text())
        picks = {"learned": [json.loads(line)["id"] for line in (v / f"selected-{sel_name}.jsonl").open()]}
    else:  # refused: the reason and the evidence are in SEL/refused.json; the baselines are still measured
        manifest = json.loads((v / sel_name / "refused.json").read_text())
        manifest.update(kind="refused", label_lr=json.loads((v / sel_name / "labels.json").read_text())["label_lr"])
        manifest.setdefault("choice", {"why": manifest["reason"], "table": []})
        picks = {}
    records = read_records(data / "train.jsonl", images=data)
    rows = records.valid_rows()
    ids = records.table.column("id").take(rows).to_pylist()
    table = align_scores(pq.read_table(v / "s.parquet"), ids)
    for name, ranker in (("random", RandomRanker(seed=0)), ("clip", MetricRanker(("clip",)))):
        picks[name] = [str(i) for i in select(ranker.rank(table), budget, seed=0).ids]
    position = {rid: k for k, rid in enumerate(ids)}
    runs, base = v / "runs", v / "M" / "vlm-base"
    out = {"seed": seed, "noise": noise, "train_args": list(train_args), "pool_clean": clean_share(truth.keys(), truth),
           "model": manifest["kind"], "why": manifest["choice"]["why"],
           "cv": {c["name"]: c["cv_r2"] for c in manifest["choice"]["table"]},
           "signal": manifest["signal"], "label_lr": manifest["label_lr"], "rows": {}}
    t0 = time.perf_counter()
    for name, sel in picks.items():
        f = write_records(records, rows[[position[i] for i in sel]], runs / f"{name}.jsonl")
        r = finetune_and_test(name, f, sel, data, base, runs, EVAL_EPOCHS, EVAL_LR, 0, False)
        out["rows"][name] = {"clean": clean_share(sel, truth), "exact_match": r["eval"].get("exact_match")}
    r = finetune_and_test("full-pool", data / "train.jsonl", ids, data, base, runs, EVAL_EPOCHS, EVAL_LR, 0, False)
    out["rows"]["full pool"] = {"clean": clean_share(ids, truth), "exact_match": r["eval"].get("exact_match")}
    out["label_clean_spearman"] = label_faithfulness(v / sel_name, truth)
    t["finetune+test"] = time.perf_counter() - t0
    out["seconds"] = t
    return out


def label_faithfulness(sel: Path, truth) -> float:
    """Report only: Spearman correlation of each subset's label with the subset's clean share (truth.jsonl)."""
    from scipy.stats import spearmanr

    labels = np.median(np.asarray(json.loads((sel / "labels.json").read_text())["per_seed"]), axis=1)
    saved = json.loads((sel / "subsets.json").read_text())
    ids, sub = np.asarray(saved["ids"]), np.asarray(saved["subset"])
    clean = [clean_share(ids[sub == k], truth) for k in range(len(labels))]
    return float(spearmanr(labels, clean).statistic)


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Learned selector on unseen DigitsVQA variants (README commands, default settings)", "",
             f"Date {date.today()}; machine: {platform.machine()}, {os.cpu_count()} CPUs, no GPU.", "",
             f"Command: `{command}`", "",
             "Each variant: `demo-data`, `demo-models`, `score`, `train-selector` (defaults only), "
             "`select --selector --budget 200`. Evaluation: LoRA 3 epochs at lr 3e-3 on each 200 and on the full "
             "pool, exact match on test.jsonl (400 questions, ~2.5 points binomial std).", "",
             "| variant | pool clean | model kept | learned clean | learned EM | random EM | CLIP EM | full EM | "
             "learned - random | train-selector s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows = r["rows"]
        em = {k: 100 * (v["exact_match"] or float("nan")) for k, v in rows.items()}
        learned = rows.get("learned", {"clean": float("nan")})
        flags = " ".join(r.get("train_args", [])) or "defaults"
        lines.append(f"| seed {r['seed']}, noise {r['noise']:g} ({flags}) | {100 * r['pool_clean']:.1f} | "
                     f"{r['model']} | "
                     f"{100 * learned['clean']:.1f} | {em.get('learned', float('nan')):.1f} | {em['random']:.1f} | "
                     f"{em['clip']:.1f} | {em['full pool']:.1f} | "
                     f"{em.get('learned', float('nan')) - em['random']:+.1f} | "
                     f"{r['seconds']['train-selector']:.0f} |")
    lines += ["", "Per variant: label signal, label learning rate, CV table (R^2 on held-out subset labels).", ""]
    for r in results:
        s = r["signal"]
        cv = ", ".join(f"{k} {v:+.3f}" for k, v in r["cv"].items() if v is not None)
        lines.append(f"- seed {r['seed']}, noise {r['noise']:g}: F = {s['f_stat']:.2f}, p = {s['p_value']:.2g}; "
                     f"lr {r['label_lr']['lr']:g} ({r['label_lr'].get('how')}); CV: {cv}; {r['why']}")
        if r.get("label_clean_spearman") is not None:
            lines.append(f"  - report only (truth.jsonl): Spearman of a subset's label with its clean share "
                         f"{r['label_clean_spearman']:+.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--variants", default="11:0.5,12:0.3,13:0.6", help="seed:noise,...")
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--reuse", action="store_true", help="keep a variant's data, models and scores from an earlier "
                   "run in --work (and, through the LoRA cache, its baseline runs); the selector always retrains")
    p.add_argument("--train-args", default="", help="extra train-selector flags for every variant, e.g. "
                   "'--subset-balance content' (default: none, the README's commands as written)")
    p.add_argument("--sel-name", default="SEL", help="selector folder inside each variant (one per arm)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selector_variants")
    ns = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    results = []
    for item in ns.variants.split(","):
        seed, noise = item.split(":")
        res = run_variant(ns.work.resolve(), int(seed), float(noise), ns.budget, ns.reuse,
                          tuple(shlex.split(ns.train_args)), ns.sel_name)
        print(json.dumps({k: res[k] for k in ("seed", "noise", "model", "rows")}), flush=True)
        results.append(res)
    command = "python benchmarks/selector_variants.py " + " ".join(sys.argv[1:])
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{ns.out}.json").write_text(json.dumps(results, indent=2))
    Path(f"{ns.out}.md").write_text(markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
