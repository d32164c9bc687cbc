"""Budget matching (exact counts from the configs) and the training loop: reproducible, NaN-guarded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adapters
from adapters.formats.native import load_adapters, load_native
from adapters.training import BudgetError, match_budget, match_budget_layers, train
from adapters.training.budget import budget_report, match_layer_configs, param_count
from adapters.training.tasks import LowRankTask, make_task
from tests.conftest import requires_cuda

METHODS = sorted(adapters.METHODS)
SHAPES = [[(256, 256)], [(128, 64), (128, 128), (10, 128)], [(96, 160), (160, 96)]]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("rank", [4, 9])
def test_matched_counts_are_exact_and_within_five_percent(method, shapes, rank) -> None:
    budget = rank * sum(o + i for o, i in shapes)  # LoRA's count at r = rank
    try:
        cfgs = match_layer_configs(budget, shapes, method)
    except BudgetError as e:  # only when brute force agrees that no shared rank fits (MoRA's even r̂)
        assert len(shapes) == 1 and "nearest parameter count" in str(e)
        assert all(abs(param_count(method, {"r": r}, shapes) - budget) > 0.05 * budget for r in range(1, 60))
        return
    n = sum(param_count(method, c, [s]) for c, s in zip(cfgs, shapes))
    extra = adapters.METHODS[method].extra_params(shapes)  # declared to come on top (DoRA's magnitudes)
    assert 0 <= extra < n and abs(n - extra - budget) <= 0.05 * budget
    # the count is what the built adapters really train
    model = nn.Sequential(*[nn.Linear(i, o) for o, i in shapes])
    for k, c in enumerate(cfgs):
        adapters.inject(model, method, targets=[str(k)], **c)
    assert sum(m.n_params for _, m in adapters.adapter_modules(model)) == n
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n
    if all(c == cfgs[0] for c in cfgs):
        row = budget_report(budget, shapes, {method: cfgs[0]})[0]
        assert row["n_params"] == n and row["rel_error"] == pytest.approx((n - budget) / budget)


def test_known_answers() -> None:
    got = match_budget(4096, 256, 256, [m for m in ("lora", "nola", "mora") if m in adapters.METHODS])
    assert got["lora"] == {"r": 8}
    if "mora" in got:
        assert got["mora"]["r"] == 8 and param_count("mora", got["mora"], [(256, 256)]) == 64 ** 2
    if "nola" in got:
        assert got["nola"]["num_basis_a"] + got["nola"]["num_basis_b"] == 4096
    if "rosa" in adapters.METHODS:
        rosa = match_budget(4096, 256, 256, ["rosa"])["rosa"]
        assert rosa["r"] == 4 and param_count("rosa", rosa, [(256, 256)]) == 4096  # 2048 low-rank + 2048 sparse


def test_budget_errors_name_the_nearest_count() -> None:
    with pytest.raises(BudgetError, match="nearest parameter count .* is 512"):
        match_budget(300, 256, 256, ["lora"])
    with pytest.raises(KeyError, match="unknown method"):
        match_budget(4096, 256, 256, ["vera"])
    with pytest.raises(BudgetError):
        match_budget(0, 8, 8, ["lora"])


def test_per_layer_ranks_when_no_shared_rank_fits() -> None:
    shapes = [(128, 64), (128, 128), (10, 128)]  # LoRA r=4 → 2344, r=5 → 2930: 2640 fits neither
    with pytest.raises(BudgetError):
        match_budget_layers(2640, shapes, ["lora"])
    cfgs = match_layer_configs(2640, shapes, "lora")
    total = sum(param_count("lora", c, [s]) for c, s in zip(cfgs, shapes))
    assert abs(total - 2640) <= 0.05 * 2640 and len({c["r"] for c in cfgs}) > 1


def _small(seed: int = 0) -> LowRankTask:
    return LowRankTask(seed, features=24, batch_size=32)


def test_training_reduces_the_error_and_is_reproducible() -> None:
    a = train(_small(1), "lora", config={"r": 4}, steps=60, lr=3e-2, device="cpu", seed=1)
    b = train(_small(1), "lora", config={"r": 4}, steps=60, lr=3e-2, device="cpu", seed=1)
    c = train(_small(1), "lora", config={"r": 4}, steps=60, lr=3e-2, device="cpu", seed=2)
    assert a.metrics["recovery_error"] < 0.5 * a.reference["recovery_error"]
    for name in a.deltas:
        assert torch.equal(a.deltas[name].dense(), b.deltas[name].dense())
        assert not torch.equal(a.deltas[name].dense(), c.deltas[name].dense())
    assert a.trajectory["loss"].tolist() == b.trajectory["loss"].tolist()
    traj = a.trajectory
    assert list(traj["step"]) == list(range(1, 61)) and (traj["wall_s"] > 0).all() and (traj["peak_mem_mb"] > 0).all()
    assert traj["eval_recovery_error"].notna().sum() == 10 and "sparsity" in traj
    assert sorted(a.snapshots) == [0, 15, 30, 45, 60]
    assert a.snapshots[0]["layer"].dense().abs().max() == 0  # LoRA starts at ΔW = 0
    assert torch.equal(a.snapshots[60]["layer"].dense(), a.deltas["layer"].dense())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_a_tiny_task(method: str) -> None:
    t = _small()
    res = train(t, method, budget=400, steps=30, device="cpu", seed=0)
    assert res.stopped is None and abs(res.n_params - 400) <= 20
    assert res.metrics["recovery_error"] < res.reference["recovery_error"]


class _BlowUp(LowRankTask):
    """Finite losses, but from step 5 on the gradient is infinite (Adam then writes NaN weights)."""

    _step = -1

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        if self._step >= 5 and loss.requires_grad:
            loss.register_hook(lambda g: g * float("inf"))
        return loss

    def batch(self, step):
        self._step = step
        return super().batch(step)


def test_nan_guard_keeps_the_last_good_state(tmp_path) -> None:
    ckpt = tmp_path / "run.safetensors"
    bad = train(_BlowUp(0, features=24, batch_size=32), "lora", config={"r": 2}, steps=20, lr=1e-2,
                device="cpu", seed=0, checkpoint=ckpt, checkpoint_every=2)
    assert bad.stopped and "step 5" in bad.stopped and "NaN" in bad.stopped and bad.steps_done == 5
    good = train(_small(0), "lora", config={"r": 2}, steps=5, lr=1e-2, device="cpu", seed=0)
    assert torch.equal(bad.deltas["layer"].dense(), good.deltas["layer"].dense())
    on_disk = load_native(ckpt)
    assert torch.equal(on_disk["layer"].dense(), good.deltas["layer"].dense())
    assert on_disk.extra["stopped"] == bad.stopped and on_disk.extra["steps_done"] == 5


def test_infinite_loss_stops_with_a_message() -> None:
    res = train(_small(0), "lora", config={"r": 2}, steps=20, lr=1e30, device="cpu", seed=0)
    assert res.stopped and "the loss became" in res.stopped and "learning rate 1e+30" in res.stopped
    assert all(torch.isfinite(d.dense()).all() for d in res.deltas.deltas())


def test_checkpoint_round_trip(tmp_path) -> None:
    res = train(_small(0), "lora", config={"r": 3}, steps=10, device="cpu")
    path = res.save(tmp_path / "a.safetensors")
    ds = load_native(path)
    assert ds.extra["task"] == "lowrank" and ds.extra["metrics"] == pytest.approx(res.metrics)
    assert len(ds.extra["trajectory"]) == 10 and ds.extra["n_params"] == 3 * 48
    rebuilt = load_adapters(path)
    torch.testing.assert_close(rebuilt["layer"].delta_weight(), res.modules()["layer"].delta_weight().detach())


@requires_cuda
@pytest.mark.cuda
def test_nola_trained_on_gpu_rebuilds_the_same_delta_on_cpu(tmp_path) -> None:
    if "nola" not in adapters.METHODS:
        pytest.skip("NOLA is not in this build")
    res = train(_small(0), "nola", budget=200, steps=20, device="cuda", seed=0)
    assert res.device.startswith("cuda")
    path = res.save(tmp_path / "nola.safetensors")
    gpu = res.modules()["layer"].delta_weight().detach().cpu()
    cpu = load_adapters(path)["layer"].delta_weight().detach()
    assert gpu.abs().max() > 0
    torch.testing.assert_close(cpu, gpu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(load_native(path)["layer"].dense(), gpu, rtol=1e-5, atol=1e-6)
