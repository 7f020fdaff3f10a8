"""The `mmselect demo` loop on DigitsVQA, as a library call: data and models -> scores -> learned selector -> select
200 -> LoRA on each selection (and baselines, and the full pool) -> test accuracy -> table and report.

Everything is cached under the cache folder (data, models, score cache, genuine labels, fine-tuning runs), so a
second run only redoes what changed. `truth.jsonl` is read ONLY to report how clean a selection is and to draw the
clean-vs-corrupted plots; no metric, ranker or label ever sees it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path


from selector.app.demo.report import clean_share, format_table, write_report
from selector.core.io import atomic_path, atomic_write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    cache: Path
    budget: int = 200
    seed: int = 0       # selector, clustering, random baseline and fine-tuning seed
    data_seed: int = 0  # DigitsVQA build and demo models (kept fixed across seeds: the models are built once)
    noise: float = 0.4
    # Label settings: None keeps the selector's defaults (selector.learned.config.LabelConfig), which are the ones
    # the demo uses; the flags exist to try others.
    n_subsets: int | None = None
    subset_method: str | None = None
    label_metric: str | None = None
    label_seeds: tuple[int, ...] | None = None
    subset_seed: int | None = 0  # label subsets and their labels are shared by every seed (None: vary with seed)
    lr: float | None = None  # LoRA learning rate of the label runs (None: the label pilot measures it)
    finetune_epochs: float = 3.0
    # The evaluation fine-tunes (each selection, the full pool): the demo's fixed protocol, so tables compare across
    # versions; the tiny VLM needs more than the usual 2e-4.
    finetune_lr: float = 3e-3
    full_pool: bool = True
    stage1_epochs: float | None = None  # stage-1 epochs of the demo VLM (None: the finetune package's default)
    # The README's score command adds `ifd` (BENCHMARKS.md, issue 13, session 8); the demo leaves it out to stay under
    # 5 minutes (about 30 s more), since on the demo's pool the network is kept without it. `--metrics ...,ifd` adds it.
    metrics: tuple[str, ...] = ("length", "clip", "embed-image", "embed-text")
    report: Path | None = None  # default CACHE/report-data{data_seed}-seed{seed}
    progress: bool = True
    # torch's CPU kernels sum in an order that depends on the thread count, so a fixed count makes the demo models,
    # labels and selections bit-identical across machines (with the same instruction set); 0 = torch's default.
    threads: int = 2


def build_data(config: DemoConfig) -> Path:
    """DigitsVQA under CACHE/digitsvqa-noise{noise}-seed{seed}, built once (meta.json marks a finished build)."""
    from selector.app.demo.data import DigitsVQAConfig, build_digits_vqa

    out = Path(config.cache) / f"digitsvqa-noise{config.noise:g}-seed{config.data_seed}"
    if not (out / "meta.json").exists():
        build_digits_vqa(out, DigitsVQAConfig(noise=config.noise, seed=config.data_seed))
    return out


def run_minimal(config: DemoConfig, print_fn=print) -> dict:
    """Build DigitsVQA, select `budget` train records by answer length, and report the clean share (the fallback
    when the CLIP metrics or the fine-tuning package are not installed)."""
    from selector.app.demo.data import load_truth
    from selector.app.pipeline import SelectConfig, run_select

    data = build_data(config)
    truth = load_truth(data / "truth.jsonl")
    out_dir = Path(config.cache) / "runs" / f"minimal-data{config.data_seed}-seed{config.seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = run_select(SelectConfig(input=data / "train.jsonl", out=out_dir / "selected-length.jsonl",
                                     budget=config.budget, images=data, metrics=("length",), seed=config.seed,
                                     progress=config.progress))
    pool_share = clean_share(truth.keys(), truth)
    valid_share = clean_share(result.records.valid()["id"], truth)
    sel_share = clean_share(result.selection.ids, truth)
    print_fn(result.accounting.line())
    print_fn(f"clean share: pool {pool_share:.3f} (valid records {valid_share:.3f}), "
             f"selected by length {sel_share:.3f}  ({result.out})")
    return {"accounting": result.accounting, "pool_clean": pool_share, "valid_clean": valid_share,
            "selected_clean": sel_share}


# ------------------------------------------------------------------------------------------------ full loop

def full_loop_available() -> str | None:
    """None when every piece of the full loop is installed, else what is missing."""
    import importlib

    for mod in ("finetune.trainer", "selector.app.demo.vlm", "selector.app.demo.clip", "metrics.clip", "metrics.embed"):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            return f"{mod} ({exc})"
    return None


def build_models(data: Path, cache: Path, seed: int, progress: bool,
                 stage1_epochs: float | None = None) -> dict[str, Path]:
    """The demo's CLIP (open_clip local dir) and stage-1 VLM, trained offline on pretrain.jsonl; built once."""
    from dataclasses import replace

    from selector.app.demo.vlm import STAGE1, build_vlm_base
    from selector.app.demo.clip import is_built, train_demo_clip

    models = Path(cache)
    clip = models / "clip"
    if not is_built(clip, data):
        train_demo_clip(data, clip, progress=progress)
    if stage1_epochs is None:
        vlm = build_vlm_base(data, models / "vlm-base", seed=seed, progress=progress)
    else:
        vlm = build_vlm_base(data, models / f"vlm-base-e{stage1_epochs:g}", seed=seed, progress=progress,
                             settings=replace(STAGE1, epochs=float(stage1_epochs)))
    return {"clip": clip, "vlm-base": vlm}


