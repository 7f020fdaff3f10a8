"""mmselect's floor: errors, file and Arrow helpers, instruction records (read, validate, write), score tables,
model resolution, and the shared ranking interface (`Ranking`, `select`, rankers, normalisation).

Every other layer imports it; it imports no other mmselect package (see docs/architecture.md).
"""
from selector.core.errors import BudgetError, FormatError, MmselectError, ModelNotAvailable, RecordError, SettingsError
from selector.core.diversity import Diversity
from selector.core.ranking import Ranker, Ranking, Selection, group_quotas, resolve_budget, select
from selector.core.stratified import Stratified

__all__ = ["BudgetError", "FormatError", "MmselectError", "ModelNotAvailable", "RecordError", "SettingsError", "Ranker", "Ranking",
           "Selection", "group_quotas", "resolve_budget", "select", "Diversity", "Stratified"]
