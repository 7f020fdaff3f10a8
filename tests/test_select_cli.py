"""`mmselect select` end to end: outputs, accounting that reconciles, determinism, strict mode."""
import json
import re

import pytest

from selector.app.cli import main


@pytest.fixture
def messy(tmp_path):
    rows = []
    for i in range(40):
        rows.append(json.dumps({"id": f"t{i}", "conversations": [{"from": "human", "value": f"question {i}"},
                                                                  {"from": "gpt", "value": "x" * (i % 10 + 1)}]}))
    rows[5] = '{"id": "t5", "conversations": ['  # invalid JSON
    rows[9] = json.dumps({"id": "t1", "conversations": [{"from": "gpt", "value": "dup id"}]})
    rows[12] = json.dumps({"id": "t12", "conversations": [{"from": "human", "value": "q"}]})
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _summary(text):
    m = re.search(r"read (\d+), rejected (\d+), selected (\d+), not selected (\d+)", text)
    assert m, text
    return tuple(map(int, m.groups()))


def test_select_writes_outputs_and_reconciles(messy, tmp_path, capsys):
    out = tmp_path / "sel.jsonl"
    assert main(["select", str(messy), "--metrics", "length", "--budget", "10", "--out", str(out)]) == 0
    n, r, s, u = _summary(capsys.readouterr().out)
    assert (n, r, s, u) == (40, 3, 10, 27) and n == r + s + u
    kept = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(kept) == 10
    # the longest answers: three of 10 chars (t9 is rejected), four of 9, then three of the four 8-char ones
    assert sorted((len(k["conversations"][1]["value"]) for k in kept), reverse=True) == [10] * 3 + [9] * 4 + [8] * 3
    rejected = [json.loads(l) for l in (tmp_path / "sel.jsonl.rejected.jsonl").read_text().splitlines()]
    assert {x["line"] for x in rejected} == {6, 10, 13}
    assert all(set(x) == {"line", "id", "reason"} for x in rejected)
    report = json.loads((tmp_path / "sel.jsonl.report.json").read_text())
    assert report["accounting"] == {"read": 40, "rejected": 3, "selected": 10, "not_selected": 27}


def test_same_seed_same_output_and_fraction_budget(messy, tmp_path, capsys):
    outs = []
    for k, seed in enumerate([3, 3, 4]):
        out = tmp_path / f"o{k}.jsonl"
        main(["select", str(messy), "--budget", "0.25", "--seed", str(seed), "--out", str(out)])
        outs.append(out.read_text())
    assert _summary(capsys.readouterr().out)[2] == 9  # 25% of the 37 valid records, rounded
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]  # ties among equal lengths break differently under another seed


def test_strict_exits_nonzero_naming_file_and_line(messy, tmp_path, capsys):
    code = main(["select", str(messy), "--budget", "5", "--strict", "--out", str(tmp_path / "x.jsonl")])
    assert code == 2
    assert f"{messy}:6:" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_a_length_selection_from_the_command_line_loads_no_heavy_library(messy, tmp_path):
    """Building every subcommand's parser and selecting by length must not import torch, datasets or pandas: each
    costs from a fraction of a second to seconds, more than the whole selection of a million records."""
    import subprocess
    import sys

    code = ("import sys\nfrom selector.app.cli import main\n"
            f"rc = main(['-q', 'select', {str(messy)!r}, '--metrics', 'length', '--budget', '5', "
            f"'--out', {str(tmp_path / 'o.jsonl')!r}])\n"
            "print(rc, [m for m in ('torch', 'datasets', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"
