"""Built-in training tasks: a frozen small base model, data made in code (or scikit-learn's bundled
digits), a loss and the task's own metrics. Each is built so one method's claim can show against
LoRA at the same parameter budget, and each is CPU-fast (a few hundred steps in seconds).

    lowrank              y = (W0 + ΔW*) x, rank(ΔW*) = 4           -> recovery error ‖ΔW − ΔW*‖/‖ΔW*‖
    lowrank-plus-sparse  ΔW* = L* (rank 2) + S* (0.5 % large outliers) -> recovery error of each part
    memorize             random key -> class associations (MoRA's UUID analogue) -> fraction memorized
    sparse-edit          relabel a few digits of a pretrained classifier -> edit success, locality, generalization
    digits-shift         the digits MLP adapted to 90°-rotated images  -> new-domain and kept old-domain accuracy
    uuid                 random hex key -> value pairs memorised by a pretrained 4-block transformer,
                         every linear layer adapted (MoRA §4.1)          -> exact-match and character accuracy

The digits tasks live in ``digits``, the uuid task in ``uuid_task`` (its model in ``transformer``),
the ``Task`` interface in ``task_base``; this module holds the regression and memorize tasks and
the registry.

A task is deterministic under its seed: the same seed gives the same base, data and batches on any
device (data is drawn on the CPU with explicit generators). ``TASKS`` maps names to classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .digits import DigitsShiftTask, SparseEditTask, _rotate, digits_base
from .task_base import Task, _device, _freeze, _gen, _rel, delta_of
from .uuid_task import UuidTask

__all__ = ["Task", "TASKS", "make_task", "LowRankTask", "LowRankPlusSparseTask", "MemorizeTask",
           "SparseEditTask", "DigitsShiftTask", "UuidTask", "delta_of", "digits_base", "_rotate"]


# ----------------------------------------------------------------------------------------------
# Synthetic regression: y = (W0 + ΔW*) x with x ~ N(0, I). Then E‖(ΔW − ΔW*) x‖² = ‖ΔW − ΔW*‖²_F,
# so the loss (sum over outputs, mean over the batch) is the squared recovery error in expectation.
class _Regression(Task):
    layer = "layer"

    def __init__(self, seed: int = 0, features: int = 128, batch_size: int = 256) -> None:
        super().__init__(seed)
        self.features, self.batch_size = int(features), int(batch_size)
        g = _gen(seed, 1)
        d = self.features
        self.model = nn.Sequential()
        lin = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(d, d, generator=g) / d ** 0.5)
        self.model.add_module(self.layer, lin)
        _freeze(self.model)
        self.targets = [self.layer]
        self.target_delta = self._make_target(g)
        self.true_weight = lin.weight.detach().clone() + self.target_delta  # W0 + ΔW* (out, in)
        self.eval_x = torch.randn(1024, d, generator=_gen(seed, 2))

    def _make_target(self, g: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _truth(self, x: Tensor) -> Tensor:
        return x @ self.true_weight.t()

    def batch(self, step: int) -> tuple[Tensor, ...]:
        x = torch.randn(self.batch_size, self.features, generator=_gen(self.seed, 10_000 + step))
        return x, self._truth(x)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return (model(x) - y).pow(2).sum(-1).mean()

    def _eval_loss(self, model: nn.Module) -> float:
        dev = _device(model)
        with torch.no_grad():
            return float(self.loss(model, (self.eval_x.to(dev), self._truth(self.eval_x).to(dev))))


def _low_rank(d: int, rank: int, svals: list[float], g: torch.Generator) -> Tensor:
    """U diag(s) Vᵀ with random orthonormal U, V (d, rank)."""
    u, _ = torch.linalg.qr(torch.randn(d, rank, generator=g))
    v, _ = torch.linalg.qr(torch.randn(d, rank, generator=g))
    return u @ torch.diag(torch.tensor(svals)) @ v.t()


class LowRankTask(_Regression):
    name = "lowrank"
    description = "recover a rank-4 update ΔW* of a 128×128 layer from input/output pairs (LoRA's home ground)"
    default_steps, default_lr, default_budget = 300, 2e-2, 1024
    headline = {"recovery_error": False, "loss": False}
    true_rank = 4

    def _make_target(self, g: torch.Generator) -> Tensor:
        return _low_rank(self.features, self.true_rank, [1.0, 0.8, 0.6, 0.4], g)

    def target_dof(self) -> int:
        """A rank-k d×d matrix has k(2d − k) degrees of freedom."""
        return self.true_rank * (2 * self.features - self.true_rank)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        dw = delta_of(model, self.layer).cpu().float()
        return {"recovery_error": _rel(dw - self.target_delta, self.target_delta), "loss": self._eval_loss(model)}


class LowRankPlusSparseTask(_Regression):
    name = "lowrank-plus-sparse"
    description = ("recover ΔW* = L* (rank 2) + S* (0.5 % of entries, large outliers) of a 128×128 layer "
                   "(RoSA's robust-PCA premise)")
    default_steps, default_lr, default_budget = 300, 2e-2, 1024
    headline = {"recovery_error": False, "lowrank_error": False, "sparse_error": False}
    outlier_fraction = 0.005

    def _make_target(self, g: torch.Generator) -> Tensor:
        d = self.features
        self.low_part = _low_rank(d, 2, [1.0, 0.7], g)
        n = max(1, round(self.outlier_fraction * d * d))
        idx = torch.randperm(d * d, generator=g)[:n]
        mag = 0.1 + 0.1 * torch.rand(n, generator=g)
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        sparse = torch.zeros(d * d)
        sparse[idx] = sign * mag
        self.sparse_part = sparse.view(d, d)
        self.support = self.sparse_part != 0
        return self.low_part + self.sparse_part

    def target_dof(self) -> int:
        """The rank-2 part's 2(2d − 2) plus one value per outlier (their positions not counted)."""
        return 2 * (2 * self.features - 2) + int(self.support.sum())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Relative errors ‖(ΔW − ΔW*)_X‖ / ‖ΔW*_X‖ over X = all entries (recovery_error), the
        outliers' support Ω (sparse_error) and its complement, where ΔW* = L* (lowrank_error)."""
        err = delta_of(model, self.layer).cpu().float() - self.target_delta
        on, off = self.support, ~self.support
        return {
            "recovery_error": _rel(err, self.target_delta),
            "lowrank_error": _rel(err[off], self.target_delta[off]),
            "sparse_error": _rel(err[on], self.target_delta[on]),
            "loss": self._eval_loss(model),
        }


