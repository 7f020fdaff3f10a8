"""mmselect's selector package: `selector.core` (the floor: records, the ranking interface), `selector.learned` (the
learned selector) and `selector.app` (the `mmselect` CLI, the selection pipeline and the demo).

The public API below is re-exported from `selector.core`.
"""
from selector.core import (BudgetError, Diversity, FormatError, MmselectError, ModelNotAvailable, Ranker, Ranking,
                           RecordError, Selection, Stratified, group_quotas, resolve_budget, select)

__all__ = ["BudgetError", "FormatError", "MmselectError", "ModelNotAvailable", "RecordError", "Ranker", "Ranking",
           "Selection", "group_quotas", "resolve_budget", "select", "Diversity", "Stratified"]
