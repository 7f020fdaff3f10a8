"""Learned-selector benchmark on DigitsVQA (noise 0.4): the demo loop over several seeds, aggregated.

For each seed: genuine labels (LoRA per subset on the stage-1 VLM, evaluated on val.jsonl), the attention selector,
and LoRA on selected-200 / random-200 / top-200 by CLIP / linear-baseline-200 / the full pool, evaluated on
test.jsonl. Also the clean share of every ranker's 200 (each single metric included). Everything is cached under
--cache, so a re-run only does what is missing.

    .venv/bin/python benchmarks/selector_bench.py --cache .cache/mmselect --seeds 0,1,2 --subsets 20 --noise-subsets 3
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mean_std(values) -> str:
    v = np.array([x for x in values if x is not None and not np.isnan(x)], dtype=float)
    if len(v) == 0:
        return "-"
    return f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}" if len(v) > 1 else f"{100 * v[0]:.1f}"


def label_noise(cfg, run: dict, n_subsets: int) -> float:
    """Re-label the first `n_subsets` label subsets with LoRA seed 1; return the mean std across seeds 0 and 1."""
    from selector.app.demo.loop import demo_label_fn
    from selector.learned.labels import genuine_labels
    from selector.core.records import read_records

    data = Path(run["data"])
    saved = json.loads((Path(run["selector_dir"]) / "subsets.json").read_text())
    records = read_records(data / "train.jsonl", images=data)
    rows = np.flatnonzero(records.valid_mask())
    assert records.table.column("id").take(rows).to_pylist() == saved["ids"]
    subsets = np.asarray(saved["subset"])
    subsets = np.where(subsets < n_subsets, subsets, -1)
    from selector.app.demo.loop import demo_selector_config

    fn = demo_label_fn(demo_selector_config(cfg).labels, Path(run["base"]), data, Path(run["labels_dir"]))
    res = genuine_labels(records, rows, subsets, fn, Path(run["labels_dir"]), seeds=(0, 1), progress=False)
    print(f"label noise on {n_subsets} subsets: per seed {res.per_seed.tolist()}", flush=True)
    return res.noise


def label_diagnostics(run: dict) -> dict:
    """How faithful the genuine labels are (report only, truth.jsonl is read here and nowhere upstream): the
    correlation of a subset's label with its clean share and with its share of one-word answers."""
    data = Path(run["data"])
    truth = {}
    for line in (data / "truth.jsonl").read_text().splitlines():
        rec = json.loads(line)
        truth[rec["id"]] = rec["clean"]
    one_word = {}
    for line in (data / "train.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
            one_word[str(rec["id"])] = len(str(rec["conversations"][1]["value"]).split()) == 1
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    saved = json.loads((Path(run["selector_dir"]) / "subsets.json").read_text())
    ids, sub = np.array(saved["ids"]), np.array(saved["subset"])
    labels = np.asarray(run["labels"]["labels"], dtype=float)
    clean = np.array([np.mean([truth[i] for i in ids[sub == k]]) for k in range(len(labels))])
    short = np.array([np.mean([one_word.get(i, False) for i in ids[sub == k]]) for k in range(len(labels))])
    return {"corr_clean": float(np.corrcoef(labels, clean)[0, 1]), "corr_one_word": float(np.corrcoef(labels, short)[0, 1]),
            "clean_share_range": [float(clean.min()), float(clean.max())], "subset_size": int(np.sum(sub == 0))}


ABLATION = {
    # name: (SelectorConfig overrides, TrainConfig overrides); the last one is the current default
    "previous (post-act block, random init, lr 0.01, 1 net)": (
        {"block": "postact", "zero_init_residual": False}, {"ensemble": 1, "warm_start": "none", "lr": 0.01}),
    "zero-init residuals, lr 0.01, 1 net": ({}, {"ensemble": 1, "warm_start": "none", "lr": 0.01}),
    "zero-init residuals, lr 0.01, weight decay 0.1, 1 net": (
        {}, {"ensemble": 1, "warm_start": "none", "lr": 0.01, "weight_decay": 0.1}),
    "zero-init residuals, lr 0.01, 5-net CV ensemble": ({}, {"ensemble": 5, "warm_start": "none", "lr": 0.01}),
    "ridge warm start, lr 0.01, 1 net": ({}, {"ensemble": 1, "lr": 0.01}),
    "ridge warm start, lr 0.01, 5-net CV ensemble": ({}, {"lr": 0.01}),
    "ridge warm start, lr 1e-3, 1 net": ({}, {"ensemble": 1}),
    "ridge warm start, lr 1e-3, 5-net CV ensemble (default)": ({}, {}),
}


def ablation(cfg, run: dict) -> dict:
    """Clean share (truth.jsonl, report only) of the 200 chosen by each selector setting refitted on the SAME score
    table, subsets and labels as the run, selected the same way (spectral clusters, seed). Settings were chosen
    beforehand on label data (cross-validated subset-label MSE), never on this number."""
    from dataclasses import replace as dc_replace

    import pyarrow.parquet as pq

    from selector.learned.train import aligned_scores, fit_selector
    from selector.core.ranking import select

    saved = json.loads((Path(run["selector_dir"]) / "subsets.json").read_text())
    table = aligned_scores(pq.read_table(Path(cfg.cache) / f"scores-data{cfg.data_seed}" / "train-scores.parquet"),
                           saved["ids"], [])
    labels = np.asarray(run["labels"]["labels"], dtype=float)
    truth = {}
    for line in (Path(run["data"]) / "truth.jsonl").read_text().splitlines():
        rec = json.loads(line)
        truth[str(rec["id"])] = rec["clean"]
    from selector.app.demo.loop import demo_selector_config
    from selector.learned.choice import ChoiceConfig

    # The ablation compares network settings, so the network is asked for (model choice would pick per setting).
    base = dc_replace(demo_selector_config(cfg), choice=ChoiceConfig(model="network", alpha=1.0))
    out = {}
    for name, (net_kw, train_kw) in ABLATION.items():
        sc = dc_replace(base, train=dc_replace(base.train, **train_kw), **net_kw)
        fitted = fit_selector(table, np.asarray(saved["subset"]), labels, sc)
        sel = select(fitted.selector.rank(table), cfg.budget, seed=cfg.seed)
        h = fitted.history
        out[name] = {"clean": float(np.mean([truth[str(i)] for i in sel.ids])), "val_loss": h.best_val_loss,
                     "null_val_loss": h.null_val_loss}
    return out


def settings_cv(cfg, run: dict, repeats: int) -> dict:
    """How each ABLATION setting (and the InstructMining ridge) predicts HELD-OUT subset labels: repeated 5-fold CV
    over the label subsets, R^2 against predicting the training folds' mean. Label data only (no truth.jsonl): this
    is the criterion the defaults were chosen on. Also the labels' reliability across LoRA seeds (ICC(1))."""
    from dataclasses import replace as dc_replace

    import pyarrow.parquet as pq
    import torch

    from selector.learned.features import FeatureConfig, FeatureTransform
    from selector.learned.network import NetworkConfig, TrainConfig, _pad, ridge_fit, set_scores, train_ensemble
    from selector.learned.subsets import subset_members
    from selector.learned.train import aligned_scores

    saved = json.loads((Path(run["selector_dir"]) / "subsets.json").read_text())
    table = aligned_scores(pq.read_table(Path(cfg.cache) / f"scores-data{cfg.data_seed}" / "train-scores.parquet"),
                           saved["ids"], [])
    x = FeatureTransform(FeatureConfig(seed=cfg.seed)).fit(table).transform(table)
    feats = [x[m] for m in subset_members(np.asarray(saved["subset"]))]
    y = np.asarray(run["labels"]["labels"], dtype=float)

    def net_predict(net_kw, train_kw):
        def fp(tr, te, seed):
            net = NetworkConfig(d_in=x.shape[1], **{k: v for k, v in net_kw.items()})
            model, _ = train_ensemble([feats[i] for i in tr], y[tr], net,
                                      dc_replace(TrainConfig(seed=seed), **train_kw))
            xb, pad = _pad([feats[i] for i in te])
            with torch.no_grad():
                return set_scores(model, xb, pad).numpy().astype(float)
        return fp

    def ridge_predict(tr, te, seed):
        w, b = ridge_fit([feats[i] for i in tr], y[tr], 1.0)
        return np.array([feats[i].mean(0) @ w + b for i in te])

    settings = {"InstructMining ridge (alpha 1)": ridge_predict}
    settings.update({name: net_predict(*kw) for name, kw in ABLATION.items()})
    out = {}
    for name, fp in settings.items():
        err, null = [], []
        for r in range(repeats):
            order = np.random.default_rng(1000 + r).permutation(len(y))
            for fold in np.array_split(order, 5):
                tr = np.setdiff1d(np.arange(len(y)), fold)
                err += list((fp(tr, fold, r) - y[fold]) ** 2)
                null += list((y[tr].mean() - y[fold]) ** 2)
        out[name] = 1 - float(np.mean(err)) / float(np.mean(null))
        print(f"CV R^2 {name}: {out[name]:+.3f}", flush=True)
    ps = np.asarray(run["labels"]["per_seed"], dtype=float)
    if ps.shape[1] > 1:
        n_seeds = ps.shape[1]
        msb, msw = n_seeds * ps.mean(1).var(ddof=1), ps.var(1, ddof=1).mean()
        out["label ICC(1), one seed"] = float((msb - msw) / (msb + (n_seeds - 1) * msw))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache/mmselect")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--noise-subsets", type=int, default=0,
                   help="with one label seed: label subsets re-labelled with a second LoRA seed to measure label "
                        "noise (0: skip; with several label seeds the noise is measured on every subset)")
    p.add_argument("--subsets", type=int, default=20)
    p.add_argument("--subset-method", default="random")
    p.add_argument("--stage1-epochs", type=float)
    p.add_argument("--label-metric", default="eval_loss", help="eval_loss (negated), exact_match or contains")
    p.add_argument("--no-full-pool", action="store_true")
    p.add_argument("--label-seeds", default="0,1", help="LoRA seeds per label subset, averaged (default 0,1)")
    p.add_argument("--cv-repeats", type=int, default=0,
                   help="after seed 0: repeated 5-fold CV of held-out subset labels for each selector setting "
                        "(the criterion the defaults were chosen on; 0: skip)")
    p.add_argument("--no-ablation", action="store_true",
                   help="skip the clean share of the earlier selector settings refitted on the same labels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/selector.md")
    ns = p.parse_args(argv)

    import torch

    torch.set_num_threads(ns.threads)
    from selector.app.demo.loop import DemoConfig, run_demo

    seeds = [int(s) for s in ns.seeds.split(",")]
    runs, t0 = [], time.perf_counter()
    for k, seed in enumerate(seeds):
        cfg = DemoConfig(cache=ns.cache, seed=seed, n_subsets=ns.subsets, subset_method=ns.subset_method,
                         stage1_epochs=ns.stage1_epochs, label_metric=ns.label_metric,
                         label_seeds=tuple(int(x) for x in ns.label_seeds.split(",")),
                         full_pool=not ns.no_full_pool, progress=sys.stderr.isatty())
        t = time.perf_counter()
        out = run_demo(cfg, print_fn=lambda s: print(s, flush=True))
        out["seconds"] = time.perf_counter() - t
        runs.append(out)
        print(f"seed {seed} done in {out['seconds']:.0f} s", flush=True)

        if not ns.no_ablation:
            out["ablation"] = ablation(cfg, out)
            print(f"ablation (clean share of the learned 200): {out['ablation']}", flush=True)
        if k == 0 and ns.cv_repeats:
            out["settings_cv"] = settings_cv(cfg, out, ns.cv_repeats)
        if k == 0:  # label noise right after the first seed, so partial results already carry it
            if len(cfg.label_seeds) > 1:
                noise = runs[0]["labels"]["noise"]
            else:
                noise = label_noise(cfg, runs[0], ns.noise_subsets) if ns.noise_subsets else float("nan")
        write_results(ns, seeds[: k + 1], runs, noise, t0)
    return 0


