"""CCS (coverage-centric selection) known answers: the hard cut, smallest-first strata budgets, one stratum per slot
when the budget is below the strata count, per-class proportions, the β schedule, determinism."""
import numpy as np
import pytest

from selector.core.ranking import Ranking, select
from selector.core.stratified import Stratified, ccs_beta, ccs_pick


def test_hard_cut_removes_exactly_the_hardest_share():
    rng = np.random.default_rng(0)
    scores = rng.permutation(200).astype(float)  # higher = harder
    for k in (10, 80, 150):
        picked = ccs_pick(scores, k, beta=0.25, strata=10, rng=np.random.default_rng(1))
        assert len(picked) == k and len(set(picked.tolist())) == k
        assert scores[picked].max() < 150  # the hardest 50 (scores 150..199) are never kept
    # a budget above the pool brings the cut back least hard first: scores 150..159
    picked = ccs_pick(scores, 160, beta=0.25, strata=10, rng=np.random.default_rng(1))
    assert sorted(scores[picked].tolist()) == list(range(160))


def test_strata_budget_smallest_first_is_exact():
    # three equal-width strata over [0, 3) holding 2, 6 and 92 items; 20 slots: 2 and 6 taken whole, 12 from the rest
    scores = np.concatenate([[0.0, 0.5], np.full(6, 1.5), np.linspace(2.0, 3.0, 92)])
    picked = ccs_pick(scores, 20, beta=0.0, strata=3, rng=np.random.default_rng(0))
    assert np.bincount(np.minimum(scores[picked], 2).astype(int), minlength=3).tolist() == [2, 6, 12]
    # equal strata of 10: 10 slots split 3 / 3 / 4 (the floor shares' remainder goes to the last stratum filled)
    even = np.repeat([0.0, 1.0, 2.0], 10) + np.tile(np.linspace(0, 0.5, 10), 3)
    picked = ccs_pick(even, 10, beta=0.0, strata=3, rng=np.random.default_rng(0))
    assert sorted(np.bincount(even[picked].astype(int), minlength=3).tolist()) == [3, 3, 4]


def test_fewer_slots_than_strata_still_cover_the_score_range():
    # 900 easy items crowd [0, 0.1); 100 spread over [0.1, 1]. Five slots with the default 50 strata: one stratum per
    # slot, so each fifth of the score range gets one item (50 floor shares would hand all five to the crowded bins)
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.uniform(0, 0.1, 900), np.linspace(0.1, 1.0, 100)])
    for seed in range(5):
        picked = ccs_pick(scores, 5, beta=0.0, strata=50, rng=np.random.default_rng(seed))
        assert np.bincount(np.minimum(scores[picked] * 5, 4).astype(int), minlength=5).tolist() == [1] * 5


def test_per_class_keeps_class_proportions_and_cuts_inside_each_class():
    rng = np.random.default_rng(2)
    groups = np.repeat([0, 1, 2], [100, 200, 300])
    scores = rng.random(600) + groups  # class 2 is harder than class 0 throughout
    ranking = Ranking(ids=np.arange(600), scores=scores, groups=groups)
    sel = select(ranking, 0.1, stratified=Stratified(beta=0.2), seed=0)
    assert np.bincount(groups[sel.indices], minlength=3).tolist() == [10, 20, 30]
    for g in range(3):  # nothing from the hardest 20% of its own class
        members = np.flatnonzero(groups == g)
        cut = np.sort(scores[members])[int(0.8 * len(members))]
        assert scores[sel.indices[groups[sel.indices] == g]].max() < cut
    assert sel.info["stratified"] == {"beta": 0.2, "beta_auto": False, "strata": 50, "within": "random"}


def test_default_beta_follows_the_kept_share_and_is_deterministic():
    assert [ccs_beta(k) for k in (0.05, 0.1, 0.2, 0.3, 0.5, 0.9)] == [0.1, 0.1, 0.1, 0.1, 0.0, 0.0]
    ranking = Ranking(ids=np.arange(500), scores=np.random.default_rng(5).random(500))
    a = select(ranking, 0.1, stratified=Stratified(), seed=7)
    assert a.info["stratified"]["beta"] == 0.1 and a.info["stratified"]["beta_auto"]
    assert a.indices.tolist() == select(ranking, 0.1, stratified=Stratified(), seed=7).indices.tolist()
    assert a.indices.tolist() != select(ranking, 0.1, stratified=Stratified(), seed=8).indices.tolist()


@pytest.mark.parametrize("beta", [-0.1, 1.0, float("nan")])
def test_bad_hard_cut_is_refused(beta):
    from selector.core.errors import SettingsError

    with pytest.raises(SettingsError):
        Stratified(beta=beta)


def test_within_hardest_takes_each_strata_share_from_its_top():
    # two equal-width strata over 0..99 (0-49, 50-99), 10 slots: 5 each; "hardest" takes 45-49 and 95-99
    scores = np.arange(100, dtype=float)
    picked = ccs_pick(scores, 10, beta=0.0, strata=2, rng=np.random.default_rng(0), within="hardest")
    assert sorted(scores[picked].tolist()) == [45, 46, 47, 48, 49, 95, 96, 97, 98, 99]
    rand = ccs_pick(scores, 10, beta=0.0, strata=2, rng=np.random.default_rng(0))
    assert np.bincount((scores[rand] >= 50).astype(int)).tolist() == [5, 5]  # same shares, not the tops
    assert sorted(scores[rand].tolist()) != sorted(scores[picked].tolist())
    with pytest.raises(Exception, match="stratum"):
        Stratified(within="easiest")
