"""The LoRA-paper and intruder-dimension findings, measured on a built-in task (CPU, about a minute).

    python -m bench.relations_findings [--task digits-shift] [--steps 300] [--out DIR] [--quick]

Trains on ``digits-shift`` (the pretrained digits MLP adapted to 90°-rotated images: the fix is a
permutation of fc1's inputs, a full-rank change, so the update is meaningful):

- LoRA at r = 8 and r = 64, seeds 0 and 1 (the project's training loop, α = r, the task's lr);
- ``full``: the dense ΔW of the same layers trained directly (W0 + ΔW, ΔW a parameter, Adam), at the
  same lr and at a 10× smaller one (full fine-tuning usually runs at a smaller lr).

and measures per layer (``analysis.relate``): the top-direction overlap φ of r = 8 vs r = 64 and
seed 0 vs seed 1 against the random baseline max(i, j)/d; the amplification factor ‖ΔW‖_F/‖Uᵀ W0 V‖_F;
intruder dimensions among the top-k left singular vectors of W0 + ΔW (k = 10, ε = 0.5). Prints
markdown tables (docs/relations.md). ``--out DIR`` also writes the checkpoints and the base weights
so the same numbers come from ``rankscope relate``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

K_INTRUDERS, EPS, K_PHI = 10, 0.5, 8


class _Full(nn.Module):
    """A frozen linear layer plus a trainable dense ΔW (out, in): the full fine-tuning baseline."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.delta = nn.Parameter(torch.zeros_like(base.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.base.weight + self.delta, self.base.bias)


def train_full(task_name: str, seed: int, steps: int, lr: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train the dense ΔW of every target layer of ``task_name``; returns ({layer: ΔW}, metrics)."""
    from adapters.training.tasks import make_task

    t = make_task(task_name, seed)
    model = copy.deepcopy(t.model)
    for p in model.parameters():
        p.requires_grad_(False)
    mods = {}
    for name in t.targets:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        mods[name] = _Full(getattr(owner, attr))
        setattr(owner, attr, mods[name])
    torch.manual_seed(seed)
    opt = torch.optim.Adam([m.delta for m in mods.values()], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        t.loss(model, t.batch(step)).backward()
        opt.step()
    return {n: m.delta.detach().clone() for n, m in mods.items()}, t.evaluate(model)


def train_lora(task_name: str, seed: int, steps: int, r: int):
    from adapters.training.loop import train

    res = train(task_name, "lora", steps=steps, seed=seed, device="cpu", config={"r": r, "alpha": r})
    return res


def _fmt(x: float, spec: str = ".3f") -> str:
    return format(x, spec)


def measure(task_name: str, steps: int, seeds: Sequence[int], out: Path | None) -> str:
    from adapters.delta import DeltaSet, LayerDelta
    from adapters.training.tasks import make_task
    from analysis.relate import base_svd, relate_base, relate_pair

    t0 = time.perf_counter()
    task = make_task(task_name, 0)
    W0 = {n: task.model.get_submodule(n).weight.detach().double() for n in task.targets}
    runs: dict[str, DeltaSet] = {}
    metrics: dict[str, dict[str, float]] = {}
    for seed in seeds:
        for r in (8, 64):
            res = train_lora(task_name, seed, steps, r)
            runs[f"lora r={r} s{seed}"] = res.deltas
            metrics[f"lora r={r} s{seed}"] = res.metrics
            if out is not None:
                res.save(out / f"lora_r{r}_s{seed}.safetensors")
        for lr_mult, tag in ((1.0, ""), (0.1, " lr/10")):
            lr = make_task(task_name, seed).default_lr * lr_mult
            deltas, met = train_full(task_name, seed, steps, lr)
            ds = DeltaSet([LayerDelta(n, tuple(d.shape), dense_part=d, method="full") for n, d in deltas.items()],
                          method="full")
            runs[f"full{tag} s{seed}"] = ds
            metrics[f"full{tag} s{seed}"] = met
            if out is not None:
                from adapters.formats.native import save_native
                save_native(out / f"full{tag.replace(' ', '_').replace('/', '')}_s{seed}.safetensors", ds)
    if out is not None:
        from adapters.formats.atomic import save_safetensors
        save_safetensors(out / "base.safetensors", {f"{n}.weight": w.float() for n, w in W0.items()})
    train_s = time.perf_counter() - t0

    lines = [f"task `{task_name}`, {steps} steps, seeds {list(seeds)}; metrics: "
             + "; ".join(f"{k}: " + ", ".join(f"{m}={v:.3f}" for m, v in met.items()) for k, met in metrics.items()), ""]
    # 1. top-direction overlap (LoRA paper Fig. 3/4)
    lines += ["| layer | d (out) | pair | φ(1,1) | φ(8,8) | mean φ(i,j), i,j≤8 | random max(i,j)/d, mean |",
              "|---|---|---|---|---|---|---|"]
    s0 = seeds[0]
    pairs = [(f"lora r=8 s{s0}", f"lora r=64 s{s0}", "r=8 vs r=64")]
    if len(seeds) > 1:
        pairs += [(f"lora r=8 s{s0}", f"lora r=8 s{seeds[1]}", "r=8 seed 0 vs 1"),
                  (f"lora r=64 s{s0}", f"lora r=64 s{seeds[1]}", "r=64 seed 0 vs 1"),
                  (f"full s{s0}", f"full s{seeds[1]}", "full seed 0 vs 1")]
    for name in task.targets:
        d = W0[name].shape[0]
        rnd = sum(max(i, j) / d for i in range(1, K_PHI + 1) for j in range(1, K_PHI + 1)) / K_PHI ** 2
        for a, b, label in pairs:
            rec, _ = relate_pair(runs[a][name], runs[b][name], K_PHI)
            phi = torch.tensor(rec["phi"])
            lines.append(f"| {name} | {d} | {label} | {_fmt(phi[0, 0])} | {_fmt(rec['subspace_similarity_left'])} | "
                         f"{_fmt(float(phi.mean()))} | {_fmt(rnd)} |")
    # 2. amplification and intruders
    lines += ["", f"| layer | run | ‖ΔW‖_F | ‖W0‖_F | amplification (r) | alignment L (random) | "
                  f"intruders k={K_INTRUDERS}, ε={EPS} | min max-cos | alpha W0 → W0+ΔW |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in task.targets:
        U0S0 = base_svd(W0[name])
        for run, ds in runs.items():
            rec, _, _ = relate_base(ds[name], W0[name], K_INTRUDERS, EPS, U0S0=U0S0, tuned="dense")
            ab = "-" if rec["alpha_base"] is None else _fmt(rec["alpha_base"], ".2f")
            at = "-" if rec["alpha_tuned"] is None else _fmt(rec["alpha_tuned"], ".2f")
            lines.append(f"| {name} | {run} | {rec['fro_norm']:.3g} | {rec['w0_fro_norm']:.3g} | "
                         f"{rec['amplification']:.2f} ({rec['amplification_r']}) | {rec['alignment_left']:.2f} "
                         f"({rec['alignment_random_left']:.2f}) | {rec['intruders']} | {min(rec['intruder_max_cos']):.2f} | "
                         f"{ab} → {at} |")
    lines += ["", f"training {train_s:.1f} s, measuring {time.perf_counter() - t0 - train_s:.1f} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relations_findings", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits-shift")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default=None, help="also write the checkpoints and base.safetensors here")
    p.add_argument("--quick", action="store_true", help="20 steps, one seed (a smoke test)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    steps = a.steps
    if a.quick:
        seeds, steps = seeds[:1], 20
    out = Path(a.out) if a.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    print(measure(a.task, steps, seeds, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
