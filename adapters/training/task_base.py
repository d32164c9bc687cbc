"""The ``Task`` interface every built-in training task implements, and helpers the tasks share
(seeded generators, ΔW of a module, freezing)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..base import AdapterLinear

__all__ = ["Task", "delta_of"]


def _gen(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + salt)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def delta_of(model: nn.Module, name: str) -> Tensor:
    """ΔW (out, in) of module ``name``: the adapter's update, or zeros for a plain ``nn.Linear``."""
    m = model.get_submodule(name)
    if isinstance(m, AdapterLinear):
        return m.delta_weight().detach()
    return torch.zeros_like(m.weight)


def _rel(a: Tensor, b: Tensor) -> float:
    """‖a‖ / ‖b‖ in float64."""
    return float(a.double().norm() / b.double().norm().clamp_min(1e-30))


def _freeze(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class Task:
    """One task instance (built for a seed). Subclasses set the class attributes and build
    ``self.model`` (frozen) and ``self.targets`` (names of the ``nn.Linear`` modules to adapt)."""

    name: ClassVar[str] = "abstract"
    description: ClassVar[str] = ""
    default_steps: ClassVar[int] = 300
    default_lr: ClassVar[float] = 1e-2
    default_budget: ClassVar[int] = 1024
    #: metric name -> True when higher is better (the headline metrics, in display order)
    headline: ClassVar[dict[str, bool]] = {}
    #: the claims benchmark's learning-rate grid: (points, ratio between neighbours) around a centre
    lr_grid: ClassVar[tuple[int, float]] = (3, 10.0)

    model: nn.Module
    targets: list[str]

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def shapes(self) -> list[tuple[str, int, int]]:
        """(name, out_features, in_features) of each target module, in order."""
        out = []
        for t in self.targets:
            m = self.model.get_submodule(t)
            out.append((t, int(m.out_features), int(m.in_features)))
        return out

    def batch(self, step: int) -> tuple[Tensor, ...]:
        """The training batch of ``step`` (CPU tensors, a pure function of seed and step)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The task's metrics for ``model`` (the base with or without adapters)."""
        raise NotImplementedError

    def target_dof(self) -> int | None:
        """Degrees of freedom of the target update, when the task has one (a budget below it cannot
        express the target); None when the task's goal is not one matrix to recover."""
        return None

    def reference(self) -> dict[str, float]:
        """Metrics of the frozen base model before adaptation (for context in tables)."""
        return self.evaluate(self.model)

