"""The variants the training-step benchmark times, each built around one shared frozen ``nn.Linear``.

Budget rule (one adapted (out, in) layer, LoRA rank ``rank`` sets the budget b = rank·(in + out)):
- LoRA, RoseLoRA: r = rank (exactly b trainable parameters);
- MoRA: r = rank, so r̂ = ⌊√((in + out)·r)⌋ (even for rotation) and r̂² ≈ b;
- RoSA at density d: nnz = ⌊d·out·in⌋ and r = round((b − nnz) / (in + out)), clipped at 0; when
  nnz alone exceeds b the variant is pure sparse (r = 0) and its ``budget`` column shows by how much;
- NOLA: its count k + l is decoupled from its cost, which grows as k·r·(in + out) (basis numbers
  to store or to regenerate), so a NOLA with b coefficients would need b·r·(in + out)/2 basis
  numbers per factor (8.6 GB at 1024², r = 32). It runs at its own configuration (``nola_r``,
  ``nola_basis``) and its ``budget`` column shows the (tiny) fraction of b it uses.

Baselines: ``frozen`` (the plain frozen ``nn.Linear``: forward and the input gradient, no
optimizer), ``peft_lora`` (PEFT's own LoRA on the same layer through ``get_peft_model``), and
``DenseMaskedRosa`` (RoSA's update with the sparse part stored as a dense (out, in) parameter times a
fixed 0/1 mask: the obvious implementation RoSA's sparse path must beat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import adapters
from adapters.base import AdapterLinear

__all__ = ["Spec", "Variant", "DenseMaskedRosa", "matched_specs", "build", "density_label"]


@dataclass(frozen=True)
class Spec:
    """What to build: ``kind`` is 'frozen', 'peft_lora', 'dense_rosa' or a registry key."""

    key: str                      # stable id used for ratios, e.g. "lora", "rosa@1%", "nola_cache"
    label: str                    # what the table prints
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    n_params: int = 0             # trainable parameters by the method's own formula


@dataclass
class Variant:
    """A built variant: the module to call, its optimizer groups and the adapters whose hooks run."""

    spec: Spec
    module: nn.Module
    groups: list[dict[str, Any]]
    hooked: list[AdapterLinear]


def density_label(d: float) -> str:
    """0.005 -> '0.5%', 0.01 -> '1%'."""
    return f"{d * 100:g}%"


def _nnz(density: float, in_f: int, out_f: int) -> int:
    return math.floor(density * out_f * in_f)


def matched_specs(in_f: int, out_f: int, *, rank: int, densities: tuple[float, ...],
                  nola_r: int, nola_basis: int, methods: dict | None = None) -> tuple[list[Spec], list[str]]:
    """The specs of every variant at the budget b = rank·(in + out), and notes on skipped methods.

    Methods not (yet) in ``adapters.METHODS`` are skipped with a note rather than failing.
    """
    methods = adapters.METHODS if methods is None else methods
    budget = rank * (in_f + out_f)
    specs = [Spec("frozen", "frozen nn.Linear", "frozen"),
             Spec("peft_lora", f"PEFT LoRA r={rank}", "peft_lora", {"r": rank}, budget)]
    notes: list[str] = []

    def add(key: str, label: str, method: str, **cfg: Any) -> None:
        if method not in methods:
            return
        conf = methods[method].config_cls(**cfg)
        specs.append(Spec(key, label, method, cfg, conf.n_params(in_f, out_f)))

    add("lora", f"LoRA r={rank}", "lora", r=rank)
    add("mora", f"MoRA r={rank}", "mora", r=rank)
    if "mora" in methods:
        default_op = methods["mora"].config_cls(r=rank).operator
        if default_op != "sharing":
            add("mora_sharing", f"MoRA r={rank} sharing", "mora", r=rank, operator="sharing")
    add("roselora", f"RoseLoRA r={rank}", "roselora", r=rank)
    for mode in ("cache", "regenerate"):
        add(f"nola_{mode}", f"NOLA {mode} r={nola_r} k=l={nola_basis}", "nola",
            r=nola_r, num_basis_a=nola_basis, num_basis_b=nola_basis, mode=mode)
    if "rosa" in methods:
        for d in densities:
            nnz = _nnz(d, in_f, out_f)
            r = max(0, round((budget - nnz) / (in_f + out_f)))
            lab = density_label(d)
            # warmup_steps=0, mask_grad_steps=1: the mask is built after the first warm-up step, so
            # every timed step is a joint (LoRA + sparse) step, RoSA's steady state.
            add(f"rosa@{lab}", f"RoSA d={lab} r={r}", "rosa", r=r, density=d, warmup_steps=0, mask_grad_steps=1)
            specs.append(Spec(f"rosa_dense@{lab}", f"  dense-masked d={lab} r={r}", "dense_rosa",
                              {"r": r, "density": d}, r * (in_f + out_f) + nnz))
    covered = {sp.kind for sp in specs}
    for m in methods:  # any other registered method, at its own budget rule's config
        if m not in covered:
            from adapters.training.budget import match_budget

            try:
                cfg = match_budget(budget, out_f, in_f, [m])[m]
            except ValueError as e:
                notes.append(f"{m}: {e}; skipped")
                continue
            add(m, f"{methods[m].label} " + " ".join(f"{k}={v}" for k, v in cfg.items()), m, **cfg)
    for m in ("mora", "roselora", "nola", "rosa"):
        if m not in methods:
            notes.append(f"{m}: not registered in adapters.METHODS yet, skipped")
    return specs, notes


class DenseMaskedRosa(nn.Module):
    """RoSA's forward with a dense sparse part: h = x (W0 + M ⊙ S)ᵀ + b + s·(x Aᵀ) Bᵀ.

    ``S`` (out, in) is a dense trainable parameter, ``M`` a fixed 0/1 mask with exactly
    ⌊density·out·in⌋ ones (uniformly random: the entries chosen do not change a dense cost). The
    gradient of S is the full dense weight gradient times M, and Adam keeps dense state for S.
    """

    def __init__(self, base: nn.Linear, r: int, density: float, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base = base
        out_f, in_f = base.weight.shape
        w = base.weight
        nnz = _nnz(density, in_f, out_f)
        flat = torch.randperm(out_f * in_f, generator=generator)[:nnz]
        mask = torch.zeros(out_f * in_f, dtype=w.dtype)
        mask[flat] = 1.0
        self.register_buffer("mask", mask.view(out_f, in_f).to(w.device))
        self.S = nn.Parameter(torch.zeros(out_f, in_f, dtype=w.dtype, device=w.device))
        self.r = r
        self.scale = (float(r) if alpha is None else alpha) / r if r else 0.0
        if r:
            self.lora_A = nn.Parameter(torch.empty(r, in_f, dtype=w.dtype, device=w.device))
            self.lora_B = nn.Parameter(torch.zeros(out_f, r, dtype=w.dtype, device=w.device))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.base.weight + self.mask * self.S, self.base.bias)
        if self.r:
            y = y + self.scale * ((x @ self.lora_A.t()) @ self.lora_B.t())
        return y


class _One(nn.Module):
    """A model holding one Linear, for ``peft.get_peft_model``."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)


def _trainable(m: nn.Module, lr: float) -> list[dict[str, Any]]:
    ps = [p for p in m.parameters() if p.requires_grad]
    return [{"params": ps, "lr": lr}] if ps else []


def build(spec: Spec, base: nn.Linear, lr: float = 1e-4) -> Variant:
    """Build ``spec`` around ``base`` (shared, frozen, never modified)."""
    for p in base.parameters():
        p.requires_grad_(False)
    if spec.kind == "frozen":
        return Variant(spec, base, [], [])
    if spec.kind == "peft_lora":
        import peft  # a test dependency; the caller reports it when missing

        cfg = peft.LoraConfig(r=spec.config["r"], lora_alpha=spec.config["r"], lora_dropout=0.0,
                              target_modules=["lin"])
        model = peft.get_peft_model(_One(base), cfg)
        return Variant(spec, model, _trainable(model, lr), [])
    if spec.kind == "dense_rosa":
        g = torch.Generator().manual_seed(0)
        m = DenseMaskedRosa(base, spec.config["r"], spec.config["density"], generator=g)
        return Variant(spec, m, _trainable(m, lr), [])
    m = adapters.wrap(base, spec.kind, **spec.config)
    return Variant(spec, m, m.param_groups(lr), [m])
