"""The README's learned-selector commands, as written, on a DigitsVQA variant the project has not seen (its own data
seed and noise): defaults only, plus the small sizes a test needs. Genuine labels: real LoRA runs of the demo VLM.
Slow (about two minutes): it builds the variant's demo models and fine-tunes some 40 times."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selector.app.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED, NOISE = 7, 0.45  # the demo is data seed 0, noise 0.4


def mmselect(*args) -> int:
    return main(["-q", *map(str, args)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    w = tmp_path_factory.mktemp("readme")
    d, m, sel = w / "D", w / "M", w / "SEL"
    assert mmselect("demo-data", "--out", d, "--seed", SEED, "--noise", NOISE) == 0
    assert mmselect("demo-models", "--data", d, "--out", m, "--seed", SEED) == 0
    assert mmselect("score", d / "train.jsonl", "--images", d, "--metrics", "length,clip,ifd,embed-image,embed-text",
                    "--clip-model", f"local-dir:{m / 'clip'}", "--ifd-model", m / "vlm-base", "--text-encoder", "st",
                    "--out", w / "s.parquet") == 0
    assert mmselect("train-selector", "--data", d / "train.jsonl", "--images", d, "--scores", w / "s.parquet",
                    "--eval-data", d / "val.jsonl", "--eval-images", d, "--base-model", m / "vlm-base",
                    "--out", sel, "--subsets", 10) == 0
    return w


def clean_share(ids, truth_file) -> float:
    truth = {json.loads(line)["id"]: json.loads(line)["clean"] for line in open(truth_file)}
    return float(np.mean([truth[str(i)] for i in ids]))


def test_readme_commands_select_far_cleaner_than_the_pool(trained, capsys):
    w = trained
    assert (w / "SEL" / "selector.json").is_file()
    capsys.readouterr()
    assert main(["select", str(w / "D" / "train.jsonl"), "--images", str(w / "D"), "--selector", str(w / "SEL"),
                 "--scores", str(w / "s.parquet"), "--budget", "100", "--out", str(w / "sel.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "chosen by cross-validation" in out and "selection vs pool" in out
    ids = [json.loads(line)["id"] for line in open(w / "sel.jsonl")]
    pool = clean_share([json.loads(line)["id"] for line in open(w / "D" / "train.jsonl")], w / "D" / "truth.jsonl")
    assert len(ids) == 100
    assert clean_share(ids, w / "D" / "truth.jsonl") >= pool + 0.25, (clean_share(ids, w / "D" / "truth.jsonl"), pool)
    manifest = json.loads((w / "SEL" / "selector.json").read_text())
    assert manifest["label_lr"]["how"] == "derived" and manifest["signal"]["ok"]


def test_the_same_genuine_labels_shuffled_are_refused(trained):
    """The run's own LoRA labels, shuffled: across subsets (every seed alike) no model beats chance; each seed
    shuffled on its own, the labels no longer vary beyond the seed noise."""
    import pyarrow.parquet as pq

    from selector.core.scores import align_scores
    from selector.learned.config import SelectorConfig
    from selector.learned.signal import label_signal, transform
    from selector.learned.train import fit_selector

    w = trained
    labels = json.loads((w / "SEL" / "labels.json").read_text())
    saved = json.loads((w / "SEL" / "subsets.json").read_text())
    per_seed = np.asarray(labels["per_seed"])
    table = align_scores(pq.read_table(w / "s.parquet"), saved["ids"])
    subsets = np.asarray(saved["subset"])
    refused = 0
    for s in range(3):
        perm = np.random.default_rng(s).permutation(len(per_seed))
        fitted = fit_selector(table, subsets, transform(np.median(per_seed[perm], axis=1)), SelectorConfig())
        refused += fitted.choice.chosen == "mean" and fitted.selector is None
    assert refused >= 2
    rng = np.random.default_rng(0)
    independent = np.stack([rng.permutation(col) for col in per_seed.T], axis=1)
    assert not label_signal(independent).ok
