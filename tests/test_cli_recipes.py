"""Recipes: `--config FILE.yaml` for every subcommand (flags on the command line win), `mmselect select`'s report as
a replayable recipe, `mmselect --version`, and the one registry helper behind every name the CLI accepts."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selector.app.cli import COMMANDS, build_parser, main
from selector.core.errors import MmselectError
from selector.core.registry import Registry, UnknownName


@pytest.fixture
def pool(tmp_path):
    rows = [json.dumps({"id": f"t{i}", "conversations": [{"from": "human", "value": f"question {i}"},
                                                         {"from": "gpt", "value": "word " * ((i * 7) % 13 + 1)}]})
            for i in range(30)]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(rows) + "\n")
    # a second metric, stored in a score table, so the recipe carries --scores, --weights and --normalise
    pq.write_table(pa.table({"id": [f"t{i}" for i in range(30)], "judge": [float((i * 11) % 17) for i in range(30)]}),
                   tmp_path / "scores.parquet")
    return path


def _ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_a_recipe_sets_flags_and_the_command_line_wins(pool, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"input: {pool}\nout: {tmp_path / 'from-recipe.jsonl'}\nbudget: 5\nbatch-size: 16\n"
                      f"metrics: [length]\nseed: 3\n")
    assert main(["select", "--config", str(recipe)]) == 0
    assert len(_ids(tmp_path / "from-recipe.jsonl")) == 5
    # flags given on the command line override the recipe
    assert main(["select", "--config", str(recipe), "--budget", "20%", "--out", str(tmp_path / "cli.jsonl")]) == 0
    assert len(_ids(tmp_path / "cli.jsonl")) == 6
    report = json.loads((tmp_path / "cli.jsonl.report.json").read_text())
    assert report["settings"]["budget"] == 0.2 and report["settings"]["batch_size"] == 16
    assert report["settings"]["seed"] == 3 and report["settings"]["metrics"] == ["length"]


def test_the_select_report_replays_the_run(pool, tmp_path, capsys):
    first = tmp_path / "first.jsonl"
    assert main(["select", str(pool), "--budget", "7", "--metrics", "length,judge", "--weights", "1,3",
                 "--normalise", "rank", "--scores", str(tmp_path / "scores.parquet"), "--seed", "5",
                 "--out", str(first)]) == 0
    report = json.loads((tmp_path / "first.jsonl.report.json").read_text())
    settings = report["settings"]
    assert settings["normalise"] == "rank" and settings["weights"] == [1.0, 3.0]
    assert settings["metrics"] == ["length", "judge"] and settings["scores"] == str(tmp_path / "scores.parquet")
    assert settings["selector"] is None and settings["budget"] == 7 and settings["seed"] == 5
    assert settings["versions"]["mmselect"] and settings["versions"]["pyarrow"] == pa.__version__
    replay = tmp_path / "replay.jsonl"
    assert main(["select", "--config", str(tmp_path / "first.jsonl.report.json"), "--out", str(replay)]) == 0
    assert replay.read_text() == first.read_text()
    again = json.loads((tmp_path / "replay.jsonl.report.json").read_text())
    assert again["selected_ids"] == report["selected_ids"]
    assert {k: v for k, v in again["settings"].items() if k != "out"} == \
        {k: v for k, v in settings.items() if k != "out"}
    # the recipe really drives the run: a different weight gives a different selection
    other = tmp_path / "other.jsonl"
    assert main(["select", "--config", str(tmp_path / "first.jsonl.report.json"), "--weights", "3,1",
                 "--out", str(other)]) == 0
    assert _ids(other) != _ids(first)


def test_every_subcommand_takes_config_and_rejects_unknown_keys(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("no_such_flag: 1\n")
    for name in COMMANDS.names():
        rc = main([name, "--config", str(recipe)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"mmselect {name}: error: --config {recipe}: unknown key(s) no_such_flag"), err
        assert len(err.strip().splitlines()) == 1


def test_recipe_values_go_through_the_flags_types(tmp_path):
    from selector.app.recipes import apply_config

    recipe = tmp_path / "prune.yaml"
    recipe.write_text("dataset: digits\nmethod: herding\nkeep: 10%\nout: p.json\nglobal: true\nkeep-curvature: high\n"
                      "width: 16\n")
    parser = build_parser()
    argv = ["prune", "--config", str(recipe), "--width", "8"]
    apply_config(parser, argv)
    ns = parser.parse_args(argv)
    assert (ns.keep, ns.global_cut, ns.keep_curvature, ns.width, ns.method) == (0.1, True, "high", 8, "herding")
    recipe.write_text("dataset: digits\nmethod: nope\n")
    with pytest.raises(MmselectError, match="method: invalid choice 'nope'"):
        apply_config(build_parser(), ["prune", "--config", str(recipe)])


def test_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"mmselect {version('mmselect')}"


def test_registry_lazy_lookup_aliases_and_unknown_names():
    reg = Registry("codec", normalize=str.lower, aliases={"jpg": "jpeg"})
    reg.add("jpeg", "json:dumps")  # lazy: nothing imported until looked up
    reg.add("png", len)
    assert reg.names() == ["jpeg", "png"] and "JPG" in reg and "gif" not in reg
    assert reg.get("JPG") is json.dumps and reg.get("png") is len
    assert reg.reference("jpeg") == "json:dumps"
    with pytest.raises(UnknownName, match="unknown codec 'gif'; known: jpeg, png") as exc:
        reg.get("gif")
    assert isinstance(exc.value, MmselectError)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("png", max)
    reg.add("png", len)  # the same object again is fine


def test_the_cli_choices_come_from_the_registries():
    from metrics.registry import METRICS
    from vision import NETS
    from vision.condense import CONDENSERS
    from vision.prune import RANKERS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices

    def choices(command, dest):
        return list(next(a for a in sub[command]._actions if a.dest == dest).choices)

    assert choices("prune", "method") == RANKERS.names()
    assert choices("prune", "net") == NETS.names()
    assert choices("condense", "method") == CONDENSERS.names()
    assert choices("condense", "init") == ["noise", "real", *RANKERS.names()]
    assert set(METRICS.names()) == {"length", "clip", "embed-image", "embed-text", "reward", "judge", "influence", "ifd"}
    assert list(sub) == COMMANDS.names()
