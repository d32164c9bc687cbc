"""Full fine-tune diffs from two state files (safetensors or weights-only torch)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats import load
from tests.formats.helpers import tiny


def test_diff_of_two_state_files(tmp_path) -> None:
    base, tuned = tiny(0), tiny(0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    b_sd, t_sd = base.state_dict(), tuned.state_dict()
    save_file({k: v.contiguous() for k, v in b_sd.items()}, tmp_path / "base.safetensors")
    torch.save(t_sd, tmp_path / "tuned.pt")  # a weights-only torch file
    ds = load(tmp_path / "tuned.pt", base=tmp_path / "base.safetensors")
    assert ds.format == "diff" and ds.method == "full"
    assert sorted(ds.names) == ["conv", "emb", "head", "lin0", "lin1"]
    for name in ds.names:
        d = ds[name]
        want = (t_sd[f"{name}.weight"] - b_sd[f"{name}.weight"]).reshape(d.shape)
        assert torch.allclose(d.dense(), want, atol=1e-7) and d.kind == "dense"
        assert torch.equal(d.base_tensor(), b_sd[f"{name}.weight"].reshape(d.shape))
        if f"{name}.bias" in t_sd:
            assert torch.allclose(d.bias, t_sd[f"{name}.bias"] - b_sd[f"{name}.bias"])
    assert ds["conv"].shape == (16, 27) and ds["conv"].meta["stored_shape"] == [16, 3, 3, 3]


def test_diff_shape_mismatch_and_nan(tmp_path) -> None:
    base = {"a.weight": torch.zeros(3, 4), "b.weight": torch.zeros(2, 2), "c.weight": torch.zeros(2, 2)}
    tuned = {"a.weight": torch.ones(3, 4), "b.weight": torch.zeros(3, 2), "c.weight": torch.tensor([[float("nan"), 0], [0, 1]])}
    save_file(tuned, tmp_path / "t.safetensors")
    ds = load(tmp_path / "t.safetensors", base=base)
    assert sorted(ds.names) == ["a", "c"] and ds["c"].nonfinite and not ds["a"].nonfinite
    assert any("b.weight" in w and "shape" in w for w in ds.warnings)
    assert any(w.startswith("c:") and "NaN" in w for w in ds.warnings)
    with pytest.raises(CheckpointError, match="no 2-D weight"):
        load(tmp_path / "t.safetensors", base={"x.weight": torch.zeros(1, 1)})