def demo_metrics(names: tuple[str, ...], models: dict[str, Path], data: Path, progress: bool = False):
    """Metric objects for the demo: the CLIP ones use the demo CLIP, the text embedding the bundled MiniLM, `ifd` the
    stage-1 VLM on the train records."""
    from metrics.registry import build

    clip = f"local-dir:{models['clip']}"
    params = {"clip": {"model": clip}, "embed-image": {"model": clip}, "embed-text": {"encoder": "st"},
              "ifd": {"model": str(models["vlm-base"]), "pool": str(data / "train.jsonl"), "images": str(data),
                      "progress": progress}}
    return [build(n, **params.get(n, {})) for n in names]


def score_pool(data: Path, cache: Path, metrics, progress: bool):
    """Score the valid train records (runner cache under CACHE/scores); returns (records, valid rows, table)."""
    import pyarrow.parquet as pq

    from metrics.runner import RunnerConfig, score_records
    from selector.core.records import read_records

    records = read_records(data / "train.jsonl", images=data)
    rows = records.valid_rows()
    table = score_records(records.valid(), metrics, RunnerConfig(cache_dir=Path(cache), progress=progress),
                          images_root=str(data))
    with atomic_path(Path(cache) / "train-scores.parquet") as tmp:
        pq.write_table(table, tmp)
    return records, rows, table