# ----------------------------------------------------------------------------------------------
class MemorizeTask(Task):
    """Random key -> class associations stored through one adapted square layer and a frozen random
    read-out: the analogue of MoRA's UUID-pair memorisation (a high-rank, knowledge-heavy update)."""

    name = "memorize"
    description = "memorise 1024 random key→class pairs (128 classes) through an adapted 128×128 layer (MoRA's UUID analogue)"
    default_steps, default_lr, default_budget = 300, 1e-2, 4096
    headline = {"memorized": True, "loss": False}

    def __init__(self, seed: int = 0, features: int = 128, n_pairs: int = 1024, n_classes: int = 128) -> None:
        super().__init__(seed)
        g = _gen(seed, 3)
        d = int(features)
        self.model = nn.Sequential()
        memory, head = nn.Linear(d, d, bias=False), nn.Linear(d, int(n_classes), bias=False)
        with torch.no_grad():
            memory.weight.copy_(torch.randn(d, d, generator=g) / d ** 0.5)
            head.weight.copy_(torch.randn(int(n_classes), d, generator=g) / d ** 0.5)
        self.model.add_module("memory", memory)
        self.model.add_module("head", head)
        _freeze(self.model)
        self.targets = ["memory"]
        self.keys = torch.randn(int(n_pairs), d, generator=g)
        self.values = torch.randint(0, int(n_classes), (int(n_pairs),), generator=g)

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return self.keys, self.values  # full batch: memorisation, not generalisation

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        dev = _device(model)
        with torch.no_grad():
            logits = model(self.keys.to(dev))
            return {"memorized": float((logits.argmax(-1).cpu() == self.values).float().mean()),
                    "loss": float(F.cross_entropy(logits, self.values.to(dev)))}


TASKS: dict[str, type[Task]] = {t.name: t for t in (
    LowRankTask, MemorizeTask, SparseEditTask, LowRankPlusSparseTask, DigitsShiftTask, UuidTask)}


def make_task(name: str, seed: int = 0, **sizes: Any) -> Task:
    """Build task ``name`` for ``seed`` (``sizes`` override its dimensions, e.g. for quick tests)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](seed, **sizes)

