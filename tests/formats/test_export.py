"""Export to a PEFT LoRA folder: PEFT loads it and its merge equals W0 + the truncated ΔW."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from adapters.formats import load
from adapters.formats.export import choose_rank, export_lora
from app import cli
from tests.formats.helpers import LoHaConfig, LoraConfig, peft, peft_round_trip, tiny


def truncated(D: torch.Tensor, k: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(D.double(), full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vh[:k]


def merged_minus_base(base, out_dir) -> dict:
    b_sd = {k: v.clone() for k, v in base.state_dict().items()}
    m = peft().PeftModel.from_pretrained(copy.deepcopy(base), str(out_dir)).merge_and_unload()
    return {k: (v.double() - b_sd[k].double()) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("source", ["loha", "lora"])
def test_export_round_trips_through_peft(tmp_path, source) -> None:
    base = tiny()
    if source == "loha":  # dense high-rank deltas, including a conv layer
        cfg = LoHaConfig(r=4, alpha=4, target_modules=["lin0", "lin1", "conv"])
    else:  # factored low-rank deltas (QR fast path), embedding, conv and lora_bias
        cfg = LoraConfig(r=6, lora_alpha=6, target_modules=["emb", "lin0", "conv"], lora_bias=False)
    peft_round_trip(base, cfg, tmp_path / "src", std=0.3)
    ds = load(tmp_path / "src", base=base)  # the base tells LoHa's conv kernel size
    rows = export_lora(ds, tmp_path / "out", rank=3)
    assert {r.layer: r.rank for r in rows} == {n: 3 for n in ds.names}
    diff = merged_minus_base(base, tmp_path / "out")
    for r in rows:
        D = ds[r.layer].dense(torch.float64)
        want = truncated(D, 3)
        got = diff[f"{r.layer}.weight"].reshape(D.shape)
        assert torch.allclose(got, want, atol=1e-5), r.layer
        S = torch.linalg.svdvals(D)
        assert r.retained_energy == pytest.approx(float((S[:3] ** 2).sum() / (S ** 2).sum()), rel=1e-6)
        assert r.rel_fro_error == pytest.approx(float((D - want).norm() / D.norm()), rel=1e-5)
    report = json.loads((tmp_path / "out" / "rankscope_export.json").read_text())
    assert [l["layer"] for l in report["layers"]] == [r.layer for r in rows]


def test_energy_rank_per_layer_and_rank_pattern(tmp_path) -> None:
    base = tiny()
    peft_round_trip(base, LoHaConfig(r=4, alpha=4, target_modules=["lin0", "head"]), tmp_path / "src", std=0.3)
    ds = load(tmp_path / "src")
    rows = export_lora(ds, tmp_path / "out", energy=0.9)
    diff = merged_minus_base(base, tmp_path / "out")
    for r in rows:
        D = ds[r.layer].dense(torch.float64)
        S = torch.linalg.svdvals(D)
        frac = torch.cumsum(S ** 2, 0) / (S ** 2).sum()
        assert frac[r.rank - 1] >= 0.9 and (r.rank == 1 or frac[r.rank - 2] < 0.9)
        assert torch.allclose(diff[f"{r.layer}.weight"], truncated(D, r.rank), atol=1e-5)
    assert choose_rank(torch.tensor([4.0, 3.0]), energy=0.5) == 1 and choose_rank(torch.tensor([4.0, 3.0]), energy=0.7) == 2 and choose_rank(torch.zeros(3), energy=0.9) == 1


def test_cli_export(tmp_path, capsys) -> None:
    base = tiny()
    peft_round_trip(base, LoraConfig(r=4, target_modules=["lin0", "</b>lin1".replace("</b>", "")]), tmp_path / "src")
    code = cli.main(["export", str(tmp_path / "src"), "--rank", "2", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "lin0" in out and "energy kept" in out
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert cli.main(["export", str(tmp_path / "src"), "--energy", "1.5", "-o", str(tmp_path / "o2")]) == 2
    assert "--energy must be in (0, 1]" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nope"), "--rank", "2", "-o", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'nope'}") and "Traceback" not in err
