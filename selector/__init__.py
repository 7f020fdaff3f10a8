"""mmselect's selector layer: instruction-record I/O, the shared ranking interface, and the selection pipeline."""
from selector.errors import BudgetError, FormatError, MmselectError, ModelNotAvailable, RecordError
from selector.ranking import Ranker, Ranking, Selection, group_quotas, resolve_budget, select

__all__ = ["BudgetError", "FormatError", "MmselectError", "ModelNotAvailable", "RecordError", "Ranker", "Ranking",
           "Selection", "group_quotas", "resolve_budget", "select"]
