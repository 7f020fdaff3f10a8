"""Promise: `finetune --overwrite` clears the previous run in OUT, never a file this run reads: fine-tuning the
model a previous run merged (`--model OUT/merged --out OUT --overwrite`) used to delete that model first."""
from __future__ import annotations

import pytest

from finetune.config import FinetuneConfig
from finetune.trainer import _check_out
from selector.core.errors import MmselectError
from tests.hardening.conftest import rec, write_jsonl


@pytest.mark.parametrize("input_in", ["model", "data"])
def test_overwrite_refuses_to_delete_an_input(tmp_path, input_in):
    out = tmp_path / "run"
    (out / "merged").mkdir(parents=True)
    (out / "merged" / "config.json").write_text("{}")
    (out / "metrics.json").write_text("{}")
    data = write_jsonl(tmp_path / "d.jsonl", [rec(0)])
    if input_in == "data":
        (out / "logs").mkdir()
        data = write_jsonl(out / "logs" / "d.jsonl", [rec(0)])
    model = str(out / "merged") if input_in == "model" else "some/hub-model"
    config = FinetuneConfig(model=model, data=str(data), out=str(out), overwrite=True)
    with pytest.raises(MmselectError, match="--overwrite would delete"):
        _check_out(config, out, True)
    assert (out / "merged" / "config.json").exists() and data.exists() and (out / "metrics.json").exists()


def test_overwrite_still_clears_a_previous_run(tmp_path):
    out = tmp_path / "run"
    (out / "adapter").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    data = write_jsonl(tmp_path / "d.jsonl", [rec(0)])
    _check_out(FinetuneConfig(model="some/hub-model", data=str(data), out=str(out), overwrite=True), out, True)
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists() and data.exists()
