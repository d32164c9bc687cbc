"""The method registry: ``METHODS[key]`` is a ``MethodSpec``, everything the project knows of a method.

A method module registers itself with ``@register("key", ConfigClass, label=..., budget=...)`` on its
``AdapterLinear`` subclass; ``wrap(linear, "key", **config)`` builds one. Nothing outside the
method's own file keys on its name: training, budgets, the app's pages, the compression tables and
the claims benchmark all read the spec.

``METHODS`` loads lazily: the first lookup imports every module of the ``adapters`` package (the
method modules register themselves), so ``import adapters.delta`` stays light and a new method
joins by adding one file. A test (or a plug-in) can ``register`` a method from anywhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["MethodSpec", "METHODS", "register", "unregister", "make_config", "wrap", "BudgetRule",
           "config_fields", "knob_config"]

Shape = tuple[int, int]  # (out_features, in_features)
#: count(config kwargs, shapes) -> exact trainable parameters over the layers of ``shapes``
Count = Callable[[dict[str, Any], Sequence[Shape]], int]
#: rule(budget, shapes, count, options) -> config kwargs whose count is nearest the budget
BudgetRule = Callable[[int, Sequence[Shape], Count, Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        key: the registry key (also ``AdapterLinear.method`` and the ``method`` of its deltas).
        config_cls: frozen config dataclass; ``config.n_params(in_features, out_features)`` is the
            exact trainable-parameter count (optional ``nonzero_params``, ``max_rank`` and
            ``extra_columns`` methods with the same arguments feed the compression tables).
        linear_cls: the ``AdapterLinear`` subclass.
        label, color: display name and chart colour.
        budget: the rule choosing config kwargs for a parameter budget (None: no budget matching).
        budget_knob: the integer knob a per-layer budget match may vary by ±1 (e.g. ``"r"``).
        budget_extra: ``budget_extra(shapes)``, parameters the method adds on top of a matched budget
            (DoRA's magnitude vectors, Σ out: it is compared at LoRA's rank, as in its paper); they
            are counted in ``n_params`` and reported, not matched.
        schedule: ``schedule(config, steps) -> config kwargs`` scaling step-counted schedules to a run.
        sparse: ΔW is sparse by construction (its Proposition-1 and sparsity views apply).
        lr_scale: learning-rate centre relative to LoRA's, from the official training scripts.
        order: position in menus and tables (then the key).
    """

    key: str
    config_cls: type
    linear_cls: type
    label: str = ""
    color: str = "#7F7F7F"
    budget: BudgetRule | None = None
    budget_knob: str | None = None
    budget_extra: Callable[[Sequence[Shape]], int] | None = None
    schedule: Callable[[dict[str, Any], int], dict[str, Any]] | None = None
    sparse: bool = False
    lr_scale: float = 1.0
    order: int = 100

    def config(self, **kwargs: Any) -> Any:
        """The validated config from keyword arguments (unknown keys are a ``ValueError``)."""
        try:
            return self.config_cls(**kwargs)
        except TypeError as e:  # unexpected keyword
            raise ValueError(f"{self.key}: {e}") from None

    def n_params(self, config: dict[str, Any], out_features: int, in_features: int) -> int:
        """Trainable parameters on one (out, in) matrix: the config's own ``n_params``."""
        return int(self.config(**config).n_params(int(in_features), int(out_features)))

    def extra_params(self, shapes: Sequence[Shape]) -> int:
        """Parameters outside the budget match over layers of ``shapes`` (out, in); 0 for most methods."""
        return int(self.budget_extra(shapes)) if self.budget_extra is not None else 0

    def fit_schedule(self, config: dict[str, Any], steps: int) -> dict[str, Any]:
        """``config`` with the step-counted fields the caller did not set scaled to ``steps``."""
        wanted = self.schedule(dict(config), int(steps)) if self.schedule is not None else {}
        fields = config_fields(self.config_cls)
        return {**{k: v for k, v in wanted.items() if k in fields}, **config}


class _Methods(Mapping[str, MethodSpec]):
    """key -> MethodSpec, in ``order``; the first lookup imports the package's method modules."""

    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self._loaded = self._loading = False
        self._lock = threading.RLock()  # app sessions run in threads: the first look-up loads once

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:  # loading: a method module looked a method up while importing
                return
            self._loading = True
            try:
                import adapters

                for info in pkgutil.iter_modules(adapters.__path__):
                    if not info.ispkg:
                        importlib.import_module(f"adapters.{info.name}")
                self._loaded = True
            finally:
                self._loading = False

    def _sorted(self) -> list[str]:
        self._load()
        return sorted(self._specs, key=lambda k: (self._specs[k].order, k))

    def __getitem__(self, key: str) -> MethodSpec:
        self._load()
        return self._specs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sorted())

    def __len__(self) -> int:
        self._load()
        return len(self._specs)

    def __repr__(self) -> str:
        return f"METHODS({', '.join(self._sorted())})"


METHODS = _Methods()


def register(key: str, config_cls: type, **spec: Any) -> Callable[[type], type]:
    """Class decorator adding an ``AdapterLinear`` subclass to ``METHODS`` under ``key``; ``spec``
    holds the other ``MethodSpec`` fields (label defaults to the key)."""

    def deco(linear_cls: type) -> type:
        old = METHODS._specs.get(key)
        if old is not None and old.linear_cls is not linear_cls:
            raise ValueError(f"method {key!r} is registered twice")
        METHODS._specs[key] = MethodSpec(key, config_cls, linear_cls, **{"label": key, **spec})
        return linear_cls

    return deco


def unregister(key: str) -> None:
    """Remove ``key`` from ``METHODS`` (for methods registered by tests or plug-ins)."""
    METHODS._specs.pop(key, None)


def config_fields(config_cls: type) -> set[str]:
    """The field names of a config dataclass."""
    return {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()


def knob_config(method: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of shared knobs (r, density, num_basis_a, keep, operator…) that ``method``'s config has."""
    fields = config_fields(METHODS[method].config_cls)
    return {k: v for k, v in knobs.items() if k in fields}


def make_config(method: str, **config: Any) -> Any:
    """The validated config of ``method`` from keyword arguments (unknown keys are an error)."""
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method].config(**config)


def wrap(linear: nn.Linear, method: str, **config: Any) -> nn.Module:
    """Wrap one frozen ``nn.Linear`` in ``method``'s adapter built from ``config``."""
    cfg = make_config(method, **config)
    return METHODS[method].linear_cls(linear, cfg)
