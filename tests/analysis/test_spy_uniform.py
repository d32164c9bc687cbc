"""The support sample of ``analysis.deltas.spy_points`` is uniform over the nonzeros (issue 13).

The old sampler thinned as it streamed, so the first row bands were thinned again and again and the
bottom rows of a dense ΔW held ~19 % of the points. Here: a dense 4096×11008 LoRA ΔW (11 row bands)
and a block-diagonal dense ΔW spanning several bands.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.delta import LayerDelta, LowRank
from analysis.deltas import spy_points


def dense_lora(m: int = 4096, n: int = 11008, r: int = 16) -> LayerDelta:
    g = torch.Generator().manual_seed(1)
    B, A = torch.randn(m, r, generator=g), torch.randn(r, n, generator=g)
    return LayerDelta("model.layers.0.mlp.up_proj", (m, n), low_rank=[LowRank(B, A, 2.0)], method="lora")


@pytest.mark.slow  # three samples of a 45M-entry support: ~5 s on 2 cores
def test_dense_support_sample_is_uniform_over_rows_and_columns():
    d = dense_lora()
    df = spy_points(d, max_points=20_000, seed=0)
    m, n = d.shape
    assert len(df) == 20_000 and df.attrs["nnz"] == m * n and df.attrs["sampled"]
    rows, cols = df["row"].to_numpy(), df["col"].to_numpy()
    assert len(set(zip(rows.tolist(), cols.tolist()))) == len(df)  # without replacement
    bottom, top = np.mean(rows >= m - m // 10), np.mean(rows < m // 10)
    assert 0.07 <= bottom <= 0.13, bottom
    assert 0.07 <= top <= 0.13, top
    assert 0.07 <= np.mean(cols >= n - n // 10) <= 0.13
    # every tenth of the rows, not just the ends: a chi-square test on 10 equal bins
    counts = np.histogram(rows, bins=10, range=(0, m))[0]
    expected = len(df) / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9, (counts, chi2)  # p = 0.001 for 9 degrees of freedom
    # deterministic under the seed, different under another
    again = spy_points(d, max_points=20_000, seed=0)
    assert again.equals(df)
    assert not spy_points(d, max_points=20_000, seed=1).equals(df)


def test_block_diagonal_points_fall_in_blocks_in_proportion_to_nnz():
    m, n = 3000, 4000  # 12M entries: three row bands of the support
    W = torch.zeros(m, n)
    W[:1000, :1000] = 1.0  # 1M nonzeros, all in the first band
    W[1000:, 1000:] = -2.0  # 6M nonzeros
    d = LayerDelta("blockdiag", (m, n), dense_part=W, method="full")
    df = spy_points(d, max_points=20_000, seed=3)
    r, c = df["row"].to_numpy(), df["col"].to_numpy()
    in_a = (r < 1000) & (c < 1000)
    in_b = (r >= 1000) & (c >= 1000)
    assert (in_a | in_b).all()  # never off the support
    assert df.attrs["nnz"] == 7_000_000
    share = in_a.mean()
    assert abs(share - 1 / 7) < 0.015, share  # std of the share is 0.0025 here
    # within block B, uniform over its rows too (B spans the second and third bands)
    rb = r[in_b]
    assert abs(np.mean(rb >= 2000) - 0.5) < 0.02


def test_small_support_returned_whole_and_sorted():
    W = torch.zeros(50, 60)
    W[3, 7] = W[40, 1] = W[0, 59] = 1.0
    df = spy_points(LayerDelta("s", (50, 60), dense_part=W), max_points=10)
    assert list(zip(df["row"], df["col"])) == [(0, 59), (3, 7), (40, 1)] and not df.attrs["sampled"]
