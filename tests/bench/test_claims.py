"""The claims benchmark's tuning protocol: per-method centres from the registry, grids spanning >= 100x,
widening until the chosen rate is inside its grid, budget-infeasible cells, and a real small run."""

from __future__ import annotations

import math

import pytest

from adapters.registry import METHODS
from adapters.training.tasks import TASKS
from bench import claims


@pytest.mark.parametrize("task", list(TASKS))
def test_grids_span_100x_around_the_method_centre(task: str) -> None:
    for v in (*METHODS, claims.NOLA_TENTH):
        g = claims.grid(task, v)
        c = TASKS[task].default_lr * METHODS[claims._method(v)].lr_scale
        assert g == sorted(g) and g[-1] / g[0] >= 100 * (1 - 1e-9)
        assert math.isclose(math.sqrt(g[0] * g[-1]), c, rel_tol=1e-9)  # centred (log scale)
        assert any(math.isclose(x, c) for x in g)
    assert claims.centre(task, "nola") == pytest.approx(10 * claims.centre(task, "lora"))


def test_widen_steps_past_the_edge_only() -> None:
    assert claims.widen([1.0, 10.0, 100.0], 100.0, 10.0) == 1000.0
    assert claims.widen([1.0, 10.0, 100.0], 1.0, 10.0) == 0.1
    assert claims.widen([1.0, 10.0, 100.0], 10.0, 10.0) is None


class _Synthetic:
    """A stand-in trainer whose 'memorized' peaks at a known rate (the protocol, not the training, is
    under test): rates far above ``peak`` diverge."""

    def __init__(self, peak: float) -> None:
        self.peak, self.done, self.jobs = peak, 0, []

    def __call__(self, jobs):
        self.jobs += jobs
        self.done += len(jobs)
        rows = []
        for task, variant, seed, lr, _ in jobs:
            d = abs(math.log10(lr / self.peak))
            rows.append({"task": task, "variant": variant, "seed": seed, "lr": lr, "n_params": 1, "wall_s": 0.0,
                         "stopped": "diverged" if lr > 300 * self.peak else None,
                         "memorized": max(0.0, 1 - 0.2 * d) + 0.001 * seed, "loss": d})
        return rows


def test_tuning_widens_until_the_best_rate_is_inside_and_runs_the_other_seeds() -> None:
    c = claims.centre("memorize", "lora")
    run = _Synthetic(peak=c * 100)  # a decade past the initial grid's top
    out = claims.tune([("memorize", "lora")], run, small=False, seeds=3)[("memorize", "lora")]
    assert not out["at_edge"] and out["grid"][0] < out["lr"] < out["grid"][-1]
    assert math.isclose(out["lr"], c * 100, rel_tol=1e-6)
    assert [r["seed"] for r in out["rows"]] == [0, 1, 2] and all(r["lr"] == out["lr"] for r in out["rows"])
    best = claims.summarise({("memorize", "lora"): out})[("memorize", "lora")]
    assert best["mean"]["memorized"] == pytest.approx(1.001)


def test_widening_is_capped_and_the_edge_reported() -> None:
    c = claims.centre("memorize", "lora")
    run = _Synthetic(peak=c * 1e5)
    out = claims.tune([("memorize", "lora")], run, small=False, seeds=1)[("memorize", "lora")]
    assert out["at_edge"] and len(out["grid"]) == len(claims.grid("memorize", "lora")) + claims.MAX_WIDEN
    best = claims.summarise({("memorize", "lora"): out})
    assert "AT GRID EDGE" in claims.task_tables(best, {})


def test_a_diverging_top_rate_is_never_chosen() -> None:
    c = claims.centre("memorize", "lora")
    run = _Synthetic(peak=c * 10 ** 0.5 / 300)  # the top rate of the grid diverges, one below does not
    out = claims.tune([("memorize", "lora")], run, small=False, seeds=1)[("memorize", "lora")]
    assert out["rows"][0]["stopped"] is None and not out["at_edge"]


def test_budget_infeasible_cells() -> None:
    assert claims.infeasible("lowrank", claims.NOLA_TENTH) == "budget-infeasible: 102 params < 1008 target dof"
    assert claims.infeasible("lowrank", "lora") is None  # 1024 >= 1008
    assert claims.infeasible("memorize", "nola") is None  # no target dof: never marked


def test_small_run_prints_the_table(capsys) -> None:
    assert claims.main(["--small", "--tasks", "lowrank", "--methods", "lora,nola", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "budget-infeasible" in out and "lowrank (budget 1024" in out and "runs in" in out
    assert "NOLA matches LoRA at >= 10x fewer params (lowrank)?      n/a" in out


def test_runner_logs_each_run_and_resumes_from_the_log(tmp_path) -> None:
    log = tmp_path / "runs.jsonl"
    job = ("lowrank", "lora", 0, 0.02, 2)
    first = claims.Runner(1, str(log))
    (row,) = first([job])
    assert first.done == 1 and len(log.read_text().splitlines()) == 1 and row["steps"] == 2
    again = claims.Runner(1, str(log))
    (same,) = again([job])
    assert again.done == 0 and same["recovery_error"] == row["recovery_error"]
