"""Benchmark: ``rankscope relate`` at Llama-2-7B shapes (hidden 4096, MLP 11008, 32 blocks × 7 projections).

Synthesised in memory (nothing is written but the base-SVD cache, in a temporary folder): per shape
two r = 16 LoRA updates (scale 2, B's column norms 4 … 0.5, so some directions of ΔW outgrow W0's), and a base W0 = G/√n + Σ_{i<32} c_i u_i v_iᵀ (a Marchenko–Pastur bulk with
32 outlier directions, c_i from 6 down to 1.5 — the shape of real weight spectra). Measured in ONE run:

    (a) pair relate of two r=16 adapters, factored path (``relate_pair``: QR of the factors), against
        the dense path (a float32 ``torch.linalg.svd`` of each dense ΔW; timed once on 4096×4096,
        two per layer): ratio per layer;
    (b) intruders (k = 10, ε = 0.5) of W0 + ΔW: the low-rank-update path (``topsvd.top_svd``) against a
        dense float32 SVD of W0 + ΔW on 4096×4096: ratio, and agreement (same intruder count, largest
        difference of the max-|cos| values, the update path's stated residual);
    (c) whole-model times: pair relate of all 224 layers (run in full); base relate (update path,
        warm SVD cache, no ESD) per shape × 32 blocks (extrapolated from one layer of each shape);
        the one-off dense SVD of W0 per base layer (measured on 4096×4096, flop-scaled to 11008×4096).

    python -m bench.relations_scale            # 7B shapes (a few minutes on 2 busy cores)
    python -m bench.relations_scale --small    # tiny shapes, seconds (the smoke test); --quick is the same
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch

from bench import summary

BENCH = "relations_scale"
ATTN, MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
K, EPS, R = 10, 0.5, 16


def _lora(name: str, m: int, n: int, seed: int):
    from adapters.delta import LayerDelta, LowRank

    g = torch.Generator().manual_seed(seed)
    B = torch.randn(m, R, generator=g) / m ** 0.5 * torch.linspace(4.0, 0.5, R)  # column norms 4 .. 0.5
    A = torch.randn(R, n, generator=g) / n ** 0.5
    return LayerDelta(name, (m, n), low_rank=(LowRank(B, A, 2.0),), method="lora")


def synth_base(m: int, n: int, seed: int, spikes: int = 32) -> torch.Tensor:
    """W0 (m, n) float32: a Gaussian bulk (σ₁ ≈ 1 + √(m/n)... scaled by 1/√n) plus ``spikes`` outliers."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=g) / n ** 0.5
    u = torch.randn(m, spikes, generator=g) / m ** 0.5
    v = torch.randn(spikes, n, generator=g) / n ** 0.5
    c = torch.linspace(6.0, 1.5, spikes)
    return W + (u * c) @ v


