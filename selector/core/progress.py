"""The one progress display for long work: a tqdm bar on a terminal, plain periodic log lines elsewhere.

    bar = progress_bar(range(epochs), desc="train", unit="epoch", disable=not show)
    for epoch in bar:
        ...
        bar.set_postfix(loss=f"{loss:.3f}")

On a TTY this is tqdm (current loss/accuracy as its postfix, ETA). Without one (SLURM, nohup, CI logs) tqdm's
carriage-return redraws would fill the file, so `LineProgress` logs one line every `MMSELECT_PROGRESS_EVERY` seconds
(default 30) through the `selector.progress` logger, in the CLI's one log format, with counts, rate, ETA and the
postfix, plus a last line when work that lasted that long ends. `disable=True` (the CLI's --quiet) shows nothing either way. The call
takes tqdm's own arguments, so swapping a direct tqdm call for this one changes nothing else.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator

__all__ = ["progress_bar", "LineProgress", "interval", "ENV"]

ENV = "MMSELECT_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0
log = logging.getLogger("selector.progress")


def interval() -> float:
    """Seconds between plain progress lines: $MMSELECT_PROGRESS_EVERY, else 30 (a bad value falls back to 30)."""
    try:
        value = float(os.environ.get(ENV, DEFAULT_EVERY))
    except ValueError:
        return DEFAULT_EVERY
    return value if value >= 0 else DEFAULT_EVERY


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress:
    """tqdm's interface (iterate, update, set_postfix, set_description, close, context manager) printing a plain line
    at most every `every` seconds of `clock`, and one at the end. `emit` receives each line (default: log.info)."""

    def __init__(self, iterable: Iterable | None = None, *, desc: str = "", total: float | None = None,
                 unit: str = "it", initial: float = 0, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic, emit: Callable[[str], Any] | None = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.n = self._start_n = initial
        self.every = interval() if every is None else every
        self.clock, self.emit = clock, emit or log.info
        self.start = self._last = clock()
        self.postfix = ""
        self.closed = False
        self._emitted_at: float | None = None

    def line(self) -> str:
        elapsed = self.clock() - self.start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        count = f"{self.n:g}/{self.total:g} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        if self.total:
            count += f" ({100.0 * self.n / self.total:.0f}%)"
        parts = [f"{self.desc}: {count}" if self.desc else count, f"{rate:.3g} {self.unit}/s",
                 f"elapsed {_duration(elapsed)}"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last, self._emitted_at = now, self.n
            self.emit(self.line())

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # Short work (a nested bar) ends silently, and a line just given for the last count is not repeated.
            if self.clock() - self.start >= self.every and self._emitted_at != self.n:
                self.emit(self.line() + ", done")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, leave: bool = False,
                 stream: Any = None, **kwargs: Any):
    """A tqdm bar on a TTY (stderr, or `stream`), a `LineProgress` otherwise, a silent pass-through when `disable`.
    Takes tqdm's arguments (desc, total, unit, initial, ...)."""
    stream = stream if stream is not None else sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if disable or not is_tty:
        kwargs.pop("position", None), kwargs.pop("dynamic_ncols", None), kwargs.pop("mininterval", None)
        bar = LineProgress(iterable, desc=kwargs.pop("desc", ""), total=kwargs.pop("total", None),
                           unit=kwargs.pop("unit", "it"), initial=kwargs.pop("initial", 0))
        if disable:
            bar.emit = lambda line: None
        return bar
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=False, leave=leave, file=stream, **kwargs)
