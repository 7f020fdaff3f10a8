"""Diversity-aware select (DEITA greedy) and CCS stratified select: known answers, exact budgets, quotas, bad input."""
import numpy as np
import pytest

from selector.core.diversity import Diversity, FeatureError, diverse_greedy
from selector.core.errors import MmselectError
from selector.core.ranking import Ranking, group_quotas, select
from selector.core.stratified import Stratified, ccs_beta


def _dup_pool(seed=0, d=32, near=True):
    """50 (near) copies of one record with the best scores, then 150 distinct records."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=d)
    dups = base + (0.01 * rng.normal(size=(50, d)) if near else np.zeros((50, d)))
    distinct = rng.normal(size=(150, d))
    x = np.vstack([dups, distinct]).astype(np.float32)
    scores = np.concatenate([np.linspace(2.0, 1.9, 50), rng.uniform(0, 1, 150)])
    return Ranking(ids=np.arange(200), scores=scores), x


@pytest.mark.parametrize("near", [True, False])
def test_duplicates_take_at_most_one_slot(near):
    ranking, x = _dup_pool(near=near)
    plain = select(ranking, 100)
    assert (plain.indices < 50).sum() == 50  # without diversity the copies take 50 slots
    sel = select(ranking, 100, diversity=Diversity(x, 0.9))
    assert len(sel) == 100 and len(set(sel.indices.tolist())) == 100
    assert (sel.indices < 50).sum() == 1
    assert sel.indices[0] == 0  # the best copy is the one kept, reported first
    assert sel.info["diversity"]["skipped"] == 49 and sel.info["diversity"]["filled"] == 0


def test_blocked_search_matches_brute_force():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(30, 8))
    x = (centres[rng.integers(0, 30, 400)] + 0.3 * rng.normal(size=(400, 8))).astype(np.float32)
    order = rng.permutation(400)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    kept = []
    for i in order:  # the definition, one candidate at a time
        if not kept or (u[kept] @ u[i]).max() <= 0.8:
            kept.append(int(i))
    for block in (1, 7, 64, 4096):
        res = diverse_greedy(x, order, 400, 0.8, block=block, fill=False)
        assert res.accepted.tolist() == kept
    for pos in np.flatnonzero(res.lost_to >= 0)[:20]:  # a skipped row names a kept one above the threshold
        assert res.lost_to[pos] in kept and u[pos] @ u[res.lost_to[pos]] > 0.8


def test_exact_budget_and_quotas_when_too_redundant():
    rng = np.random.default_rng(2)
    x = np.repeat(rng.normal(size=(5, 16)), 40, axis=0).astype(np.float32)  # 5 distinct vectors, 40 copies each
    groups = np.repeat([0, 1, 2, 3], 50)
    ranking = Ranking(ids=np.arange(200), scores=rng.random(200), groups=groups)
    sel = select(ranking, 60, diversity=Diversity(x, 0.9))
    assert len(sel) == 60 and len(set(sel.indices.tolist())) == 60
    counts = np.bincount(groups[sel.indices], minlength=4)
    assert counts.tolist() == [sel.quotas[g] for g in range(4)] and min(counts) >= 1
    info = sel.info["diversity"]
    assert info["passed"] == 5 and info["filled"] == 55  # only 5 directions exist; the rest is filled


def test_auto_threshold_is_lowest_that_fills():
    ranking, x = _dup_pool()
    sel = select(ranking, 120, diversity=Diversity(x, None))
    info = sel.info["diversity"]
    assert len(sel) == 120 and info["auto"] and info["filled"] == 0 and (sel.indices < 50).sum() == 1
    # a clearly lower threshold no longer fills 120 by the pass alone
    lower = diverse_greedy(x, ranking.order(0), 120, info["threshold"] - 0.01, fill=False)
    assert len(lower.accepted) < 120


def test_missing_and_zero_features_count_as_distinct():
    x = np.ones((6, 4), dtype=np.float32)
    x[1] = np.nan
    x[2] = 0.0
    ranking = Ranking(ids=np.arange(6), scores=np.arange(6, 0, -1.0))
    sel = select(ranking, 3, diversity=Diversity(x, 0.9))
    assert sel.indices.tolist() == [0, 1, 2]  # rows 1 and 2 are never duplicates of 0
    assert sel.info["diversity"]["no_features"] == 2


def test_diversity_bad_input_is_one_clear_error():
    ranking, x = _dup_pool()
    with pytest.raises(FeatureError, match="rows for 200"):
        select(ranking, 10, diversity=Diversity(x[:10], 0.9))
    with pytest.raises(MmselectError, match=r"\[-1, 1\]"):
        Diversity(x, 1.5)
    with pytest.raises(MmselectError, match="cannot be combined"):
        select(ranking, 10, diversity=Diversity(x), stratified=Stratified())
    assert len(select(ranking, 500, diversity=Diversity(x))) == 200  # a budget above the pool keeps the pool


def test_weighted_quotas_capped_by_size():
    # weights 1:1:8 over sizes 50:50:5 and budget 20: c is capped at 5, the other 15 split evenly -> 8/7 by remainder
    q = group_quotas({"a": 50, "b": 50, "c": 5}, 20, weights={"a": 1.0, "b": 1.0, "c": 8.0})
    assert q == {"a": 8, "b": 7, "c": 5}
    q = group_quotas({"a": 50, "b": 50, "c": 50}, 10, weights={"a": 100.0, "b": 1.0, "c": 0.0})
    assert sum(q.values()) == 10 and min(q.values()) >= 1 and q["a"] == 8


def test_ccs_fills_strata_smallest_first_and_cuts_the_hardest():
    # scores 0..99, beta 0.1 cuts 90..99; 9 strata of 10 each; budget 18 -> 2 per stratum
    scores = np.arange(100.0)
    ranking = Ranking(ids=np.arange(100), scores=scores)
    sel = select(ranking, 18, stratified=Stratified(beta=0.1, strata=9), seed=3)
    assert len(sel) == 18 and sel.indices.max() < 90
    assert np.bincount(sel.indices // 10, minlength=9).tolist() == [2] * 9
    # a small stratum is taken whole; its leftover share goes to the bigger ones
    skew = np.concatenate([np.zeros(3), np.full(97, 10.0) + np.arange(97) / 1000])
    sel = select(Ranking(ids=np.arange(100), scores=skew), 20, stratified=Stratified(beta=0.0, strata=2))
    assert (sel.indices < 3).sum() == 3 and len(sel) == 20


def test_ccs_exact_budget_per_class_with_nan_and_big_budget():
    rng = np.random.default_rng(4)
    scores = rng.random(300)
    scores[:40] = np.nan
    groups = np.repeat([0, 1, 2], 100)
    ranking = Ranking(ids=np.arange(300), scores=scores, groups=groups)
    for k in (3, 30, 150, 280, 300):
        sel = select(ranking, k, stratified=Stratified(beta=0.3), seed=1)
        assert len(sel) == k and len(set(sel.indices.tolist())) == k
        assert np.bincount(groups[sel.indices], minlength=3).tolist() == [sel.quotas[g] for g in range(3)]
    assert select(ranking, 30, stratified=Stratified(), seed=5).indices.tolist() == \
        select(ranking, 30, stratified=Stratified(), seed=5).indices.tolist()
    assert (ccs_beta(0.1), ccs_beta(0.3), ccs_beta(0.5), ccs_beta(0.9)) == (0.1, 0.1, 0.0, 0.0)
    with pytest.raises(MmselectError):
        Stratified(beta=1.0)