def _selection_key(ids, **settings) -> str:
    h = hashlib.sha256(json.dumps({"ids": sorted(str(i) for i in ids), **settings}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def finetune_and_test(name: str, subset_file: Path, ids, data: Path, base: Path, runs: Path, epochs: float,
                      lr: float, seed: int, progress: bool, eval_cache: dict | None = None) -> dict:
    """LoRA on `subset_file`, evaluated on test.jsonl; cached by the selection's ids and the settings.
    `eval_cache` (see `finetune.trainer.train`) lets the runs share one encoding of test.jsonl."""
    from finetune.config import FinetuneConfig
    from finetune.trainer import train

    from selector.core.resolve import model_fingerprint

    key = _selection_key(ids, base=model_fingerprint(base), epochs=epochs, lr=lr, seed=seed)
    out = runs / f"ft-{name}"
    done = out / "demo-result.json"
    if done.exists():
        cached = json.loads(done.read_text())
        if cached.get("key") == key:
            return cached
    t0 = time.perf_counter()
    result = train(FinetuneConfig(
        model=str(base), data=str(subset_file), images=str(data), out=str(out), eval_data=str(data / "test.jsonl"),
        epochs=epochs, lr=lr, seed=seed, progress=progress, report_to="none", max_new_tokens=4,
        overwrite=True), eval_cache)  # a stale run (other selection or settings) is replaced
    res = {"key": key, "name": name, "n": len(ids), "eval": result.metrics["eval"],
           "seconds": time.perf_counter() - t0}
    atomic_write(done, [json.dumps(res, indent=2).encode()])
    return res


def base_accuracy(base: Path, data: Path, runs: Path) -> dict:
    """The stage-1 model's own test metrics (no stage 2), cached for this exact model (weights hash)."""
    from finetune.evaluation import evaluate
    from selector.core.resolve import model_fingerprint

    done = runs / "base-test.json"
    key = model_fingerprint(base)
    if done.exists():
        cached = json.loads(done.read_text())
        if cached.get("model_sha256") == key:
            return cached
    ev = evaluate(str(base), str(data / "test.jsonl"), images=str(data))
    ev = {**ev, "model_sha256": key}
    atomic_write(done, [json.dumps(ev, indent=2).encode()])
    return ev


def selector_summary(trained) -> list[str]:
    """How the selector was trained, in lines: label learning rate, signal test, model choice (CV table)."""
    lines = [trained.lr_line()]
    lines += [trained.signal.line(), "model choice (CV R^2 on held-out subset labels; 0 = predicting the mean):",
              *trained.fitted.choice.lines()]
    return lines


def demo_selector_config(config: DemoConfig):
    """The selector's own defaults, with the demo's seed and any label setting the user overrode."""
    from dataclasses import replace

    from selector.learned.config import SelectorConfig
    from selector.learned.features import FeatureConfig
    from selector.learned.final import ClusterConfig

    d = SelectorConfig()
    given = {k: v for k, v in dict(n_subsets=config.n_subsets, subset_method=config.subset_method,
                                   metric=config.label_metric, seeds=config.label_seeds, lr=config.lr).items()
             if v is not None}
    return replace(d, features=FeatureConfig(seed=config.seed),
                   labels=replace(d.labels, subset_seed=config.subset_seed, **given),
                   train=replace(d.train, seed=config.seed), clusters=ClusterConfig(seed=config.seed), seed=config.seed)


def demo_label_fn(labels, base: Path, data: Path, labels_dir: Path):
    """The genuine-label function of the demo: LoRA on a subset, evaluated on val.jsonl (the selector's label
    settings; the learning rate is the pilot's unless `labels.lr` is set)."""
    from finetune.label import FinetuneLabel

    return FinetuneLabel(base_model=str(base), eval_data=str(data / "val.jsonl"), eval_images=str(data),
                         work_dir=str(labels_dir / "runs"), metric=labels.metric, epochs=labels.epochs, lr=labels.lr,
                         extra={"max_new_tokens": 4})


def run_demo(config: DemoConfig, print_fn=print) -> dict:
    """The whole loop. Returns the result rows and the report path."""
    from selector.app.demo.data import load_truth
    from selector.learned.baselines import RandomRanker, single_metric_rankers
    from selector.learned.model import LearnedSelector
    from selector.learned.train import TrainSelectorConfig, train_selector
    from selector.core.ranking import select
    from selector.core.records import write_records

    timings: dict[str, float] = {}
    t = time.perf_counter()
    cache = Path(config.cache)
    data = build_data(config)
    truth = load_truth(data / "truth.jsonl")
    models = build_models(data, cache / f"models-data{config.data_seed}", config.data_seed, config.progress,
                          config.stage1_epochs)
    timings["data+models"] = time.perf_counter() - t
    print_fn(f"data {data}; models {models['clip']}, {models['vlm-base']}  ({timings['data+models']:.0f} s)")

    t = time.perf_counter()
    metrics = demo_metrics(config.metrics, models, data, config.progress)
    records, rows, table = score_pool(data, cache / f"scores-data{config.data_seed}", metrics, config.progress)
    timings["score"] = time.perf_counter() - t
    print_fn(f"scored {table.num_rows} valid train records with {', '.join(config.metrics)}  "
             f"({timings['score']:.0f} s)")

    t = time.perf_counter()
    runs = cache / "runs" / f"data{config.data_seed}-seed{config.seed}"
    sel_dir = runs / "selector"
    # Labels are cached by subset content + LoRA seed + settings, so seeds sharing subsets share the label runs.
    labels_dir = cache / "labels" / f"data{config.data_seed}"
    sc = demo_selector_config(config)
    label_fn = demo_label_fn(sc.labels, models["vlm-base"], data, labels_dir)
    trained = train_selector(TrainSelectorConfig(
        data=data / "train.jsonl", images=data, scores=cache / f"scores-data{config.data_seed}" / "train-scores.parquet",
        out=sel_dir, selector=sc, label_cache=labels_dir, progress=config.progress), label_fn)
    timings["labels+selector"] = time.perf_counter() - t
    lab = trained.labels
    lr = config.finetune_lr
    print_fn(f"genuine labels on {len(lab.labels)} subsets x {len(lab.seeds)} seeds, "
             f"{lab.labels.min():.3f}..{lab.labels.max():.3f}  ({timings['labels+selector']:.0f} s)")
    print_fn("\n".join(selector_summary(trained)))

    learned = LearnedSelector.load(sel_dir)
    rankings = {"learned": learned.rank(table)}
    groups = rankings["learned"].groups
    print_fn(f"selector: {learned.describe()}")
    rankings["linear"] = trained.fitted.linear.rank(table).with_groups(groups)
    rankings["random"] = RandomRanker(seed=config.seed).rank(table)
    for m, r in single_metric_rankers(table).items():
        rankings[f"metric:{m}"] = r.rank(table)
    selections = {name: select(r, config.budget, seed=config.seed) for name, r in rankings.items()}

    finetuned = {"learned": "selected-200 (learned)", "random": "random-200", "metric:clip": "top-200 by CLIP",
                 "linear": "linear baseline 200"}
    t = time.perf_counter()
    results = []
    base = base_accuracy(models["vlm-base"], data, runs)
    results.append({"name": "base model (no stage 2)", "n": 0, "clean": float("nan"),
                    "exact_match": base.get("exact_match"), "contains": base.get("contains")})
    test_cache: dict = {}  # one encoding of test.jsonl for every evaluation fine-tune
    for name, sel in selections.items():
        row = {"name": finetuned.get(name, name), "n": len(sel), "clean": clean_share(sel.ids, truth)}
        if name in finetuned:
            f = write_records(records, rows[sel.indices], runs / f"{name.replace(':', '-')}.jsonl")
            r = finetune_and_test(name.replace(":", "-"), f, sel.ids, data, models["vlm-base"], runs,
                                  config.finetune_epochs, lr, config.seed, config.progress, test_cache)
            row.update(exact_match=r["eval"].get("exact_match"), contains=r["eval"].get("contains"))
        results.append(row)
    if config.full_pool:
        r = finetune_and_test("full-pool", data / "train.jsonl", table.column("id").to_pylist(), data,
                              models["vlm-base"], runs, config.finetune_epochs, lr, config.seed,
                              config.progress, test_cache)
        results.append({"name": "full pool", "n": table.num_rows, "clean": clean_share(table.column("id").to_pylist(),
                                                                                      truth),
                        "exact_match": r["eval"].get("exact_match"), "contains": r["eval"].get("contains")})
    timings["finetune+test"] = time.perf_counter() - t

    print_fn(format_table(results))
    report = write_report(config.report or cache / f"report-data{config.data_seed}-seed{config.seed}", results=results, table=table,
                          truth=truth, selections=selections, groups=groups, labels=lab,
                          history=trained.fitted.history, timings=timings, config=asdict(config),
                          selector_lines=selector_summary(trained))
    print_fn(f"report: {report}")
    h = trained.fitted.history
    fit = {"val_loss": h.best_val_loss, "null_val_loss": h.null_val_loss, "init_val_loss": h.init_val_loss,
           "best_epochs": [m.best_epoch for m in trained.fitted.members]}
    return {"results": results, "report": report, "labels": lab.to_dict(), "timings": timings, "data": data,
            "base": models["vlm-base"], "labels_dir": labels_dir, "selector_dir": sel_dir, "selector_fit": fit}