def write_results(ns, seeds, runs, noise, t0) -> None:
    names = [r["name"] for r in runs[0]["results"]]
    rows = []
    for name in names:
        per = [next(r for r in run["results"] if r["name"] == name) for run in runs]
        rows.append((name, per[0]["n"], mean_std([r["clean"] for r in per]),
                     mean_std([r.get("exact_match") for r in per]), mean_std([r.get("contains") for r in per])))

    def get(run, name, key):
        return next(r for r in run["results"] if r["name"] == name).get(key)

    sel = "selected-200 (learned)"
    clean = np.array([get(r, sel, "clean") for r in runs])
    d_random = np.array([get(r, sel, "exact_match") - get(r, "random-200", "exact_match") for r in runs])
    has_full = any(r["name"] == "full pool" for r in runs[0]["results"])
    d_full = np.array([get(r, sel, "exact_match") - get(r, "full pool", "exact_match") for r in runs]) if has_full \
        else np.array([np.nan])
    diag = label_diagnostics(runs[0])
    spread = np.array([r["labels"]["spread"] for r in runs])

    lines = ["# Learned selector (InstructionGPT-4) on DigitsVQA", "",
             f"Machine: 2-core CPU, no GPU ({platform.processor() or platform.machine()}), shared with other jobs; "
             f"GPU paths untested on GPU. Total wall time {time.perf_counter() - t0:.0f} s "
             f"(cached steps are not re-run).", "",
             f"Command: `.venv/bin/python benchmarks/selector_bench.py --cache {ns.cache} --seeds {ns.seeds} "
             f"--noise-subsets {ns.noise_subsets} --subsets {ns.subsets} --subset-method {ns.subset_method} "
             f"--label-metric {ns.label_metric} --label-seeds {ns.label_seeds}"
             f"{f' --cv-repeats {ns.cv_repeats}' if ns.cv_repeats else ''}"
             f"{' --no-ablation' if ns.no_ablation else ''}{' --no-full-pool' if ns.no_full_pool else ''}`", "",
             f"DigitsVQA noise 0.4 (data seed 0, demo models built once). The {ns.subsets} {ns.subset_method} "
             f"label subsets and their genuine labels (LoRA seeds {ns.label_seeds}, averaged) are shared; "
             f"seeds {seeds} vary the selector, "
             f"the spectral clustering, the random baseline and the final LoRA runs. Budget 200. "
             f"Mean ± std over seeds (%).", "",
             "| training set | n | clean share | test exact match | test contains |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {k} | {c} | {e} | {co} |" for n, k, c, e, co in rows]
    d_linear = np.array([get(r, sel, "exact_match") - get(r, "linear baseline 200", "exact_match") for r in runs])
    ok_a, ok_b, ok_c = clean.mean() >= 0.95, d_random.mean() >= 0.05, d_full.mean() >= -0.01
    lines += ["", "## Targets", "",
              f"- (a) clean share of selected-200 >= 0.95: {clean.mean():.3f} ± {clean.std(ddof=1) if len(clean) > 1 else 0:.3f} "
              f"-> {'met' if ok_a else 'NOT met'}",
              f"- (b) selected-200 >= random-200 + 5 points: difference {100 * d_random.mean():+.1f} ± "
              f"{100 * (d_random.std(ddof=1) if len(d_random) > 1 else 0):.1f} points -> {'met' if ok_b else 'NOT met'}",
              f"- (c) selected-200 >= full pool - 1 point: difference {100 * d_full.mean():+.1f} ± "
              f"{100 * (d_full.std(ddof=1) if len(d_full) > 1 else 0):.1f} points -> {'met' if ok_c else 'NOT met'}",
              f"- (d) genuine-label noise (mean std of a subset's label across LoRA seeds "
              f"{ns.label_seeds if len(ns.label_seeds.split(',')) > 1 else '0,1'}, on "
              f"{len(runs[0]['labels']['labels']) if len(ns.label_seeds.split(',')) > 1 else ns.noise_subsets} "
              f"subsets): {noise:.4f}; spread of the (seed-averaged) labels across subsets (std): {spread[0]:.4f}",
              f"- learned vs linear baseline (same labels): {100 * d_linear.mean():+.1f} ± "
              f"{100 * (d_linear.std(ddof=1) if len(d_linear) > 1 else 0):.1f} test points "
              f"(per seed {', '.join(f'{100 * d:+.1f}' for d in d_linear)})",
              f"- label faithfulness ({ns.label_metric}, {len(runs[0]['labels']['labels'])} subsets of "
              f"{diag['subset_size']}): corr(label, subset clean share) {diag['corr_clean']:+.2f}, "
              f"corr(label, share of one-word answers) {diag['corr_one_word']:+.2f}; subset clean shares "
              f"{diag['clean_share_range'][0]:.2f}..{diag['clean_share_range'][1]:.2f}", "",
              ""]
    lines += ["## Per seed", "", "| seed | learned clean | learned EM | linear EM | random EM | CLIP EM | full pool EM "
              "| selector val MSE (CV) | predicting the mean | kept epochs (members) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, r in zip(seeds, runs):
        fit = r.get("selector_fit", {})
        em = [get(r, n, "exact_match") for n in (sel, "linear baseline 200", "random-200", "top-200 by CLIP")]
        full = get(r, "full pool", "exact_match") if has_full else float("nan")
        lines.append(f"| {seed} | {100 * get(r, sel, 'clean'):.1f} | " + " | ".join(f"{100 * v:.1f}" for v in em)
                     + f" | {100 * full:.1f} | {fit.get('val_loss', float('nan')):.3f} | "
                     f"{fit.get('null_val_loss', float('nan')):.3f} | {fit.get('best_epochs')} |")
    if all("ablation" in r for r in runs):
        lines += ["", "## Ablation: clean share of the learned 200 per selector setting (same labels; no fine-tuning)",
                  "", "| setting | clean share (mean ± std) | per seed | val MSE (CV) / predicting the mean |",
                  "|---|---|---|---|"]
        for name in runs[0]["ablation"]:
            a = [r["ablation"][name] for r in runs]
            lines.append(f"| {name} | {mean_std([x['clean'] for x in a])} | "
                         + ", ".join(f"{100 * x['clean']:.1f}" for x in a) + " | "
                         + ", ".join(f"{x['val_loss']:.2f}/{x['null_val_loss']:.2f}" for x in a) + " |")
    if "settings_cv" in runs[0]:
        cv = runs[0]["settings_cv"]
        lines += ["", f"## How the settings were chosen: CV R^2 on held-out subset labels (label data only, "
                  f"{ns.cv_repeats} x 5-fold over the {len(runs[0]['labels']['labels'])} subsets)", "",
                  "| setting | CV R^2 (1 - MSE / MSE of predicting the mean) |", "|---|---|"]
        lines += [f"| {name} | {v:+.3f} |" for name, v in cv.items() if not name.startswith("label ICC")]
        if "label ICC(1), one seed" in cv:
            lines += ["", f"Label reliability across LoRA seeds, ICC(1) of a one-seed label: "
                      f"{cv['label ICC(1), one seed']:.2f}."]
    lines += ["", "## Per-seed timings (s)", ""]
    for seed, r in zip(seeds, runs):
        lines.append(f"- seed {seed}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items())
                     + f" (total {r['seconds']:.0f})")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text("\n".join(lines) + "\n")
    (ns.out.parent / "selector.json").write_text(json.dumps(
        [{"seed": s, **{k: v for k, v in r.items() if k != "report"}, "report": str(r["report"])}
         for s, r in zip(seeds, runs)], indent=2, default=str))
    print("\n".join(lines), flush=True)



if __name__ == "__main__":
    sys.exit(main())
