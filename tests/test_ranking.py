"""The shared ranking interface: budgets, proportional quotas, ties, determinism."""
import numpy as np
import pytest

from selector.core.errors import BudgetError
from selector.core.ranking import Ranking, group_quotas, resolve_budget, select


def test_top_k_by_score_best_first():
    r = Ranking(ids=np.array(["a", "b", "c", "d", "e"]), scores=np.array([0.1, 0.9, 0.5, 0.7, 0.3]))
    s = select(r, 3)
    assert list(s.ids) == ["b", "d", "c"]
    assert list(s.scores) == [0.9, 0.7, 0.5]


def test_fraction_budget_rounds_half_up_and_counts_clip():
    assert resolve_budget(0.25, 10) == 3  # 2.5 -> 3
    assert resolve_budget(0.1, 1000) == 100
    assert resolve_budget(1.0, 7) == 7
    assert resolve_budget(50, 7) == 7
    for bad in (-1, 0.0, 1.5, True, "3"):
        with pytest.raises(BudgetError):
            resolve_budget(bad, 10)
    # A positive fraction that keeps nothing is refused (not an empty selection), except on an empty pool.
    for tiny in (1e-320, 0.04):
        with pytest.raises(BudgetError, match="rounds to 0"):
            resolve_budget(tiny, 10)
    assert resolve_budget(0.05, 10) == 1 and resolve_budget(0.5, 0) == 0


def test_nan_scores_rank_last():
    r = Ranking(ids=np.arange(4), scores=np.array([np.nan, 1.0, np.nan, 0.0]))
    assert list(select(r, 2).ids) == [1, 3]
    assert set(select(r, 3).ids) >= {1, 3}


def test_proportional_quotas_known_answer():
    # sizes 6:3:1 and budget 5 -> one each first, then 2 left split 6:3:1 by largest remainder -> 3,1,1... check exactly
    q = group_quotas({"a": 6, "b": 3, "c": 1}, 5)
    assert sum(q.values()) == 5 and all(v >= 1 for v in q.values())
    assert q == {"a": 3, "b": 1, "c": 1}
    # quotas never exceed group size; the rest goes to others
    q = group_quotas({"a": 1, "b": 100}, 50)
    assert q == {"a": 1, "b": 49}
    # fewer slots than groups: the largest groups get one each
    q = group_quotas({"a": 5, "b": 50, "c": 20}, 2)
    assert q == {"a": 0, "b": 1, "c": 1}


def test_select_with_groups_takes_each_groups_best():
    ids = np.arange(10)
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    groups = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])  # group 1 holds the two worst items
    s = select(Ranking(ids, scores, groups), 4)
    assert sorted(s.ids) == [0, 1, 2, 8]  # group 1 gets its quota of 1: its best item (8)
    assert s.quotas == {0: 3, 1: 1}
    assert len(s) == 4
    # per_group="none" ignores the groups
    assert sorted(select(Ranking(ids, scores, groups), 4, per_group="none").ids) == [0, 1, 2, 3]


def test_exact_budget_for_many_group_shapes():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(1, 200))
        groups = rng.integers(0, int(rng.integers(1, 15)), size=n)
        r = Ranking(np.arange(n), rng.random(n), groups)
        budget = int(rng.integers(0, n + 1))
        s = select(r, budget, seed=trial)
        assert len(s) == budget == len(set(s.ids))
        if budget >= len(np.unique(groups)):
            assert all(v >= 1 for v in s.quotas.values())


def test_ties_broken_by_seed_deterministically():
    r = Ranking(np.arange(100), np.zeros(100))
    a, b, c = select(r, 10, seed=1), select(r, 10, seed=1), select(r, 10, seed=2)
    assert list(a.ids) == list(b.ids)
    assert list(a.ids) != list(c.ids)
    # a strictly better item always wins over tied ones, whatever the seed
    scores = np.zeros(100)
    scores[42] = 1.0
    for seed in range(5):
        assert select(Ranking(np.arange(100), scores), 1, seed=seed).ids[0] == 42


def test_ranking_validates_inputs():
    with pytest.raises(ValueError):
        Ranking(np.array([1, 1]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError):
        Ranking(np.array([1, 2]), np.array([0.0]))


def test_partial_order_equals_the_full_order_prefix_with_ties_and_nans():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 2000).astype(float)  # heavy ties, also across the cut
    scores[rng.choice(2000, 300, replace=False)] = np.nan
    r = Ranking(ids=np.arange(2000), scores=scores)
    for seed in (0, 1):
        full = r.order(seed)
        for k in (0, 1, 7, 450, 1999, 2000, 5000):
            assert np.array_equal(r.order(seed, top=k), full[:k])
        assert np.array_equal(select(r, 450, seed=seed).indices, full[:450])


def test_ranking_accepts_arrow_ids_and_checks_them():
    import pyarrow as pa

    ids = pa.chunked_array([["r1", "r2"], ["r10", "x"]])
    r = Ranking(ids=ids, scores=np.array([0.1, 0.4, 0.3, 0.2]))
    assert r.ids.tolist() == ["r1", "r2", "r10", "x"]
    assert list(select(r, 2).ids) == ["r2", "r10"]
    assert Ranking(ids=pa.array(["é", "e"]), scores=np.zeros(2)).ids.tolist() == ["é", "e"]
    with pytest.raises(ValueError, match="unique"):
        Ranking(ids=pa.chunked_array([["a", "bb"], ["bb"]]), scores=np.zeros(3))
