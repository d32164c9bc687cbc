"""Tasks on scikit-learn's bundled 8×8 digits (1797 images, shipped inside the package: no
download): a pretrained 64 -> 128 -> 128 -> 10 classifier adapted to rotated images
(``digits-shift``) or edited on a few digits (``sparse-edit``)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .task_base import Task, _device, _freeze, _gen

__all__ = ["DigitsMLP", "DigitsShiftTask", "SparseEditTask", "digits_base"]


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

