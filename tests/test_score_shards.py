"""The pieces of the sharded scoring path that need no Ray: the one-decode image check and the manifest reader."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.core.errors import FormatError
from selector.core.images import check_images, decode_records
from selector.core.scores import MANIFEST, REJECTED_KEY, STATS_KEY, read_score_dir


def test_decode_records_gives_check_images_verdicts_and_keeps_the_first_image(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((6, 5, 3), 200, np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.full((4, 4), 7, np.uint8), mode="L").save(tmp_path / "grey.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    names = [["ok.png"], ["bad.png"], ["missing.png"], ["../outside.png"], [], ["grey.png", "ok.png"],
             ["ok.png", "bad.png"]]
    images, reasons = decode_records(tmp_path, names)
    assert reasons == check_images(tmp_path, names, workers=1)
    assert [r is None for r in reasons] == [True, False, False, False, True, True, False]
    assert images[0].size == (5, 6) and images[0].mode == "RGB"
    assert images[5].mode == "RGB" and np.asarray(images[5])[0, 0].tolist() == [7, 7, 7]  # the first image, as RGB
    assert images[1] is None and images[4] is None and images[6] is None


def _shard(folder, k, ids, clip, reasons, stats, rejected=()):
    table = pa.table({"id": ids, "clip": pa.array(clip, pa.float64()), "clip__reason": pa.array(reasons, pa.string())})
    table = table.replace_schema_metadata({b"mmselect.shard": b"key", STATS_KEY: json.dumps(stats).encode(),
                                           REJECTED_KEY: json.dumps(list(rejected)).encode()})
    (folder / "shards").mkdir(exist_ok=True)
    pq.write_table(table, folder / f"shards/shard-{k:06d}.parquet")
    return {"shard": k, "file": f"shards/shard-{k:06d}.parquet", "key": "key"}


def test_score_folder_merges_shards_in_order_with_the_single_table_metadata(tmp_path):
    shards = [_shard(tmp_path, 0, ["a", "b"], [1.0, 2.0], [None, None], {"clip": {"texts_truncated": 2}}),
              _shard(tmp_path, 1, [], [], [], {"clip": {"texts_truncated": 0}}, [[2, "image file missing: x.png"]]),
              _shard(tmp_path, 2, ["d"], [3.5], [None], {"clip": {"texts_truncated": 1}})]
    manifest = {"format": "mmselect-scores", "version": 1, "input": {"files": ["x"]}, "total_shards": 3,
                "metrics": {"clip": {"metric": "clip", "config": {"m": 1}, "hash": "h", "kind": "scalar"}},
                "shards": shards, "complete": False}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="has not finished"):
        read_score_dir(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "complete": True}))
    table = read_score_dir(tmp_path)
    assert table.column_names == ["id", "clip"]  # a reason column no record needed is dropped, as locally
    assert table.column("id").to_pylist() == ["a", "b", "d"] and table.column("clip").to_pylist() == [1.0, 2.0, 3.5]
    meta = json.loads(table.schema.metadata[b"mmselect.metrics"])
    assert meta["clip"]["stats"] == {"texts_truncated": 3} and meta["clip"]["missing"] == 0
    assert json.loads(table.schema.metadata[b"mmselect.input"]) == {"files": ["x"]}

    from selector.app.pipeline import load_scores

    assert load_scores(tmp_path).equals(table)
    (tmp_path / MANIFEST).write_text("{}")
    with pytest.raises(FormatError, match="not a score manifest"):
        read_score_dir(tmp_path)
