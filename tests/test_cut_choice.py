"""Choosing between the best scores and the CCS cut on held-out data (`--stratified auto`), with planted answers."""
import json

import numpy as np
import pytest

from selector.core.errors import SettingsError
from selector.core.ranking import Ranking
from selector.core.stratified import Stratified
from vision.data import load_digits_data, split
from vision.prune import ProxyConfig
from vision.prune.cut_choice import CutChoice, choose_cut

PROXY = ProxyConfig(width=8, depth=2, epochs=4, batch_size=64, lr=0.05, device="cpu")


@pytest.fixture(scope="module")
def noisy_digits():
    """Digits at 8 x 8 with 30 % of the labels of the training part moved to the next class (planted noise)."""
    data = load_digits_data(size=8)
    rng = np.random.default_rng(0)
    flipped = rng.random(len(data)) < 0.3
    labels = data.labels.clone()
    labels[flipped] = (labels[flipped] + 1) % 10
    noisy = type(data)(data.images, labels, data.classes, data.mean, data.std, data.ids, data.name)
    return noisy, flipped


def _ranking(data, scores):
    return Ranking(data.ids.numpy(), scores, data.labels.numpy(), "planted")


def test_ccs_wins_when_the_top_scores_are_the_mislabelled(noisy_digits):
    # The hardest-looking (top-scored) examples are the mislabelled ones, as with EL2N on noisy data: keeping the
    # best 10 % keeps almost only noise; CCS's hard cut (0.3 here) drops them and covers the rest.
    data, flipped = noisy_digits
    scores = np.where(flipped, 2.0, 0.0) + np.random.default_rng(1).random(len(data))
    cut, info = choose_cut(data, _ranking(data, scores), 0.1, CutChoice(ccs=Stratified(beta=0.3), min_steps=60),
                           PROXY, seed=0)
    assert info["chosen"] == "ccs" and cut == Stratified(beta=0.3)
    acc = info["val_accuracy"]
    assert acc["ccs"] > acc["best scores"] + 0.2
    assert info["fit"] + info["val"] == len(data) and info["fit_budget"] == round(0.1 * info["fit"])


def test_best_scores_win_when_the_low_scores_are_the_mislabelled(noisy_digits):
    # Now the clean examples score high: the best 50 % are all clean, while CCS's even shares over the score range
    # spend half the budget on the noisy low strata.
    data, flipped = noisy_digits
    scores = np.where(flipped, 0.0, 2.0) + np.random.default_rng(1).random(len(data))
    cut, info = choose_cut(data, _ranking(data, scores), 0.5, CutChoice(ccs=Stratified(beta=0.0), min_steps=60),
                           PROXY, seed=0)
    assert info["chosen"] == "best scores" and cut is None
    assert info["val_accuracy"]["best scores"] > info["val_accuracy"]["ccs"]


def test_same_seed_same_choice_and_keeping_everything_needs_no_training(noisy_digits):
    data, flipped = noisy_digits
    sub = data.subset(np.arange(300))
    scores = np.random.default_rng(2).random(300)
    a = choose_cut(sub, _ranking(sub, scores), 60, CutChoice(min_steps=10), PROXY, seed=3)
    b = choose_cut(sub, _ranking(sub, scores), 60, CutChoice(min_steps=10), PROXY, seed=3)
    assert a == b
    cut, info = choose_cut(sub, _ranking(sub, scores), 1.0, CutChoice(), PROXY, seed=3)
    assert cut is None and info["val_accuracy"] == {} and info["reason"] == "keeps every item"


def test_refuses_a_ranking_of_other_data_and_too_little_data():
    data = load_digits_data(size=8)
    part = split(data, (0.5, 0.25, 0.25), seed=0)
    ranking = _ranking(part.train, np.zeros(len(part.train)))
    with pytest.raises(SettingsError, match="ranking of `data`"):
        choose_cut(part.val, ranking, 0.5, CutChoice(), PROXY)
    tiny = data.subset(np.arange(20))
    with pytest.raises(SettingsError, match="--stratified ccs"):
        choose_cut(tiny, _ranking(tiny, np.arange(20.0)), 2, CutChoice(), PROXY)
    for bad in (0.0, 0.7, float("nan")):
        with pytest.raises(SettingsError):
            CutChoice(val_share=bad)


def test_prune_cli_auto_records_the_choice(tmp_path, capsys):
    from selector.app.cli import main

    out = tmp_path / "p.json"
    rc = main(["-q", "prune", "--dataset", "digits", "--image-size", "8", "--method", "el2n", "--keep", "0.1",
               "--width", "8", "--epochs", "2", "--runs", "1", "--epoch", "1", "--stratified", "auto",
               "--cut-val-share", "0.25", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    choice = doc["cut_choice"]
    assert choice["val_share"] == 0.25 and set(choice["val_accuracy"]) == {"best scores", "ccs"}
    assert choice["chosen"] == max(choice["val_accuracy"], key=choice["val_accuracy"].get)
    assert ("stratified" in doc) == (choice["chosen"] == "ccs")
    assert len(doc["indices"]) == 180
    assert "cut chosen on a held-out 25 %" in capsys.readouterr().out


def test_prune_cli_refuses_a_held_out_share_without_auto_and_a_share_above_half(tmp_path, capsys):
    from selector.app.cli import main

    base = ["prune", "--dataset", "digits", "--image-size", "8", "--method", "random", "--keep", "0.1",
            "--out", str(tmp_path / "p.json")]
    assert main([*base, "--cut-val-share", "0.3"]) == 2
    assert "--stratified auto" in capsys.readouterr().err
    assert main([*base, "--stratified", "auto", "--cut-val-share", "0.7"]) == 2
    err = capsys.readouterr().err
    assert "(0, 0.5]" in err and "Traceback" not in err and not (tmp_path / "p.json").exists()
