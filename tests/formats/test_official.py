"""Official RoSA / MoRA / NOLA formats and RoseLoRA files, hand-built from their documented layouts."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats import load
from adapters.formats.official import mora_delta

P = "base_model.model."


def _folder(path, config, tensors):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, path / "adapter_model.safetensors")
    return path


def test_rosa_lora_plus_csr(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    out_f, in_f, r = 6, 10, 2
    A, B = torch.randn(r, in_f, generator=g).bfloat16(), torch.randn(out_f, r, generator=g).bfloat16()
    S = torch.zeros(out_f, in_f)
    mask = torch.rand(out_f, in_f, generator=g) < 0.2
    S[mask] = torch.randn(int(mask.sum()), generator=g)
    S = S.bfloat16().float()
    rows, cols = mask.nonzero(as_tuple=True)
    row_offs = torch.zeros(out_f + 1, dtype=torch.int32)
    row_offs[1:] = torch.cumsum(torch.bincount(rows, minlength=out_f), 0).int()
    spa = {"values": S[mask].bfloat16(), "row_offs": row_offs, "row_idx": torch.arange(out_f, dtype=torch.int16),
           "col_idx": cols.to(torch.int16)}
    t = {f"{P}q.rosa_A.weight": A, f"{P}q.rosa_B.weight": B, **{f"{P}q.rosa_spa.{k}": v for k, v in spa.items()},
         # an r=0 module: only the sparse part (its width comes from the base)
         **{f"{P}v.rosa_spa.{k}": v for k, v in spa.items()}}
    cfg = {"peft_type": "ROSA", "r": r, "lora_alpha": 4, "d": 0.2, "rank_pattern": {"v": 0}}
    d = _folder(tmp_path / "rosa", cfg, t)
    alone = load(d)  # the r=0 module needs its width from the base: a warning, q still loads
    assert alone.names == ["q"] and alone.warnings[0].startswith("v: a RoSA module with r=0 needs the base")
    ds = load(d, base={"q.weight": torch.zeros(out_f, in_f), "v.weight": torch.zeros(out_f, in_f)})
    assert ds.method == "rosa" and ds.warnings == []
    q = ds["q"]
    assert q.kind == "low_rank+sparse" and q.sparse[0].nnz == int(mask.sum())
    assert torch.allclose(q.dense(torch.float64), 2.0 * (B.double() @ A.double()) + S.double(), atol=1e-6)
    assert torch.equal(ds["v"].dense(), S) and ds["v"].kind == "sparse"
    # a wrapped int16 column index (width > 32767) reads back through & 0xFFFF
    from adapters.formats.official import csr_to_coo

    sp = csr_to_coo(torch.ones(1), torch.tensor([0, 1]), torch.tensor([40000]).to(torch.int16), (1, 40001))
    assert sp.indices[1, 0] == 40000


def _rotation(r: int, i: int) -> torch.Tensor:
    """The fork's rotate-half RoPE as a matrix: c' = R c for chunk i."""
    h = r // 2
    theta = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
    ang = torch.cat([theta, theta]) * i
    R = torch.diag(ang.cos())
    for j in range(h):
        R[j, j + h] = -ang[j].sin()
        R[j + h, j] = ang[j + h].sin()
    return R


def test_mora_closed_forms() -> None:
    g = torch.Generator().manual_seed(1)
    M = torch.randn(4, 4, generator=g)
    # type 1 ("sharing", strided compression, tiled output), no padding: ΔW = ones ⊗ M
    assert torch.allclose(mora_delta(M, 12, 8, 1), torch.kron(torch.ones(2, 3), M), atol=1e-6)
    # type 2 (contiguous groups both ways): ΔW = M ⊗ ones
    assert torch.allclose(mora_delta(M, 12, 8, 2), torch.kron(M, torch.ones(2, 3)), atol=1e-6)
    # type 6 ("rotation"): block-diagonal with blocks M R_i
    want = torch.block_diag(*[M @ _rotation(4, i) for i in range(3)])
    assert torch.allclose(mora_delta(M, 12, 12, 6), want, atol=1e-5)
    # padding wraps around: input column c and c + in contribute to the same compressed slot
    D = mora_delta(M, 6, 4, 1)
    assert torch.allclose(D[:, 0], M[:, 0] + M[:, 2], atol=1e-6) and torch.allclose(D[:, 4], M[:, 0], atol=1e-6)


def test_mora_folder(tmp_path) -> None:
    g = torch.Generator().manual_seed(2)
    out_f, in_f, r = 16, 24, 1
    r_hat = int(math.sqrt((in_f + out_f) * r) + 0.5)  # 6
    M = torch.randn(r_hat, r_hat, generator=g)
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": 16, "use_mora": True, "mora_type": 6}
    d = _folder(tmp_path / "mora", cfg, {f"{P}k.lora_A.weight": M, f"{P}k.lora_B.weight": M.clone()})
    with pytest.raises(CheckpointError, match="MoRA needs the base"):
        load(d)
    ds = load(d, base={"k.weight": torch.zeros(out_f, in_f)})
    k = ds["k"]
    assert ds.method == "mora" and k.meta["square_rank"] == 6 and k.n_params == 36 and k.shape == (16, 24)
    assert torch.allclose(k.dense(), mora_delta(M, in_f, out_f, 6))
    x = torch.randn(3, in_f, generator=g)  # ΔW x equals the fork's forward on any input
    from adapters.formats.official import mora_forward

    assert torch.allclose(x @ k.dense().T, mora_forward(x, M, in_f, out_f, 6), atol=1e-5)


def _nola_basis(seed: int, k: int, shape) -> torch.Tensor:
    """The official GenerateParams recipe (UCDvision/NOLA gpt/src/model_nola.py)."""
    torch.manual_seed(seed)
    W = torch.zeros(k, *shape)
    torch.nn.init.uniform_(W, a=-1.0, b=1.0)
    return W * (1.0 / math.sqrt(k))


def test_nola_folder_and_bare_file(tmp_path) -> None:
    g = torch.Generator().manual_seed(3)
    r, in_f, out_f, k = 4, 12, 10, 8
    wA, wB = torch.randn(r, in_f, generator=g), torch.zeros(out_f, r)
    cA, cB = torch.randn(k, generator=g), torch.randn(k, generator=g)
    sA, sB = 1234567, 7654321
    t = {f"{P}fc.lora_A.weight": wA, f"{P}fc.lora_A.seed": torch.tensor([sA]), f"{P}fc.lora_A.coefficients": cA,
         f"{P}fc.lora_B.weight": wB, f"{P}fc.lora_B.seed": torch.tensor([sB]), f"{P}fc.lora_B.coefficients": cB}
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": 8, "use_nola": True, "nola_num_basis": k}
    d = _folder(tmp_path / "nola", cfg, t)
    A = wA + torch.einsum("b,boi->oi", cA, _nola_basis(sA, k, (r, in_f)))
    B = wB + torch.einsum("b,boi->oi", cB, _nola_basis(sB, k, (out_f, r)))
    torch.manual_seed(99)
    before = torch.rand(1)
    torch.manual_seed(99)
    ds = load(d)
    assert torch.equal(torch.rand(1), before)  # the global RNG is restored
    fc = ds["fc"]
    assert ds.method == "nola" and fc.n_params == 2 * k and fc.meta["num_basis_a"] == k
    assert torch.allclose(fc.dense(), 2.0 * B @ A, atol=1e-5)
    assert any("CPU generator" in w for w in ds.warnings)
    bare = tmp_path / "nola_gpt2.safetensors"  # the GPT-2 path: a state dict without config
    save_file({k_.replace(P, "transformer.h.0.attn.nola_query."): v.contiguous() for k_, v in t.items()}, bare)
    ds2 = load(bare)
    assert ds2.method == "nola" and any("lora_alpha=1.0" in w for w in ds2.warnings)
    assert torch.allclose(ds2[ds2.names[0]].dense(), 0.25 * B @ A, atol=1e-5)


def test_roselora_is_peft_lora_with_exact_zeros(tmp_path) -> None:
    g = torch.Generator().manual_seed(4)
    A, B = torch.randn(4, 16, generator=g), torch.randn(8, 4, generator=g)
    A[A.abs() < 1.0] = 0.0
    B[B.abs() < 1.0] = 0.0
    d = _folder(tmp_path / "rose", {"peft_type": "LORA", "r": 4, "lora_alpha": 4},
                {f"{P}o.lora_A.weight": A, f"{P}o.lora_B.weight": B})
    lr = load(d)["o"].low_rank[0]
    assert int((lr.A == 0).sum()) == int((A == 0).sum()) > 0 and torch.equal(lr.B, B)
