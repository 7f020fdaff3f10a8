"""Sanity of a learned selection: did the selector favour what its quality metrics favour? A selector whose ranking
correlates negatively with EVERY quality metric it was trained on has most likely learned the labels' noise (or
their sign backwards), so the selection is shown against the pool and a warning is logged."""
from __future__ import annotations

import logging

import numpy as np

from selector.core.selection_summary import MetricShift, shift_lines

log = logging.getLogger(__name__)


def against_all(shifts: list[MetricShift], trained_on: list[str]) -> bool:
    """True when the ranking correlates negatively with every trained-on metric that has a correlation."""
    rhos = [s.spearman for s in shifts if s.metric in trained_on and np.isfinite(s.spearman)]
    return bool(rhos) and all(r < 0 for r in rhos)


def check_selection(shifts: list[MetricShift], trained_on: list[str]) -> list[str]:
    """Lines for the user (selection vs pool, metric by metric), with a warning logged when `against_all`."""
    if not shifts:
        return []
    lines = ["selection vs pool:", *shift_lines(shifts)]
    if against_all(shifts, trained_on):
        names = ", ".join(s.metric for s in shifts if s.metric in trained_on)
        log.warning("the selector's ranking correlates negatively with every quality metric it was trained on "
                    "(%s): it may have learned label noise; compare with `--metrics clip` or retrain with more "
                    "subsets or seeds", names)
    return lines
