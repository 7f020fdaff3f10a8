"""Every way mmselect chooses 200 records, on DigitsVQA (noise 0.4) and DigitsVQA-Mix, LoRA-fine-tuned and tested.

Per dataset: `mmselect demo-data [--mix]`, `demo-models`, `score` (length, clip, embed-image, embed-text), `score`
influence (and, on the mix, influence with the per-task vote), `score` ifd, and `train-selector` with defaults, all
as the CLI commands a user types (skipped when their outputs exist: `--work` is a cache). Then, per seed, the
selections (random; top-200 by each single metric; the linear fit and the learned selector; influence; influence
with vote; IFD; the diversity rankers; influence + diversity), each LoRA-fine-tuned with the demo's evaluation
protocol (`selector.app.demo.loop.finetune_and_test`: 3 epochs, lr 3e-3, test.jsonl), and the full pool. Reported:
test exact match overall and per task, clean share (truth.jsonl, read only here), and the selection's time.

    nice -n 5 .venv/bin/python benchmarks/bench_selectors.py --work /tmp/selectors --datasets digits,mix --seeds 0,1,2

"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MMSELECT = [sys.executable, "-m", "selector.app.cli", "-q"]
EVAL_EPOCHS, EVAL_LR = 3.0, 3e-3  # the demo's evaluation fine-tunes (DemoConfig.finetune_epochs / finetune_lr)
BUDGET = 200
BASE_METRICS = "length,clip,embed-image,embed-text"


CPU_SECONDS: dict[str, float] = {}  # command name -> CPU seconds of its process (user + system)


def sh(args: list[str], log: Path, cwd: Path) -> float:
    """Run one CLI command (output appended to `log`); returns its wall seconds (CPU seconds go to CPU_SECONDS,
    the fairer figure on a shared machine); raises on failure."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with log.open("a") as fh:
        fh.write("$ mmselect " + " ".join(args) + "\n")
        fh.flush()
        rc = subprocess.run(MMSELECT + args, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd).returncode
    if rc != 0:
        raise RuntimeError(f"command failed ({rc}): mmselect {' '.join(args)}; see {log}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    key = " ".join(args[:4])
    CPU_SECONDS[key] = CPU_SECONDS.get(key, 0.0) + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - t


def prepare(work: Path, name: str, seed: int, only: set[str]) -> dict:
    """Data, models and score tables of one dataset (cached in work/name); returns the seconds of each step."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    log, t = d / "commands.log", {}
    mix = ["--mix"] if name == "mix" else []
    if not (d / "D" / "meta.json").exists():
        t["data"] = sh(["demo-data", *mix, "--out", "D", "--seed", "0", "--noise", "0.4"], log, d)
    if not (d / "M" / "vlm-base" / "config.json").exists():
        t["models"] = sh(["demo-models", "--data", "D", "--out", "M", "--seed", "0"], log, d)
    if not (d / "s.parquet").exists():
        t["score"] = sh(["score", "D/train.jsonl", "--images", "D", "--metrics", BASE_METRICS, "--clip-model",
                         "local-dir:M/clip", "--text-encoder", "st", "--out", "s.parquet"], log, d)
    influence = ["--influence-model", "M/vlm-base", "--influence-target", "D/val.jsonl"]
    out = "influence.parquet"  # the warm-up seed is the metric's default (0) for every evaluation seed
    if "influence" in only and not (d / out).exists():
        t["influence"] = sh(["score", "D/train.jsonl", "--images", "D", "--metrics", "influence", *influence,
                             "--out", out, "--score-cache", "cache"], log, d)
    out = "influence-vote.parquet"
    if name == "mix" and "influence" in only and not (d / out).exists():
        t["influence-vote"] = sh(["score", "D/train.jsonl", "--images", "D", "--metrics", "influence", *influence,
                                  "--influence-groups", "task", "--out", out, "--score-cache", "cache"],
                                 log, d)
    if "ifd" in only and not (d / "ifd.parquet").exists():
        t["ifd"] = sh(["score", "D/train.jsonl", "--images", "D", "--metrics", "ifd", "--ifd-model", "M/vlm-base",
                       "--out", "ifd.parquet"], log, d)
    if "learned" in only and not any((d / "SEL" / f).exists() for f in ("selector.json", "refused.json")):
        try:
            t["train-selector"] = sh(["train-selector", "--data", "D/train.jsonl", "--images", "D", "--scores",
                                      "s.parquet", "--eval-data", "D/val.jsonl", "--eval-images", "D",
                                      "--base-model", "M/vlm-base", "--out", "SEL"], log, d)
        except RuntimeError:
            if not (d / "SEL" / "refused.json").exists():  # a refusal is a result (no learned row); else a failure
                raise
    return t


def refusal(d: Path) -> str | None:
    """Why train-selector refused on this dataset (its refused.json), or None."""
    f = d / "SEL" / "refused.json"
    return json.loads(f.read_text()).get("reason") if f.exists() else None


def combined_scores(d: Path, seed: int) -> Path:
    """One score table with every column (base metrics, influence, influence_vote, ifd) for `select --scores`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = d / f"all-seed{seed}.parquet"
    table = pq.read_table(d / "s.parquet")
    for f, rename in (("influence.parquet", None), ("influence-vote.parquet", "influence_vote"),
                      ("ifd.parquet", None)):
        if not (d / f).exists():
            continue
        extra = pq.read_table(d / f)
        pos = {rid: i for i, rid in enumerate(extra.column("id").to_pylist())}
        take = pa.array([pos[r] for r in table.column("id").to_pylist()])
        for col in extra.column_names:
            if col == "id" or "__" in col:
                continue
            name = rename or col
            table = table.append_column(name, extra.column(col).take(take))
    pq.write_table(table.replace_schema_metadata(None), out)
    return out


def selections(d: Path, seed: int, only: set[str], log: Path) -> dict[str, tuple[list[str], float]]:
    """name -> (selected ids, seconds to select)."""
    scores = combined_scores(d, seed)
    import pyarrow.parquet as pq

    cols = set(pq.read_schema(scores).names)
    out = {}
    common = ["D/train.jsonl", "--images", "D", "--budget", str(BUDGET), "--seed", str(seed)]

    def run(name: str, extra: list[str], table: str = scores.name):
        path = d / "sel" / f"{name}-seed{seed}.jsonl"
        path.parent.mkdir(exist_ok=True)
        if path.exists():
            path.unlink()
        for side in (Path(f"{path}.rejected.jsonl"), Path(f"{path}.report.json")):
            side.unlink(missing_ok=True)
        secs = sh(["select", *common, "--scores", table, *extra, "--out", str(path.relative_to(d))], log, d)
        out[name] = ([json.loads(line)["id"] for line in path.open()], secs)

    for metric in ("length", "clip"):
        run(f"top:{metric}", ["--metrics", metric])
    if "learned" in only and (d / "SEL" / "selector.json").exists():
        run("learned", ["--selector", "SEL"])
        run("linear", ["--selector", "SEL/linear"])
    for col, name in (("influence", "influence"), ("ifd", "ifd")):
        if col in cols:
            run(name, ["--metrics", col])
    if (d / "influence-vote.parquet").exists():  # its `influence` column is the vote: select reads it from there
        run("influence+vote", ["--metrics", "influence"], "influence-vote.parquet")
    if "diversity" in only:
        run("clip+diversity", ["--metrics", "clip", "--diversity", "auto", "--diversity-features",
                               "embed-image,embed-text"])
        run("semdedup", ["--metrics", "clip", "--semdedup", "0.95", "--diversity-features", "embed-image"])
        run("coincide", ["--coincide", "--diversity-features", "embed-image"])
        if "influence" in cols:
            run("influence+diversity", ["--metrics", "influence", "--diversity", "auto", "--diversity-features",
                                        "embed-image,embed-text"])
    return out


def random_ids(d: Path, seed: int) -> list[str]:
    from selector.core.rankers import RandomRanker
    from selector.core.ranking import select
    import pyarrow.parquet as pq

    table = pq.read_table(d / "s.parquet")
    return [str(i) for i in select(RandomRanker(seed=seed).rank(table), BUDGET, seed=seed).ids]


def per_task(run_dir: Path, tasks: dict[str, str]) -> dict[str, float]:
    """Exact match per task from a fine-tuning run's predictions.jsonl (test ids -> task)."""
    hits: dict[str, list[bool]] = {}
    for row in map(json.loads, (run_dir / "predictions.jsonl").open()):
        hits.setdefault(tasks.get(row["id"], "all"), []).append(bool(row["exact_match"]))
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


def evaluate(work: Path, name: str, seed: int, only: set[str]) -> dict:
    from selector.app.demo.data import load_truth
    from selector.app.demo.loop import finetune_and_test
    from selector.core.records import read_records, write_records

    d = work / name
    log = d / "commands.log"
    t_prep = prepare(work, name, seed, only)
    truth = load_truth(d / "D" / "truth.jsonl")
    tasks = {r["id"]: r.get("task", "identify") for r in map(json.loads, (d / "D" / "test.jsonl").open())}
    picks = selections(d, seed, only, log)
    t0 = time.perf_counter()
    picks["random"] = (random_ids(d, seed), time.perf_counter() - t0)
    records = read_records(d / "D" / "train.jsonl", images=d / "D")
    rows = records.valid_rows()
    ids = records.table.column("id").take(rows).to_pylist()
    position = {rid: k for k, rid in enumerate(ids)}
    runs, base, data = d / f"runs-seed{seed}", d / "M" / "vlm-base", d / "D"
    out = {"dataset": name, "seed": seed, "prep_s": t_prep, "prep_cpu_s": dict(CPU_SECONDS), "rows": {},
           "learned_refused": refusal(d)}
    cache: dict = {}
    for sel_name, (sel, secs) in sorted(picks.items()):
        key = sel_name.replace(":", "-").replace("+", "-")
        f = write_records(records, rows[[position[i] for i in sel]], runs / f"{key}.jsonl")
        r = finetune_and_test(key, f, sel, data, base, runs, EVAL_EPOCHS, EVAL_LR, seed, False, cache)
        out["rows"][sel_name] = {"n": len(sel), "clean": float(np.mean([truth[i]["clean"] for i in sel])),
                                 "exact_match": r["eval"].get("exact_match"),
                                 "per_task": per_task(runs / f"ft-{key}", tasks), "select_s": secs,
                                 "finetune_s": r["seconds"]}
        print(f"{name} seed {seed} {sel_name}: {out['rows'][sel_name]['exact_match']}", flush=True)
    r = finetune_and_test("full-pool", data / "train.jsonl", ids, data, base, runs, EVAL_EPOCHS, EVAL_LR, seed,
                          False, cache)
    out["rows"]["full pool"] = {"n": len(ids), "clean": float(np.mean([truth[i]["clean"] for i in ids])),
                                "exact_match": r["eval"].get("exact_match"),
                                "per_task": per_task(runs / "ft-full-pool", tasks), "select_s": 0.0,
                                "finetune_s": r["seconds"]}
    return out


def markdown(results: list[dict], command: str) -> str:
    lines = [f"Command: `{command}` ({date.today().isoformat()}, 2-core CPU shared with parallel work, no GPU)", ""]
    for name in sorted({r["dataset"] for r in results}):
        rs = [r for r in results if r["dataset"] == name]
        seeds = [r["seed"] for r in rs]
        tasks = sorted({t for r in rs for row in r["rows"].values() for t in row["per_task"]})
        lines += [f"### {name} (seeds {', '.join(map(str, seeds))}; test exact match %, mean ± std over seeds)", "",
                  "| selection | test EM | " + " | ".join(tasks) + " | clean share | select s |",
                  "|---|---|" + "---|" * len(tasks) + "---|---|"]
        names = sorted({k for r in rs for k in r["rows"]}, key=lambda k: -np.mean(
            [r["rows"][k]["exact_match"] for r in rs if k in r["rows"]]))
        for k in names:
            got = [r["rows"][k] for r in rs if k in r["rows"]]
            em = 100 * np.array([g["exact_match"] for g in got])
            pt = [100 * np.array([g["per_task"].get(t, np.nan) for g in got]) for t in tasks]
            fmt = (lambda a: f"{a.mean():.1f} ± {a.std():.1f}") if len(got) > 1 else (lambda a: f"{a.mean():.1f}")
            lines.append(f"| {k} | {fmt(em)} | " + " | ".join(fmt(a) for a in pt)
                         + f" | {np.mean([g['clean'] for g in got]):.3f} | "
                         + f"{np.mean([g['select_s'] for g in got]):.0f} |")
        why = next((r.get("learned_refused") for r in rs if r.get("learned_refused")), None)
        if why:
            lines += ["", f"No learned or linear row: `train-selector` refused (exit 2, no selector saved): {why}"]
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["dataset"] for r in results})
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names):
        rs = [r for r in results if r["dataset"] == name]
        keys = sorted({k for r in rs for k in r["rows"]},
                      key=lambda k: np.mean([r["rows"][k]["exact_match"] for r in rs if k in r["rows"]]))
        means = [100 * np.mean([r["rows"][k]["exact_match"] for r in rs if k in r["rows"]]) for k in keys]
        colours = ["tab:red" if k == "full pool" else "tab:gray" if k in ("random", "top:clip") else "tab:blue"
                   for k in keys]
        ax.barh(keys, means, color=colours)
        ax.set_xlabel("test exact match (%)")
        ax.set_title(f"{name}: 200 selected, LoRA 3 epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--datasets", default="digits,mix")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="influence,ifd,learned,diversity",
                    help="which costly groups to include (comma-separated)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selectors.json")
    args = ap.parse_args()
    only = set(args.only.split(","))
    results = []
    for name in args.datasets.split(","):
        for seed in map(int, args.seeds.split(",")):
            results.append(evaluate(args.work, name, seed, only))
            args.out.write_text(json.dumps(results, indent=1))
    command = "nice -n 5 .venv/bin/python benchmarks/bench_selectors.py " + " ".join(sys.argv[1:])
    md = markdown(results, command)
    args.out.with_suffix(".md").write_text(md)
    plot(results, args.out.with_suffix(".png"))
    print(md)


if __name__ == "__main__":
    main()
