"""Training schedules as pure functions ``step -> value`` (0-based optimizer steps, no state).

RoseLoRA keep fraction (Wang et al. 2024, Eq. 8; official loop ``roselora_main.py``), with
``t_final`` the ABSOLUTE step where the decay ends:

    τ(t) = 1                                                   t < t_init
    τ(t) = τ + (1 − τ) · (1 − (t − t_init) / (t_final − t_init))³   t_init ≤ t < t_final
    τ(t) = τ                                                   t ≥ t_final

AdaLoRA rank budget (Zhang et al. 2023; PEFT ``RankAllocator.budget_schedule``), with ``t_final``
a DURATION (the length of the last phase, which starts at ``total − t_final``):

    b(t) = b0                                                       t ≤ t_init
    b(t) = (b0 − bT) · (1 − (t − t_init) / (total − t_final − t_init))³ + bT
                                                                    t_init < t ≤ total − t_final
    b(t) = bT                                                       t > total − t_final

The two conventions map as AdaLoRA ``tinit`` = t_init and AdaLoRA ``tfinal`` = total − RoseLoRA t_final.

RoSA (Nikdan et al. 2024, schedule ``wl{N}``): ``warmup_steps`` LoRA-only steps, then
``mask_grad_steps`` steps that also collect the dense-weight gradient, then LoRA + sparse jointly.
"""

from __future__ import annotations

__all__ = ["cubic_keep_fraction", "adalora_cubic_budget", "rosa_phase", "RosaPhase"]

RosaPhase = str  # "lora_warmup" | "mask_collection" | "joint"


def _check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")


def cubic_keep_fraction(step: int, *, final: float, t_init: int, t_final: int, total: int) -> float:
    """RoseLoRA's keep fraction τ(step) ∈ [final, 1]; ``t_final`` is the absolute end of the decay.

    ``total`` (T) only bounds the schedule (t_init ≤ t_final ≤ T); steps past T keep τ = final.
    """
    _check_step(step)
    if not 0.0 < final <= 1.0:
        raise ValueError(f"final keep fraction must be in (0, 1], got {final!r}")
    if not 0 <= t_init <= t_final <= total:
        raise ValueError(f"need 0 <= t_init <= t_final <= total, got t_init={t_init}, t_final={t_final}, total={total}")
    if step < t_init:
        return 1.0
    if step >= t_final:
        return float(final)
    return final + (1.0 - final) * (1.0 - (step - t_init) / (t_final - t_init)) ** 3


def adalora_cubic_budget(step: int, *, initial: float, target: float, t_init: int, t_final: int, total: int) -> float:
    """AdaLoRA's cubic budget b(step) from ``initial`` to ``target``; ``t_final`` is a DURATION.

    Returns the real-valued budget; PEFT truncates it with ``int()`` (the same expression, so
    ``int(adalora_cubic_budget(...))`` equals PEFT's budget for integer budgets).
    """
    _check_step(step)
    if t_init < 0 or t_final < 0 or t_init + t_final >= total:
        raise ValueError(f"need t_init, t_final >= 0 and t_init + t_final < total, got {t_init}, {t_final}, {total}")
    if step <= t_init:
        return float(initial)
    if step > total - t_final:
        return float(target)
    mul = 1.0 - (step - t_init) / (total - t_final - t_init)
    return (initial - target) * mul**3 + target


def rosa_phase(step: int, *, warmup_steps: int, mask_grad_steps: int) -> RosaPhase:
    """RoSA's phase at ``step``: ``"lora_warmup"``, ``"mask_collection"`` or ``"joint"``."""
    _check_step(step)
    if warmup_steps < 0 or mask_grad_steps < 0:
        raise ValueError(f"warmup_steps and mask_grad_steps must be >= 0, got {warmup_steps}, {mask_grad_steps}")
    if step < warmup_steps:
        return "lora_warmup"
    if step < warmup_steps + mask_grad_steps:
        return "mask_collection"
    return "joint"
