"""Training tasks: deterministic under a seed, and metrics that give known values on known models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adapters
from adapters.training.tasks import TASKS, _rotate, make_task


def _lora_equal_to(task, layer: str, target: torch.Tensor, r: int) -> None:
    """Adapt ``layer`` with LoRA r so that ΔW = ``target`` exactly (B = U S, A = Vᵀ, scale 1)."""
    adapters.inject(task.model, "lora", targets=[layer], r=r)
    mod = task.model.get_submodule(layer)
    u, s, vh = torch.linalg.svd(target.double())
    with torch.no_grad():
        mod.lora_B.copy_((u[:, :r] * s[:r]).float())
        mod.lora_A.copy_(vh[:r].float())


@pytest.mark.parametrize("name", ["lowrank", "lowrank-plus-sparse", "memorize"])
def test_tasks_are_deterministic_under_a_seed(name: str) -> None:
    a, b, c = make_task(name, 3), make_task(name, 3), make_task(name, 4)
    for x, y in zip(a.batch(5), b.batch(5)):
        assert torch.equal(x, y)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))
    assert not torch.equal(a.batch(5)[0], a.batch(6)[0]) or name == "memorize"  # memorize is full-batch


def test_digits_tasks_are_deterministic_and_the_base_is_pretrained() -> None:
    a, b = make_task("digits-shift", 1), make_task("digits-shift", 1)
    assert torch.equal(a.batch(2)[0], b.batch(2)[0]) and torch.equal(a.batch(2)[1], b.batch(2)[1])
    ref = a.reference()
    assert ref["old_acc"] > 0.9 and ref["new_acc"] < 0.5  # a real classifier, and a real shift
    e1, e2, e3 = make_task("sparse-edit", 1), make_task("sparse-edit", 1), make_task("sparse-edit", 2)
    assert torch.equal(e1.edit_x, e2.edit_x) and torch.equal(e1.edit_y, e2.edit_y)
    assert not torch.equal(e1.edit_x, e3.edit_x)


def test_lowrank_true_update_gives_zero_recovery_error() -> None:
    t = make_task("lowrank", 0)
    assert t.evaluate(t.model)["recovery_error"] == pytest.approx(1.0)
    _lora_equal_to(t, "layer", t.target_delta, r=4)
    m = t.evaluate(t.model)
    assert m["recovery_error"] < 1e-5 and m["loss"] < 1e-8
    assert torch.linalg.matrix_rank(t.target_delta).item() == 4


def test_lowrank_plus_sparse_part_errors() -> None:
    t = make_task("lowrank-plus-sparse", 0)
    base = t.evaluate(t.model)
    assert base["recovery_error"] == pytest.approx(1.0) and base["lowrank_error"] == pytest.approx(1.0)
    assert base["sparse_error"] == pytest.approx(1.0)
    assert int(t.support.sum()) == round(0.005 * 128 * 128)
    # ΔW = L* alone: off the support the error is 0; on it, what is missing is S*
    _lora_equal_to(t, "layer", t.low_part, r=2)
    m = t.evaluate(t.model)
    assert m["lowrank_error"] < 1e-5
    want = float(t.sparse_part[t.support].norm() / t.target_delta[t.support].norm())
    assert m["sparse_error"] == pytest.approx(want, rel=1e-4)
    # ΔW = ΔW* exactly (full rank): every error is 0
    t2 = make_task("lowrank-plus-sparse", 0)
    _lora_equal_to(t2, "layer", t2.target_delta, r=128)
    assert all(v < 1e-4 for v in t2.evaluate(t2.model).values())


class _Lookup(nn.Module):
    """Returns one-hot logits of ``answers[nearest stored key]`` (an oracle for the metrics)."""

    def __init__(self, keys: torch.Tensor, answers: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.keys, self.answers, self.n = keys, answers, n_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.cdist(x, self.keys).argmin(-1)
        return nn.functional.one_hot(self.answers[idx], self.n).float() * 10


def test_memorize_metric_on_oracles() -> None:
    t = make_task("memorize", 0, features=32, n_pairs=64, n_classes=16)
    assert t.evaluate(_Lookup(t.keys, t.values, 16))["memorized"] == 1.0
    assert t.evaluate(_Lookup(t.keys, (t.values + 1) % 16, 16))["memorized"] == 0.0
    assert t.evaluate(t.model)["memorized"] < 0.3


def test_sparse_edit_metrics() -> None:
    t = make_task("sparse-edit", 0)
    base = t.evaluate(t.model)
    assert base["edit_success"] == 0.0 and base["locality"] == 1.0  # edits are to labels the base does not give

    class Edited(nn.Module):  # the base, but the edited inputs (and their neighbours) get the new label
        def __init__(self) -> None:
            super().__init__()
            self.base = t.model
            self.lookup = _Lookup(t.edit_x, t.edit_y, 10)

        def forward(self, x):
            near = torch.cdist(x, t.edit_x).min(-1).values < 0.97
            return torch.where(near[:, None], self.lookup(x), self.base(x))

    m = t.evaluate(Edited())
    assert m["edit_success"] == 1.0 and m["generalization"] == 1.0 and m["locality"] > 0.99


def test_digits_shift_rotation_is_the_shift() -> None:
    t = make_task("digits-shift", 0)

    class Unrotate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = t.model

        def forward(self, x):
            return self.base(torch.rot90(x.view(-1, 8, 8), -1, dims=(1, 2)).reshape(-1, 64))

    ref = t.reference()
    assert t.evaluate(Unrotate())["new_acc"] == pytest.approx(ref["old_acc"])
    x = torch.arange(64.0)[None]
    assert torch.equal(_rotate(_rotate(_rotate(_rotate(x)))), x)


def test_registry_and_shapes() -> None:
    assert list(TASKS) == ["lowrank", "memorize", "sparse-edit", "lowrank-plus-sparse", "digits-shift", "uuid"]
    assert make_task("digits-shift").shapes() == [("fc1", 128, 64), ("fc2", 128, 128), ("fc3", 10, 128)]
    with pytest.raises(KeyError, match="unknown task"):
        make_task("nope")
