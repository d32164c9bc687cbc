"""Three training fixes (issue 16): RoSA with no LoRA part starts its sparse part at once, every
method trains for any number of steps >= 1, and the divergence guard also stops a finite loss that
has grown past a multiple of its starting value (keeping the last good state)."""

from __future__ import annotations

import pytest

import adapters
from adapters.training import train
from adapters.training.tasks import LowRankTask
from app import cli

METHODS = sorted(adapters.METHODS)


def test_rosa_without_lora_part_trains_from_the_first_steps() -> None:
    res = train("lowrank-plus-sparse", "rosa", config={"r": 0, "density": 0.05}, steps=100, device="cpu")
    loss = res.trajectory["loss"].tolist()
    # step 0 collects the gradient for the mask (S is still 0), S trains from step 1 on
    assert loss[2] < 0.95 * loss[0], loss[:5]
    assert loss[10] < 0.7 * loss[0], loss[:12]
    mod = res.modules()["layer"]
    assert mod.is_mask_ready and mod.warmup_steps == 0


def test_rosa_without_lora_part_ignores_a_warmup_it_cannot_use() -> None:
    """Even an explicit warm-up is skipped when there is no LoRA part to warm up."""
    res = train("lowrank-plus-sparse", "rosa", config={"r": 0, "density": 0.05, "warmup_steps": 30}, steps=10,
                device="cpu")
    loss = res.trajectory["loss"].tolist()
    assert loss[3] < loss[0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_every_method_trains_for_any_steps(method: str, steps: int) -> None:
    task = LowRankTask(0, features=16, batch_size=16)
    res = train(task, method, budget=256, steps=steps, device="cpu")
    assert res.steps_done == steps and res.stopped is None
    assert len(res.trajectory) == steps


def test_roselora_one_step_on_lowrank() -> None:
    res = train("lowrank", "roselora", steps=1, device="cpu")
    assert res.steps_done == 1


def test_divergence_guard_stops_a_finite_blow_up_and_keeps_the_last_good_state() -> None:
    task = LowRankTask(0, features=24, batch_size=32)
    res = train(task, "lora", config={"r": 2}, steps=30, lr=30.0, device="cpu", divergence_factor=100.0)
    assert res.stopped is not None and res.stopped.startswith("training stopped at step ")
    assert "kept the last good state" in res.stopped and "100" in res.stopped
    traj = res.trajectory["loss"].tolist()  # row k: the loss of the state after k steps
    assert len(traj) == res.steps_done + 1 and all(v <= 100 * traj[0] for v in traj)
    # the kept state is the last one whose loss was within the bound (its loss on other data: same order)
    assert res.metrics["loss"] < 100 * traj[0]


def test_divergence_guard_default_and_off() -> None:
    base = dict(config={"r": 2}, steps=30, lr=30.0, device="cpu")
    res = train(LowRankTask(0, features=24, batch_size=32), "lora", **base)
    assert res.stopped is not None  # a default factor exists
    off = train(LowRankTask(0, features=24, batch_size=32), "lora", divergence_factor=None, **base)
    assert off.stopped is None or "NaN" in off.stopped or "nan" in off.stopped or "inf" in off.stopped


def test_divergence_guard_leaves_a_healthy_run_alone() -> None:
    res = train(LowRankTask(0, features=24, batch_size=32), "lora", config={"r": 2}, steps=40, lr=1e-2,
                device="cpu", divergence_factor=2.0)
    assert res.stopped is None and res.steps_done == 40


def test_divergence_factor_must_be_above_one() -> None:
    with pytest.raises(ValueError, match="divergence_factor"):
        train(LowRankTask(0, features=8, batch_size=8), "lora", config={"r": 1}, steps=2, divergence_factor=0.5)


def test_cli_divergence_factor(tmp_path, capsys) -> None:
    out = tmp_path / "run.safetensors"
    rc = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "20", "--lr", "30",
                   "--divergence-factor", "50", "--quiet", "--device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "training stopped at step" in err and out.is_file()
    rc = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "2", "--divergence-factor", "1",
                   "--quiet", "-o", str(out)])
    assert rc == 2 and "--divergence-factor" in capsys.readouterr().err
