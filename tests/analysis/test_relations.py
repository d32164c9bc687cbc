"""Relational measures against brute-force float64 SVDs and formulas (analysis.relations/relate/topsvd/esd)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adapters.delta import LayerDelta, LowRank
from analysis.esd import fit_power_law
from analysis.relate import base_svd, relate_base, relate_pair
from analysis.relations import alignment, amplification, intruders, phi_matrix, principal_angles_deg, subspace_similarity
from analysis.topsvd import delta_svd, low_rank_svd, top_svd

D64 = torch.float64


def _orth(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=g, dtype=D64)).Q


def _lr(name: str, B: torch.Tensor, A: torch.Tensor, scale: float = 1.0) -> LayerDelta:
    return LayerDelta(name, (B.shape[0], A.shape[1]), low_rank=(LowRank(B, A, scale),))


def _brute_phi(Ua, Ub):
    ka, kb = Ua.shape[1], Ub.shape[1]
    out = np.zeros((ka, kb))
    for i in range(1, ka + 1):
        for j in range(1, kb + 1):
            out[i - 1, j - 1] = float(torch.linalg.norm(Ua[:, :i].T @ Ub[:, :j]) ** 2) / min(i, j)
    return out


def test_phi_known_answers() -> None:
    Q = _orth(40, 8, 0)
    assert torch.allclose(phi_matrix(Q[:, :4], Q[:, :4]), torch.ones(4, 4, dtype=D64))
    assert torch.allclose(phi_matrix(Q[:, :4], Q[:, 4:]), torch.zeros(4, 4, dtype=D64), atol=1e-12)
    half = torch.cat([Q[:, :2], Q[:, 4:6]], 1)  # shares 2 of 4 directions
    assert subspace_similarity(Q[:, :4], half, 4) == pytest.approx(0.5)
    assert torch.allclose(principal_angles_deg(Q[:, :4], Q[:, :4]), torch.zeros(4, dtype=D64), atol=1e-5)
    assert torch.allclose(principal_angles_deg(Q[:, :4], Q[:, 4:]), torch.full((4,), 90.0, dtype=D64))
    ang = principal_angles_deg(Q[:, :4], half)
    assert torch.allclose(ang, torch.tensor([0.0, 0.0, 90.0, 90.0], dtype=D64), atol=1e-5)


def test_phi_matches_brute_force_on_random_bases() -> None:
    Ua, Ub = _orth(30, 5, 1), _orth(30, 7, 2)
    assert np.allclose(phi_matrix(Ua, Ub).numpy(), _brute_phi(Ua, Ub), atol=1e-12)
    # principal angles: arccos of the svd of Uaᵀ Ub, brute force by the projector's eigenvalues
    P = Ua.T @ Ub @ Ub.T @ Ua
    cos = torch.linalg.eigvalsh(P).clamp(0, 1).sqrt().sort(descending=True).values
    assert torch.allclose(principal_angles_deg(Ua, Ub), torch.rad2deg(torch.arccos(cos)), atol=1e-6)


def test_low_rank_svd_equals_dense_svd() -> None:
    g = torch.Generator().manual_seed(3)
    B, A = torch.randn(50, 4, generator=g, dtype=D64), torch.randn(4, 70, generator=g, dtype=D64)
    U, S, V = low_rank_svd(B, A)
    assert torch.allclose(U @ torch.diag(S) @ V.T, B @ A, atol=1e-10)
    assert torch.allclose(S, torch.linalg.svdvals(B @ A)[:4], atol=1e-10)
    t = delta_svd(_lr("x", B, A, 0.5), k=3)
    assert t.method == "low_rank_qr" and t.rank == 4 and t.U.shape == (50, 3)
    Ud, Sd, Vhd = torch.linalg.svd(0.5 * B @ A)
    assert torch.allclose((t.U.T @ Ud[:, :3]).abs().diagonal(), torch.ones(3, dtype=D64), atol=1e-8)


def test_top_svd_of_a_low_rank_update_matches_dense() -> None:
    g = torch.Generator().manual_seed(4)
    W0 = torch.randn(120, 90, generator=g, dtype=D64) @ torch.diag(torch.logspace(0, -2, 90, dtype=D64))
    B, A = torch.randn(120, 3, generator=g, dtype=D64), torch.randn(3, 90, generator=g, dtype=D64)
    t = top_svd(W0, B, A, 6, tol=1e-10)
    U, S, Vh = torch.linalg.svd(W0 + B @ A)
    assert t.residual <= 1e-9
    assert torch.allclose(t.S, S[:6], rtol=1e-8)
    assert torch.allclose((t.U.T @ U[:, :6]).abs().diagonal(), torch.ones(6, dtype=D64), atol=1e-6)


def test_amplification_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(5)
    W0 = torch.randn(60, 40, generator=g, dtype=D64)
    B, A = torch.randn(60, 2, generator=g, dtype=D64), torch.randn(2, 40, generator=g, dtype=D64)
    dW = B @ A
    U, S, Vh = torch.linalg.svd(dW)
    brute = float(torch.linalg.norm(dW)) / float(torch.linalg.norm(U[:, :2].T @ W0 @ Vh[:2].T))
    rec, warns, _ = relate_base(_lr("l", B, A), W0, k=4, with_esd=False)
    assert rec["amplification"] == pytest.approx(brute, rel=1e-9) and rec["amplification_r"] == 2
    assert amplification(W0, U[:, :2], Vh[:2].T, float(torch.linalg.norm(dW)))["amplification"] == pytest.approx(brute)
    # alignment against brute force φ(k, r)
    U0 = torch.linalg.svd(W0)[0]
    assert rec["alignment_left"] == pytest.approx(float(torch.linalg.norm(U0[:, :4].T @ U[:, :2]) ** 2) / 2, abs=1e-9)
    assert alignment(U0[:, :3], U0[:, :4])["alignment"] == pytest.approx(1.0)


def _w0(m: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, V = _orth(m, min(m, n), seed), _orth(n, min(m, n), seed + 100)
    s = torch.linspace(4.0, 0.5, min(m, n), dtype=D64) + 0.01 * torch.rand(min(m, n), generator=g, dtype=D64)
    return U @ torch.diag(s.sort(descending=True).values) @ V.T


@pytest.mark.parametrize("tuned", ["update", "dense"])
def test_intruders_known_answers(tuned: str) -> None:
    m, n = 96, 80
    W0 = _w0(m, n, 6)
    U0, S0, Vh0 = torch.linalg.svd(W0, full_matrices=False)
    s1 = float(S0[0])
    u, v = _orth(m, 1, 7), _orth(n, 1, 8)
    rec, _, _ = relate_base(_lr("rand", 3 * s1 * u, v.T), W0, k=5, eps=0.5, tuned=tuned, with_esd=False)
    # brute force: dense SVD of W0 + ΔW, then max |cos| against every column of U0
    Ut = torch.linalg.svd(W0 + 3 * s1 * u @ v.T)[0][:, :5]
    brute = (U0.T @ Ut).abs().max(0).values
    assert rec["intruders"] == int((brute < 0.5).sum()) >= 1
    assert 0 in rec["intruder_indices"]
    assert np.allclose(rec["intruder_max_cos"], brute.numpy(), atol=1e-6)
    top, _, _ = relate_base(_lr("top", 3 * s1 * U0[:, :1], Vh0[:1]), W0, k=5, eps=0.5, tuned=tuned, with_esd=False)
    assert top["intruders"] == 0 and top["intruder_max_cos"][0] == pytest.approx(1.0)


def test_intruders_function_and_eps() -> None:
    Q = _orth(20, 20, 9)
    r = intruders(Q, Q[:, :3], 0.5)
    assert r["count"] == 0 and r["max_cos"] == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        intruders(Q, Q[:, :3], 0.0)


def test_relate_pair_known_answers_and_rank_warning() -> None:
    Q, P = _orth(64, 8, 10), _orth(48, 8, 11)
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=D64)
    a = _lr("l", Q[:, :4] * s, P[:, :4].T)
    rec, warns = relate_pair(a, a, k=4)
    assert rec["subspace_similarity_left"] == pytest.approx(1.0) and rec["subspace_similarity_right"] == pytest.approx(1.0)
    assert max(rec["principal_angles_deg"]) < 1e-4 and not warns
    b = _lr("l", Q[:, 4:] * s, P[:, 4:].T)
    rec, _ = relate_pair(a, b, k=4)
    assert rec["subspace_similarity_left"] == pytest.approx(0.0, abs=1e-12)
    assert rec["principal_angles_deg"] == pytest.approx([90.0] * 4)
    c = _lr("l", torch.cat([Q[:, :2], Q[:, 4:6]], 1) * s, torch.cat([P[:, :2], P[:, 4:6]], 1).T)
    rec, _ = relate_pair(a, c, k=4)
    assert rec["subspace_similarity_left"] == pytest.approx(0.5) and rec["subspace_similarity_right"] == pytest.approx(0.5)
    rec, warns = relate_pair(a, c, k=6)
    assert rec["k"] == 4 and len(warns) == 2 and "exceeds the rank" in warns[0]
    with pytest.raises(ValueError):
        relate_pair(a, _lr("l", torch.ones(64, 1), torch.ones(1, 47)), k=2)


def test_dense_delta_pair_matches_low_rank() -> None:
    Q, P = _orth(30, 3, 12), _orth(20, 3, 13)
    a = _lr("l", Q * torch.tensor([3.0, 2.0, 1.0], dtype=D64), P.T)
    d = LayerDelta("l", (30, 20), dense_part=a.dense(D64))
    rec, _ = relate_pair(a, d, k=3)
    assert rec["subspace_similarity_left"] == pytest.approx(1.0, abs=1e-9) and rec["rank_b"] == 3


def test_power_law_alpha_recovers_a_pareto_exponent() -> None:
    rng = np.random.default_rng(0)
    for alpha in (2.0, 3.5):
        x = (1.0 - rng.random(4000)) ** (-1.0 / (alpha - 1.0))  # Pareto, p(x) ∝ x^-alpha, x ≥ 1
        fit = fit_power_law(x)
        assert abs(fit["alpha"] - alpha) < 4 * fit["sigma"] + 0.05
        assert fit["xmin"] < 2.0
    body = rng.uniform(0.1, 1.0, 3000)  # a non-power-law bulk below a Pareto tail starting at 1
    tail = (1.0 - rng.random(1000)) ** (-1.0 / 1.5)
    fit = fit_power_law(np.concatenate([body, tail]))
    assert abs(fit["alpha"] - 2.5) < 0.25 and fit["xmin"] >= 0.8
    assert fit_power_law(np.arange(1, 9, dtype=float)) is None  # an 8-value spectrum: no fit


def test_esd_alpha_in_relate_base() -> None:
    W0 = _w0(80, 64, 14)
    g = torch.Generator().manual_seed(15)
    B, A = torch.randn(80, 2, generator=g, dtype=D64), torch.randn(2, 64, generator=g, dtype=D64)
    U0S0 = base_svd(W0)
    rec, warns, arrays = relate_base(_lr("l", B, A), W0, k=4, U0S0=U0S0)
    eig = torch.linalg.svdvals(W0 + B @ A) ** 2
    assert rec["alpha_tuned"] == pytest.approx(fit_power_law(eig)["alpha"])
    assert rec["alpha_base"] == pytest.approx(fit_power_law(U0S0[1] ** 2)["alpha"])
    assert math.isfinite(rec["alpha_base"]) and arrays["eig_base"].shape == (64,)


def test_dense_delta_intruders_by_subspace_path_match_dense() -> None:
    W0 = _w0(70, 60, 16)
    u, v = _orth(70, 1, 17), _orth(60, 1, 18)
    g = torch.Generator().manual_seed(19)
    D = 12.0 * u @ v.T + 0.01 * torch.randn(70, 60, generator=g, dtype=D64)  # a dense (full-rank) update
    d = LayerDelta("d", (70, 60), dense_part=D)
    fast, _, _ = relate_base(d, W0, k=4, with_esd=False)
    slow, _, _ = relate_base(d, W0, k=4, tuned="dense", with_esd=False)
    assert fast["tuned_path"] == "subspace" and slow["tuned_path"] == "dense_svd"
    assert fast["intruders"] == slow["intruders"] >= 1
    assert np.allclose(fast["intruder_max_cos"], slow["intruder_max_cos"], atol=1e-6)
    with pytest.raises(ValueError):
        relate_base(d, W0, k=4, tuned="nope")


def test_nonfinite_updates_are_warned_not_computed() -> None:
    B = torch.ones(20, 2, dtype=D64)
    B[0, 0] = float("nan")
    bad = _lr("x", B, torch.ones(2, 10, dtype=D64))
    good = _lr("x", torch.ones(20, 2, dtype=D64), torch.eye(2, 10, dtype=D64))
    rec, warns = relate_pair(bad, good, 2)
    assert rec["subspace_similarity_left"] is None and "NaN" in warns[0]
    rec, warns, _ = relate_base(bad, torch.eye(20, 10, dtype=D64), 2)
    assert rec["amplification"] is None and rec["intruders"] is None and "NaN" in warns[0]
