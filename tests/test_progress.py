"""The shared progress display: plain periodic lines without a TTY (fake clock), silence when disabled."""
from __future__ import annotations

import io
import logging

from selector.core.progress import LineProgress, interval, progress_bar


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_lines_every_interval_with_counts_rate_eta_and_postfix():
    clock, lines = Clock(), []
    bar = LineProgress(range(10), desc="train", unit="epoch", every=30, clock=clock, emit=lines.append)
    for i, _ in enumerate(bar):
        clock.t += 10  # each epoch takes 10 s: a line after epochs 3, 6 and 9 (30 s each), then the end line
        bar.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
    assert len(lines) == 4
    assert lines[0].startswith("train: 3/10 epoch (30%), 0.1 epoch/s, elapsed 0:30, ETA 1:10")
    assert lines[0].endswith("loss=0.333")  # the postfix set before the line was due
    assert lines[1].startswith("train: 6/10 epoch (60%)") and "ETA 0:40" in lines[1]
    assert lines[-1].startswith("train: 10/10 epoch (100%)") and lines[-1].endswith(", done")
    assert "ETA" not in lines[-1]


def test_short_work_prints_nothing_and_update_counts_without_total():
    clock, lines = Clock(), []
    with LineProgress(desc="score", unit="rec", every=30, clock=clock, emit=lines.append) as bar:
        bar.update(5)
        clock.t += 5
        bar.update(5)
    assert lines == []  # 5 s of work: no line, not even at the end (nested bars stay quiet)
    bar = LineProgress(desc="score", unit="rec", every=30, clock=clock, emit=lines.append)
    clock.t += 40
    bar.update(80)
    assert lines == ["score: 80 rec, 2 rec/s, elapsed 0:40"]
    bar.close()
    assert len(lines) == 1  # the last count was just reported: no repeated "done" line


def test_progress_bar_picks_lines_off_a_tty_and_nothing_when_disabled(caplog, monkeypatch):
    monkeypatch.setenv("MMSELECT_PROGRESS_EVERY", "0")
    assert interval() == 0.0
    with caplog.at_level(logging.INFO, logger="selector.progress"):
        assert list(progress_bar(range(3), desc="work", stream=io.StringIO())) == [0, 1, 2]
        assert [r.getMessage().split(",")[0] for r in caplog.records][:3] == ["work: 1/3 it (33%)", "work: 2/3 it (67%)",
                                                                              "work: 3/3 it (100%)"]
        caplog.clear()
        assert list(progress_bar(range(3), desc="work", disable=True, stream=io.StringIO())) == [0, 1, 2]
        assert caplog.records == []
    monkeypatch.setenv("MMSELECT_PROGRESS_EVERY", "soon")
    assert interval() == 30.0


def test_progress_bar_is_tqdm_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = progress_bar(total=4, desc="evaluate", unit="net", stream=stream)
    bar.update(4)
    bar.set_postfix(acc="0.91")
    bar.close()
    assert type(bar).__module__.startswith("tqdm") and "evaluate" in stream.getvalue() and "acc=0.91" in stream.getvalue()