def _t(fn, reps: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def layer_shapes(hidden: int, mlp: int) -> dict[str, tuple[int, int]]:
    return {**{p: (hidden, hidden) for p in ATTN}, "gate_proj": (mlp, hidden), "up_proj": (mlp, hidden),
            "down_proj": (hidden, mlp)}


class _Live(dict):
    """A dict that prints each figure as it is measured (a slow machine still shows progress)."""

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        print(f"  {key:22s} {value:.4g}" if isinstance(value, float) else f"  {key:22s} {value}", flush=True)


def run(hidden: int, mlp: int, blocks: int, live: bool = False) -> dict[str, float]:
    from analysis.relate import base_svd, relate_pair
    from analysis.relations import intruders
    from analysis.topsvd import top_svd

    res: dict[str, float] = _Live() if live else {}
    shapes = layer_shapes(hidden, mlp)
    # (a) pair relate, factored, per shape; and the whole model (all blocks × 7) for real
    per_shape = {}
    for p, (m, n) in shapes.items():
        a, b = _lora(p, m, n, 1), _lora(p, m, n, 2)
        per_shape[p], _ = _t(lambda: relate_pair(a, b, R), reps=3)
    res["pair_factored_q_s"] = per_shape["q_proj"]
    t0 = time.perf_counter()
    for i in range(blocks):
        for p, (m, n) in shapes.items():
            relate_pair(_lora(f"model.layers.{i}.{p}", m, n, 2 * i), _lora(f"model.layers.{i}.{p}", m, n, 2 * i + 1), R)
    res["pair_model_s"] = time.perf_counter() - t0
    res["n_layers"] = blocks * len(shapes)
    a = _lora("q", hidden, hidden, 1)
    dW = a.dense(torch.float32)
    res["dense_svd_q_s"], _ = _t(lambda: torch.linalg.svd(dW, full_matrices=False))
    res["pair_ratio"] = 2 * res["dense_svd_q_s"] / res["pair_factored_q_s"]
    # (b) intruders on q_proj's shape: update path vs dense SVD of W0 + ΔW
    W0 = synth_base(hidden, hidden, 7)
    res["base_svd_q_s"], (U0, S0) = _t(lambda: base_svd(W0))
    B, A = a.low_rank[0].B * a.low_rank[0].scale, a.low_rank[0].A
    res["update_q_s"], tt = _t(lambda: top_svd(W0, B, A, K))
    res["dense_tuned_q_s"], dense = _t(lambda: torch.linalg.svd(W0 + B @ A, full_matrices=False))
    iu, idn = intruders(U0, tt.U, EPS), intruders(U0, dense[0][:, :K].double(), EPS)
    res["intruders_update"], res["intruders_dense"] = iu["count"], idn["count"]
    res["max_cos_diff"] = max(abs(x - y) for x, y in zip(iu["max_cos"], idn["max_cos"]))
    res["sigma_rel_diff"] = float(((tt.S - dense[1][:K].double()).abs() / dense[1][0].double()).max())
    res["update_residual"] = tt.residual
    res["update_ratio"] = res["dense_tuned_q_s"] / res["update_q_s"]
    # (c) base relate per layer of each shape (update path, warm cache = U0 given, no ESD)
    from analysis.relate import relate_base

    total = 0.0
    for p, (m, n) in shapes.items():
        if (m, n) == (hidden, hidden):
            Wp, U0p = W0, (U0, S0)
        else:  # a 11008-sided base: its dense SVD is not timed here (see base_svd_model_s)
            Wp = synth_base(m, n, 8)
            G = torch.randn(m, min(m, n))  # unit columns stand in for U0 (timing only: same cost as the real basis)
            U0p = (G / G.norm(dim=0), torch.ones(min(m, n)))
        d = _lora(p, m, n, 3)
        dt, _ = _t(lambda: relate_base(d, Wp, K, EPS, U0S0=U0p, with_esd=False))
        res[f"base_{p}_s"] = dt
        total += dt * blocks
        if (m, n) != (hidden, hidden):
            del Wp, U0p
    res["base_model_s"] = total
    flops = sum(m * n * min(m, n) for m, n in shapes.values()) / (hidden ** 3)
    res["base_svd_model_s"] = res["base_svd_q_s"] * flops * blocks  # flop-scaled from the measured 4096²
    return res


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.relations_scale", description=__doc__.splitlines()[0])
    p.add_argument("--small", "--quick", dest="small", action="store_true", help="tiny shapes (the smoke test)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    hidden, mlp, blocks = (256, 688, 2) if a.small else (4096, 11008, 32)
    print(f"relate at shapes hidden={hidden}, mlp={mlp}, {blocks} blocks, r={R}, k={K}, eps={EPS}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    r = run(hidden, mlp, blocks, live=True)
    tag = "small" if a.small else "7B"
    summary.record(BENCH, f"pair relate per layer, factored vs dense SVD ({tag})", round(r["pair_ratio"], 1), "x",
                   ">= 100", r["pair_ratio"] >= 100,
                   f"{r['pair_factored_q_s'] * 1e3:.2f} ms vs 2 x {r['dense_svd_q_s']:.2f} s")
    summary.record(BENCH, f"intruders: update path vs dense SVD of W0+dW ({tag})", round(r["update_ratio"], 1), "x",
                   ">= 5", r["update_ratio"] >= 5,
                   f"{r['update_q_s']:.2f} s vs {r['dense_tuned_q_s']:.2f} s; counts {r['intruders_update']} vs "
                   f"{r['intruders_dense']}, max |cos| diff {r['max_cos_diff']:.1e}, residual {r['update_residual']:.1e}")
    summary.record(BENCH, f"intruder counts agree ({tag})", "yes" if r["intruders_update"] == r["intruders_dense"] else "no",
                   "", "equal", r["intruders_update"] == r["intruders_dense"])
    summary.record(BENCH, f"whole-model pair relate, {r['n_layers']} layers ({tag})", round(r["pair_model_s"], 2), "s",
                   "", None, "run in full")
    summary.record(BENCH, f"whole-model base relate, warm cache, no ESD ({tag})", round(r["base_model_s"], 1), "s", "",
                   None, f"one layer per shape x {blocks}; cold cache adds ~{r['base_svd_model_s']:.0f} s of W0 SVDs (flop-scaled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
