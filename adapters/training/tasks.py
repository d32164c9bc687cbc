"""Built-in training tasks: a frozen small base model, data made in code (or scikit-learn's bundled
digits), a loss and the task's own metrics. Each is built so one method's claim can show against
LoRA at the same parameter budget, and each is CPU-fast (a few hundred steps in seconds).

    lowrank              y = (W0 + ΔW*) x, rank(ΔW*) = 4           -> recovery error ‖ΔW − ΔW*‖/‖ΔW*‖
    lowrank-plus-sparse  ΔW* = L* (rank 2) + S* (0.5 % large outliers) -> recovery error of each part
    memorize             random key -> class associations (MoRA's UUID analogue) -> fraction memorized
    sparse-edit          relabel a few digits of a pretrained classifier -> edit success, locality, generalization
    digits-shift         the digits MLP adapted to 90°-rotated images  -> new-domain and kept old-domain accuracy

A task is deterministic under its seed: the same seed gives the same base, data and batches on any
device (data is drawn on the CPU with explicit generators). ``TASKS`` maps names to classes.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import AdapterLinear

__all__ = ["Task", "TASKS", "make_task", "LowRankTask", "LowRankPlusSparseTask", "MemorizeTask",
           "SparseEditTask", "DigitsShiftTask", "delta_of", "digits_base"]


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

    def reference(self) -> dict[str, float]:
        """Metrics of the frozen base model before adaptation (for context in tables)."""
        return self.evaluate(self.model)


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


# ----------------------------------------------------------------------------------------------
# scikit-learn's bundled 8×8 digits (1797 images, shipped inside the package: no download).
class DigitsMLP(nn.Module):
    """64 -> 128 -> 128 -> 10 ReLU classifier; layers ``fc1``, ``fc2``, ``fc3``."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _rotate(x: Tensor) -> Tensor:
    """(n, 64) digits rotated by 90° (as 8×8 images)."""
    return torch.rot90(x.view(-1, 8, 8), 1, dims=(1, 2)).reshape(-1, 64)


@functools.lru_cache(maxsize=1)
def _digits_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=_gen(0, 4))
    tr, te = perm[:1200], perm[1200:]
    return x[tr], y[tr], x[te], y[te]


@functools.lru_cache(maxsize=1)
def _digits_state() -> dict[str, Tensor]:
    """The pretrained digits classifier (fixed seed, 300 Adam steps on batches of 256; cached per process)."""
    xtr, ytr, _, _ = _digits_data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DigitsMLP()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = _gen(0, 6)
    for _ in range(300):
        idx = torch.randint(0, len(ytr), (256,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def digits_base() -> DigitsMLP:
    """A fresh frozen copy of the pretrained digits classifier."""
    net = DigitsMLP()
    net.load_state_dict(_digits_state())
    return _freeze(net)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x.to(_device(model))).argmax(-1).cpu() == y).float().mean())


class DigitsShiftTask(Task):
    name = "digits-shift"
    description = "adapt a digits MLP (all three layers) to 90°-rotated images; accuracy on the new domain and kept on the old"
    default_steps, default_lr, default_budget = 300, 1e-2, 2400
    headline = {"new_acc": True, "old_acc": True}

    def __init__(self, seed: int = 0, batch_size: int = 256) -> None:
        super().__init__(seed)
        self.model = digits_base()
        self.targets = ["fc1", "fc2", "fc3"]
        self.xtr, self.ytr, self.xte, self.yte = _digits_data()
        self.batch_size = int(batch_size)

    def batch(self, step: int) -> tuple[Tensor, ...]:
        idx = torch.randint(0, len(self.ytr), (self.batch_size,), generator=_gen(self.seed, 20_000 + step))
        return _rotate(self.xtr[idx]), self.ytr[idx]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"new_acc": _accuracy(model, _rotate(self.xte), self.yte),
                "old_acc": _accuracy(model, self.xte, self.yte)}


class SparseEditTask(Task):
    """Knowledge-editing analogue: give ``n_edits`` correctly classified test digits a new label by
    adapting only ``fc2``, training on those digits alone.

    Metrics: edit_success (edited digits now get the new label), locality (the other test digits keep
    the base's prediction), generalization (noisy copies of the edited digits get the new label).
    """

    name = "sparse-edit"
    description = "relabel 8 digits of a pretrained classifier by adapting one layer (knowledge-editing analogue)"
    default_steps, default_lr, default_budget = 100, 1e-2, 1024
    headline = {"edit_success": True, "locality": True, "generalization": True}

    def __init__(self, seed: int = 0, n_edits: int = 8, noise: float = 0.1, n_noisy: int = 10) -> None:
        super().__init__(seed)
        self.model = digits_base()
        self.targets = ["fc2"]
        _, _, xte, yte = _digits_data()
        with torch.no_grad():
            base_pred = self.model(xte).argmax(-1)
        g = _gen(seed, 5)
        correct = torch.nonzero(base_pred == yte).flatten()
        chosen = correct[torch.randperm(len(correct), generator=g)[: int(n_edits)]]
        keep = torch.ones(len(yte), dtype=torch.bool)
        keep[chosen] = False
        self.edit_x = xte[chosen]
        self.edit_y = (yte[chosen] + torch.randint(1, 10, (len(chosen),), generator=g)) % 10
        self.other_x, self.other_pred = xte[keep], base_pred[keep]
        self.noisy_x = (self.edit_x.repeat(int(n_noisy), 1)
                        + noise * torch.randn(len(chosen) * int(n_noisy), 64, generator=g))
        self.noisy_y = self.edit_y.repeat(int(n_noisy))

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return self.edit_x, self.edit_y

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"edit_success": _accuracy(model, self.edit_x, self.edit_y),
                "locality": _accuracy(model, self.other_x, self.other_pred),
                "generalization": _accuracy(model, self.noisy_x, self.noisy_y)}


TASKS: dict[str, type[Task]] = {t.name: t for t in (
    LowRankTask, MemorizeTask, SparseEditTask, LowRankPlusSparseTask, DigitsShiftTask)}


def make_task(name: str, seed: int = 0, **sizes: Any) -> Task:
    """Build task ``name`` for ``seed`` (``sizes`` override its dimensions, e.g. for quick tests)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](seed, **sizes)
