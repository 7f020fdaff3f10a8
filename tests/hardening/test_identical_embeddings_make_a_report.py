"""Promise: an embedding column whose vectors are all the same (a broken encoder, a constant placeholder) makes a
report with one cluster, without asking k-means for more clusters than distinct points (sklearn's
ConvergenceWarning was printed in the middle of `analyze`)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from selector.app.report.pool import Pool
from selector.core.records import read_records
from tests.hardening.conftest import rec, write_jsonl


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("distinct", [1, 3])
def test_clusters_never_outnumber_distinct_vectors(tmp_path, distinct):
    records = read_records(write_jsonl(tmp_path / "d.jsonl", [rec(i) for i in range(12)]), workers=1)
    vectors = [[float(i % distinct), 1.0, 0.0] for i in range(12)]
    scores = pa.table({"id": records.valid_table().column("id"),
                       "embed-text": pa.array(vectors, pa.list_(pa.float32()))})
    labels = Pool(records, scores).clusters
    assert len(np.unique(labels)) == distinct and (labels >= 0).all()
    assert all(len(set(labels[np.arange(12) % distinct == d])) == 1 for d in range(distinct))
