"""Schedule curves sample the cubic formulas (RoseLoRA: absolute t_final; AdaLoRA: duration) and RoSA's phases."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.schedules import observed_keep, rosa_phases, schedule_curve, schedule_overlay


def test_roselora_curve_matches_the_formula() -> None:
    df = schedule_curve(25, convention="roselora", final=0.05, t_init=3, t_final=20)
    assert list(df.columns) == ["layer", "method", "step", "keep_fraction", "convention"] and len(df) == 26
    kf = dict(zip(df.step, df.keep_fraction))
    assert kf[0] == kf[2] == 1.0 and kf[20] == kf[25] == 0.05
    assert kf[10] == pytest.approx(0.05 + 0.95 * (1 - 7 / 17) ** 3)
    assert all(a >= b for a, b in zip(df.keep_fraction, df.keep_fraction[1:]))


def test_adalora_convention_t_final_is_a_duration() -> None:
    df = schedule_curve(100, convention="adalora", final=0.25, t_init=10, t_final=30)
    kf = dict(zip(df.step, df.keep_fraction))
    assert kf[10] == 1.0 and kf[70] == pytest.approx(0.25) and kf[71] == 0.25
    assert kf[40] == pytest.approx(0.75 * (1 - 30 / 60) ** 3 + 0.25)


def test_overlay_maps_conventions_onto_the_same_curve() -> None:
    traj = pd.DataFrame({"step": [0, 10, 25], "sparsity": [0.0, 0.5, 0.95], "loss": [1, 0.5, 0.2]})
    df = schedule_overlay(25, final=0.05, t_init=3, t_final=20, trajectory=traj)
    rose = df[df.convention == "roselora"].keep_fraction.to_numpy()
    ada = df[df.convention == "adalora"].keep_fraction.to_numpy()
    assert rose == pytest.approx(ada)
    obs = df[df.convention == "observed"]
    assert obs.keep_fraction.tolist() == pytest.approx([1.0, 0.5, 0.05])
    with pytest.raises(ValueError):
        observed_keep(pd.DataFrame({"step": [0]}))
    with pytest.raises(ValueError):
        schedule_curve(10, convention="linear")


def test_rosa_phases() -> None:
    df = rosa_phases(10, warmup_steps=4, mask_grad_steps=2)
    assert df.phase.tolist() == ["lora_warmup"] * 4 + ["mask_collection"] * 2 + ["joint"] * 5
    assert {"layer", "method"} <= set(df.columns)
