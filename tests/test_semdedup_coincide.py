"""SemDeDup and the COINCIDE ranker: known answers on planted clusters, formula-exact quotas, bad input."""
import numpy as np
import pyarrow as pa
import pytest

from selector.core.coincide import CoincideRanker, cluster_stats, coincide_weights
from selector.core.diversity import FeatureError
from selector.core.embeddings import embedding_matrix
from selector.core.errors import MmselectError
from selector.core.herding import herding_order
from selector.core.ranking import group_quotas, select
from selector.core.semdedup import semdedup


def _planted(seed=0):
    """A tight cluster of 30 near-copies (rows 0-29) among 170 spread-out rows."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=24)
    tight = base + 0.05 * rng.normal(size=(30, 24))
    spread = rng.normal(size=(170, 24))
    return np.vstack([tight, spread]).astype(np.float32)


def test_semdedup_threshold_one_removes_nothing():
    x = _planted()
    x[5] = x[4]  # an exact copy: similarity 1.0 is not above 1.0
    res = semdedup(x, 1.0, clusters=5, seed=0)
    assert res.removed == 0 and (res.lost_to == -1).all()


def test_semdedup_low_threshold_collapses_planted_cluster():
    x = _planted()
    order = np.r_[7, np.delete(np.arange(200), 7)]  # priority: row 7 first, so it is the copy that survives
    res = semdedup(x, 0.8, clusters=4, seed=0, order=order)
    assert res.keep[:30].sum() == 1 and res.keep[7]
    assert (res.lost_to[:30][~res.keep[:30]] == 7).all()
    assert res.keep[30:].all()  # random 24-d rows are far below 0.8 from each other
    gone = np.flatnonzero(~res.keep)
    assert (res.similarity[gone] > 0.8).all() and np.isnan(res.similarity[res.keep]).all()


def test_semdedup_skips_rows_without_vectors_and_refuses_bad_threshold():
    x = _planted()
    x[3] = np.nan
    x[4] = 0.0
    res = semdedup(x, 0.5, clusters=3, seed=1)
    assert res.keep[3] and res.keep[4] and res.clusters[3] == res.clusters[4] == -1
    with pytest.raises(FeatureError):
        semdedup(x, 1.5)


def _hand_clusters():
    """Three clusters in 3-d around e1 (20 rows, tight), e2 (10 rows, loose) and (e1+e3)/sqrt2 (5 rows)."""
    rng = np.random.default_rng(3)
    c = np.array([[1, 0, 0], [0, 1, 0], [1 / np.sqrt(2), 0, 1 / np.sqrt(2)]])
    spread = [0.05, 0.4, 0.2]
    sizes = [20, 10, 5]
    x = np.vstack([c[i] + spread[i] * rng.normal(size=(sizes[i], 3)) for i in range(3)])
    labels = np.repeat([0, 1, 2], sizes)
    return x, labels


def test_coincide_quotas_match_the_formula():
    x, labels = _hand_clusters()
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    # by hand: centroid = normalised mean of unit members; S = mean cosine to the other two; D = mean pairwise cosine
    cent = np.array([u[labels == i].mean(0) for i in range(3)])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    s_hand = np.array([np.mean([cent[i] @ cent[j] for j in range(3) if j != i]) for i in range(3)])
    d_hand = np.array([np.mean([u[a] @ u[b] for a in np.flatnonzero(labels == i) for b in np.flatnonzero(labels == i)
                                if a != b]) for i in range(3)])
    ids, s, d = cluster_stats(u, labels, neighbours=None)
    assert np.allclose(s, s_hand) and np.allclose(d, d_hand)
    tau = 0.5
    w = np.exp(s_hand / (tau * d_hand))
    ranking = CoincideRanker(tau=tau, neighbours=None).rank_matrix(np.arange(35), x, labels=labels)
    assert np.allclose([ranking.group_weights[i] for i in range(3)], w / w.max())
    for budget in (6, 12, 20):
        sel = select(ranking, budget)
        expected = group_quotas({0: 20, 1: 10, 2: 5}, budget, {i: float(w[i]) for i in range(3)})
        assert sel.quotas == expected and len(sel) == budget and min(sel.quotas.values()) >= 1
        # inside each cluster the quota is filled in herding order
        for i in range(3):
            members = np.flatnonzero(labels == i)
            herd = members[herding_order(u[members], sel.quotas[i])]
            assert set(sel.indices[labels[sel.indices] == i].tolist()) == set(herd.tolist())


def test_coincide_on_a_score_table_with_missing_embeddings():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(4, 8))
    x = centres[np.repeat(np.arange(4), 25)] + 0.1 * rng.normal(size=(100, 8))
    vecs = [list(map(float, row)) for row in x]
    vecs[10] = None
    vecs[11] = [0.0] * 8
    table = pa.table({"id": [f"r{i}" for i in range(100)], "embed-image": pa.array(vecs, pa.list_(pa.float32()))})
    ranking = CoincideRanker(clusters=4, seed=0).rank(table)
    assert ranking.groups[10] == ranking.groups[11] == -1 and np.isnan(ranking.scores[[10, 11]]).all()
    sel = select(ranking, 20)
    assert len(sel) == 20 and sel.quotas[-1] == 1 and min(sel.quotas.values()) >= 1
    herded = CoincideRanker(clusters=4, budget=20).rank(table)  # herds only what the quotas of 20 need
    assert (~np.isnan(herded.scores)).sum() == 19
    assert sorted(select(herded, 20).indices.tolist()) == sorted(sel.indices.tolist())
    with pytest.raises(MmselectError, match="no embedding column"):
        CoincideRanker(features=("embed-text",)).rank(table)
    with pytest.raises(MmselectError):
        CoincideRanker(tau=0)


def test_embedding_matrix_concatenates_normalised_columns():
    table = pa.table({"id": ["a", "b", "c"],
                      "img": pa.array([[3.0, 4.0], [1.0, 0.0], None], pa.list_(pa.float32())),
                      "txt": pa.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32())),
                      "len": pa.array([1.0, 2.0, 3.0])})
    x = embedding_matrix(table, ["img", "txt"])
    assert x.shape == (3, 5)
    assert np.allclose(x[0], np.array([0.6, 0.8, 0, 1, 0]) / np.sqrt(2))
    assert np.isnan(x[1, 2:]).all() and np.isnan(x[2, :2]).all()  # zero and null vectors have no direction
    with pytest.raises(FeatureError, match="scalar"):
        embedding_matrix(table, ["len"])
