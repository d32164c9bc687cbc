"""Parameter counts against the papers' numbers (NOLA's LLaMA-2 table, MoRA's r̂ examples, RoseLoRA's 3,296)."""

from __future__ import annotations

import pytest

from analysis.compression import (PRESETS, compression_table, method_params, model_totals, mora_max_rank,
                                  mora_square_rank, nola_compression_ratio, roselora_kept, roselora_nonzero)


def test_per_matrix_formulas() -> None:
    assert method_params("lora", 4096, 4096, r=8) == 65536
    assert method_params("rosa", 4096, 4096, r=8, density=0.003) == 65536 + 50331  # ⌊0.003·16.78M⌋
    assert method_params("nola", 4096, 11008, num_basis_a=512, num_basis_b=256) == 768
    assert method_params("mora", 4096, 4096, r=8) == 256 ** 2
    assert method_params("roselora", 4096, 4096, r=8) == 65536
    with pytest.raises(ValueError):
        method_params("vera", 4, 4)


def test_mora_square_rank_examples() -> None:
    assert [mora_square_rank(4096, 4096, r) for r in (8, 128, 256)] == [256, 1024, 1448]
    assert mora_square_rank(11008, 4096, 8) == 347  # paper: floor
    assert mora_square_rank(11008, 4096, 8, rounding="nearest") == 348  # official code
    assert mora_square_rank(11008, 4096, 8, rounding="nearest", even=True) == 348
    assert mora_max_rank(4096, 4096, 8, "sharing") == 256 and mora_max_rank(4096, 4096, 8, "rotation") == 4096


def test_roselora_nonzero_matches_worked_example() -> None:
    assert roselora_kept(4096, 0.05) == 206
    assert roselora_nonzero(4096, 4096, 8, 0.05) == 3296
    assert roselora_kept(10, 1.0) == 10
    # RankScope prunes exactly ⌊(1 − τ) n⌋ per row/column (adapters/roselora.py): one entry fewer than the
    # official kthvalue rule, so 8 · 2 · 205 of the factors' entries stay, not 3,296
    assert method_params("roselora", 4096, 4096, r=8, keep=0.05, nonzero=True) == 3280


def test_nola_ratios() -> None:
    ratio = nola_compression_ratio(4096, 4096, 16, 512)
    assert ratio.vs_lora == pytest.approx(16 * 8192 / 1024) and ratio.vs_rank_one == pytest.approx(8)


@pytest.mark.parametrize("preset,lora_r1,nola,basis", [("Llama-2-7B", 2_498_560, 57_344, 128),
                                                       ("Llama-2-13B", 3_911_680, 143_360, 256),
                                                       ("Llama-2-70B", 12_943_360, 573_440, 512)])
def test_llama_totals_reproduce_the_nola_table(preset: str, lora_r1: int, nola: int, basis: int) -> None:
    tot = model_totals(preset, r=1, num_basis_a=basis, num_basis_b=basis).set_index("method")
    assert tot.loc["lora", "n_params"] == lora_r1 and tot.loc["nola", "n_params"] == nola
    assert round(lora_r1 / 1e6, 2) == {"Llama-2-7B": 2.50, "Llama-2-13B": 3.91, "Llama-2-70B": 12.94}[preset]
    assert tot.loc["nola", "ratio_vs_lora"] == pytest.approx(lora_r1 / nola)


def test_preset_and_table_columns() -> None:
    shapes = PRESETS["Llama-2-7B"]
    assert len(shapes) == 7 and all(s.count == 32 for s in shapes)
    assert {(s.name, s.out_features, s.in_features) for s in shapes} >= {("q_proj", 4096, 4096), ("gate_proj", 11008, 4096),
                                                                         ("down_proj", 4096, 11008)}
    df = compression_table([("q", 4096, 4096)], r=8, keep=0.05)
    assert {"layer", "method", "n_params", "n_params_total", "r_hat", "max_rank", "ratio_vs_lora"} <= set(df.columns)
    rose = df.set_index("method").loc["roselora"]
    assert rose.nonzero_params == 3280 and rose.n_params == 65536
    assert model_totals("Llama-2-7B", r=16).set_index("method").loc["lora", "n_params"] == 16 * 2_498_560


def test_mora_counts_what_the_adapter_trains() -> None:
    """The issue's example: r̂ = 45 by the formula, but rotation needs an even r̂ = 44 (1,936 parameters)."""
    assert method_params("mora", 128, 128, r=8) == 44 ** 2
    assert method_params("mora", 128, 128, r=8, operator="sharing") == 45 ** 2


SHAPES = [(7, 11), (11, 7), (64, 64), (128, 128), (96, 33), (33, 96), (300, 17), (1, 50), (50, 1)]
RANKS = [1, 2, 3, 8, 16]


def test_counts_agree_with_the_trained_adapters_on_a_grid() -> None:
    """Every method × shape × rank: the compression table's count equals the built adapter's trainable
    parameters (and RoseLoRA's nonzero count equals the entries left after pruning at τ)."""
    import torch
    from torch import nn

    import adapters
    from adapters.registry import knob_config

    checked = 0
    for d, k in SHAPES:
        for r in RANKS:
            table = compression_table([("x", d, k)], r=r, density=0.05, num_basis_a=5, num_basis_b=3, keep=0.3)
            for row in table.itertuples():
                knobs = dict(r=r, density=0.05, num_basis_a=5, num_basis_b=3, keep=0.3, operator="rotation")
                mod = adapters.wrap(nn.Linear(k, d), row.method, **knob_config(row.method, knobs))
                assert row.n_params == mod.n_params, (row.method, d, k, r)
                if hasattr(mod, "prune"):  # RoseLoRA: prune with random importance, count the survivors
                    if row.method == "roselora":
                        with torch.no_grad():
                            mod.lora_B.normal_()
                            mod.importance_A.uniform_(), mod.importance_B.uniform_()
                        mod.prune(0.3)
                        nz = int((mod.lora_A != 0).sum() + (mod.lora_B != 0).sum())
                        assert row.nonzero_params == nz, (d, k, r)
                checked += 1
    assert checked >= len(SHAPES) * len(RANKS) * 5
