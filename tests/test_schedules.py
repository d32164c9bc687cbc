"""The schedules against their formulas at hand-computed points, and AdaLoRA's against PEFT's own code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adapters.schedules import adalora_cubic_budget, cubic_keep_fraction, rosa_phase

ROSE = dict(final=0.05, t_init=3, t_final=20, total=25)  # the official RoseLoRA knowledge-editing run


@pytest.mark.parametrize("step, want", [
    (0, 1.0), (2, 1.0),                                 # dense warm-up
    (3, 1.0),                                           # decay starts at 1 (cube of 1)
    (4, 0.05 + 0.95 * (16 / 17) ** 3),                  # = 0.8420...
    (11, 0.05 + 0.95 * (9 / 17) ** 3),                  # 0.1909...
    (19, 0.05 + 0.95 * (1 / 17) ** 3),
    (20, 0.05), (25, 0.05), (100, 0.05),                # t_final is the absolute end of the decay
])
def test_roselora_keep_fraction_hand_points(step: int, want: float) -> None:
    assert cubic_keep_fraction(step, **ROSE) == pytest.approx(want, abs=1e-15)


def test_roselora_keep_fraction_values_by_hand() -> None:
    assert cubic_keep_fraction(4, **ROSE) == pytest.approx(0.842021, abs=1e-6)  # 0.05 + 0.95·4096/4913
    assert cubic_keep_fraction(11, **ROSE) == pytest.approx(0.190963, abs=1e-6)  # 0.05 + 0.95·729/4913
    # the official loop (roselora_main.py) evaluated literally, for every step
    for it in range(30):
        official = 1.0 if it < 3 else (0.05 + 0.95 * (1 - (it - 3) / 17) ** 3 if it < 20 else 0.05)
        assert cubic_keep_fraction(it, **ROSE) == pytest.approx(official, abs=1e-15)
    # t_init == t_final: a step from 1 to the final value
    assert [cubic_keep_fraction(t, final=0.2, t_init=2, t_final=2, total=4) for t in range(4)] == [1.0, 1.0, 0.2, 0.2]


def test_adalora_budget_hand_points() -> None:
    kw = dict(initial=12, target=8, t_init=10, t_final=20, total=100)  # decay runs over (10, 80]
    assert adalora_cubic_budget(10, **kw) == 12
    assert adalora_cubic_budget(45, **kw) == pytest.approx(4 * 0.5**3 + 8)  # 8.5
    assert adalora_cubic_budget(80, **kw) == pytest.approx(8.0)            # mul = 0 at total - t_final
    assert adalora_cubic_budget(81, **kw) == 8
    # t_final is a DURATION: the same numbers read as RoseLoRA's absolute end differ
    assert adalora_cubic_budget(45, **kw) != pytest.approx(8 + 4 * (1 - 35 / 10) ** 3)


@pytest.mark.parametrize("tinit, tfinal, total", [(0, 0, 50), (10, 20, 100), (3, 5, 25)])
def test_adalora_budget_matches_peft(tinit: int, tfinal: int, total: int) -> None:
    from peft.tuners.adalora.layer import RankAllocator

    cfg = SimpleNamespace(tinit=tinit, tfinal=tfinal, total_step=total, deltaT=1)
    alloc = SimpleNamespace(peft_config=cfg, init_bgt=12 * 6, target_bgt=8 * 6)
    for step in range(total + 3):
        peft_budget, _ = RankAllocator.budget_schedule(alloc, step)
        ours = adalora_cubic_budget(step, initial=72, target=48, t_init=tinit, t_final=tfinal, total=total)
        assert int(ours) == peft_budget, step


def test_rosa_phases() -> None:
    phases = [rosa_phase(t, warmup_steps=2, mask_grad_steps=3) for t in range(7)]
    assert phases == ["lora_warmup"] * 2 + ["mask_collection"] * 3 + ["joint"] * 2
    assert rosa_phase(0, warmup_steps=0, mask_grad_steps=1) == "mask_collection"
    assert rosa_phase(0, warmup_steps=0, mask_grad_steps=0) == "joint"


@pytest.mark.parametrize("call", [
    lambda: cubic_keep_fraction(-1, **ROSE),
    lambda: cubic_keep_fraction(1, final=0.0, t_init=0, t_final=1, total=2),
    lambda: cubic_keep_fraction(1, final=0.5, t_init=3, t_final=2, total=5),
    lambda: adalora_cubic_budget(1, initial=4, target=2, t_init=5, t_final=5, total=10),
    lambda: rosa_phase(1.5, warmup_steps=1, mask_grad_steps=1),
])
def test_schedules_reject_bad_arguments(call) -> None:
    with pytest.raises(ValueError):
        call()
