"""Training small adapters on built-in tasks: ``tasks`` (TASKS), ``budget`` (matched parameter
budgets), ``loop`` (``train`` -> ``TrainResult``), ``samples`` (the bundled sample checkpoints).

Submodules are imported lazily by their users; ``train`` and ``TASKS`` are re-exported here.
"""

from .budget import BudgetError, match_budget, match_budget_layers
from .loop import TrainResult, train
from .tasks import TASKS, Task, make_task

__all__ = ["BudgetError", "TASKS", "Task", "TrainResult", "make_task", "match_budget", "match_budget_layers", "train"]
