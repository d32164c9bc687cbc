"""Plot data for training schedules: RoseLoRA's and AdaLoRA's cubic curves, RoSA's phases, observed sparsity.

The schedule functions themselves live in ``adapters/schedules.py`` (pure ``step -> value``); this
module only samples them over steps and puts them on common axes (keep fraction ∈ [0, 1] vs step).
AdaLoRA's budget is shown as a keep fraction b(t)/b(0).
"""

from __future__ import annotations

import pandas as pd

from adapters.schedules import adalora_cubic_budget, cubic_keep_fraction, rosa_phase

__all__ = ["schedule_curve", "rosa_phases", "observed_keep", "schedule_overlay"]

COLUMNS = ["layer", "method", "step", "keep_fraction", "convention"]


def schedule_curve(total: int, *, convention: str = "roselora", final: float = 0.05, t_init: int = 3,
                   t_final: int = 20, steps=None) -> pd.DataFrame:
    """Keep fraction at every step 0..total (or at ``steps``) under one convention.

    ``convention="roselora"``: ``cubic_keep_fraction`` with ``t_final`` the absolute end step.
    ``convention="adalora"``: ``adalora_cubic_budget(initial=1, target=final)`` with ``t_final`` a
    DURATION (the last ``t_final`` steps hold the target).
    Columns: layer (``schedule``), method (= convention), step, keep_fraction, convention.
    """
    steps = range(total + 1) if steps is None else steps
    if convention == "roselora":
        vals = [cubic_keep_fraction(int(s), final=final, t_init=t_init, t_final=t_final, total=total) for s in steps]
    elif convention == "adalora":
        vals = [adalora_cubic_budget(int(s), initial=1.0, target=final, t_init=t_init, t_final=t_final, total=total)
                for s in steps]
    else:
        raise ValueError(f"unknown schedule convention {convention!r} (roselora or adalora)")
    return pd.DataFrame({"layer": "schedule", "method": convention, "step": list(steps), "keep_fraction": vals,
                         "convention": convention}, columns=COLUMNS)


def rosa_phases(total: int, *, warmup_steps: int = 64, mask_grad_steps: int = 1) -> pd.DataFrame:
    """RoSA's phase at every step 0..total, and the phase boundaries for shading.

    Columns: layer (``schedule``), method (``rosa``), step, phase (lora_warmup / mask_collection /
    joint), keep_fraction (the sparse part's share: 0 before ``joint``, 1 after; for a step plot).
    """
    phases = [rosa_phase(s, warmup_steps=warmup_steps, mask_grad_steps=mask_grad_steps) for s in range(total + 1)]
    return pd.DataFrame({"layer": "schedule", "method": "rosa", "step": range(total + 1), "phase": phases,
                         "keep_fraction": [1.0 if p == "joint" else 0.0 for p in phases]})


def observed_keep(trajectory: pd.DataFrame, column: str = "sparsity") -> pd.DataFrame:
    """A training trajectory's observed sparsity as a keep fraction (1 − sparsity) on the schedule axes.

    ``trajectory`` needs ``step`` and ``column``. Columns: layer (``observed``), method (``observed``),
    step, keep_fraction, convention (``observed``).
    """
    if "step" not in trajectory or column not in trajectory:
        raise ValueError(f"the trajectory needs 'step' and {column!r} columns, has {list(trajectory.columns)}")
    t = trajectory[["step", column]].dropna()
    return pd.DataFrame({"layer": "observed", "method": "observed", "step": t["step"].to_numpy(),
                         "keep_fraction": 1.0 - t[column].to_numpy(dtype=float), "convention": "observed"},
                        columns=COLUMNS)


def schedule_overlay(total: int, *, final: float = 0.05, t_init: int = 3, t_final: int = 20,
                     trajectory: pd.DataFrame | None = None) -> pd.DataFrame:
    """RoseLoRA's curve, the AdaLoRA curve with the SAME shape (t_final mapped to the duration total − t_final),
    and the observed keep fraction when a trajectory is given, stacked (columns of ``schedule_curve``)."""
    parts = [schedule_curve(total, convention="roselora", final=final, t_init=t_init, t_final=t_final),
             schedule_curve(total, convention="adalora", final=final, t_init=t_init, t_final=total - t_final)]
    if trajectory is not None:
        parts.append(observed_keep(trajectory))
    return pd.concat(parts, ignore_index=True)
