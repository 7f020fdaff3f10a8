"""The `ifd` metric on a tiny LLaVA taught that each instruction names its answer: an answer the instruction does not
predict gets the higher instruction-following difficulty."""
from __future__ import annotations

import json

import numpy as np
import pytest

COLOURS = ["red", "blue", "green", "yellow"]


def _rec(rid: str, colour: str, answer: str) -> dict:
    return {"id": rid, "conversations": [{"from": "human", "value": f"Please say the colour {colour} ."},
                                         {"from": "gpt", "value": answer}]}


@pytest.mark.slow
def test_ifd_is_higher_for_an_answer_the_instruction_does_not_predict(tmp_path):
    from finetune import FinetuneConfig, build_tiny_model, train
    from finetune.ifd import IFDMetric
    from metrics.runner import RunnerConfig, score_records
    from selector.core.records import read_records

    train_rows = [_rec(f"t-{c}", c, c) for c in COLOURS]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    texts = [json.dumps(r) for r in train_rows]
    base = build_tiny_model("llava", tmp_path / "tiny", texts=texts, seed=0)
    taught = train(FinetuneConfig(model=str(base), data=str(tmp_path / "train.jsonl"), out=str(tmp_path / "ft"),
                                  method="full", epochs=40, lr=3e-3, batch_size=4, report_to="none",
                                  progress=False, seed=0))
    pool = [_rec("match", "red", "red"), _rec("mismatch", "red", "blue"), _rec("match2", "green", "green"),
            _rec("mismatch2", "green", "yellow")]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    metric = IFDMetric(model=str(taught.model_path), pool=str(tmp_path / "pool.jsonl"), progress=False)
    records = read_records(tmp_path / "pool.jsonl")
    table = score_records(records.valid(), [metric], RunnerConfig(progress=False))
    ifd = dict(zip(table.column("id").to_pylist(), table.column("ifd").to_pylist()))
    assert ifd["mismatch"] > ifd["match"] and ifd["mismatch2"] > ifd["match2"]
    assert ifd["match"] < 1 and ifd["match2"] < 1  # the instruction helps its own answer
    assert np.isfinite(list(ifd.values())).all()
