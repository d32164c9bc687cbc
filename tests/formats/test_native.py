"""RankScope's own file: manifest contents, atomic writes, clear errors for files that are not ours."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from adapters.delta import CheckpointError, DeltaSet, LayerDelta, LowRank, SparsePart
from adapters.formats.native import load_native, read_manifest, save_native


def sample_set() -> DeltaSet:
    lr = LowRank(torch.randn(4, 2, dtype=torch.bfloat16), torch.randn(2, 3, dtype=torch.bfloat16), 2.0)
    sp = SparsePart(torch.tensor([[0, 3], [2, 1]]), torch.tensor([1.5, -2.0]), (4, 3))
    return DeltaSet([
        LayerDelta("model.layers.0.q_proj", (4, 3), low_rank=lr, sparse=sp, method="rosa", n_params=16, meta={"r": 2}),
        LayerDelta("</script><img src=x>", (2, 2), dense_part=torch.eye(2), bias=torch.ones(2), method="diff"),
    ], source="unit", method="mixed")


def test_manifest_and_structure_round_trip(tmp_path) -> None:
    ds = sample_set()
    path = save_native(tmp_path / "a.safetensors", ds)
    m = read_manifest(path)
    assert m["format"] == "rankscope" and m["version"] == 1 and m["rankscope_version"]
    assert [l["name"] for l in m["layers"]] == ds.names
    back = load_native(path)
    for name in ds.names:
        a, b = ds[name], back[name]
        assert b.kind == a.kind and b.meta == a.meta and b.n_params == a.n_params
        assert torch.equal(a.dense(torch.float64), b.dense(torch.float64))
    assert back[ds.names[0]].low_rank[0].B.dtype == torch.bfloat16  # stored as given
    assert torch.equal(back[ds.names[1]].bias, torch.ones(2))


def test_write_is_atomic_and_replaces(tmp_path) -> None:
    path = tmp_path / "a.safetensors"
    save_native(path, sample_set())
    before = path.read_bytes()

    bad = DeltaSet([LayerDelta("x", (2, 2), dense_part=lambda: (_ for _ in ()).throw(RuntimeError("killed")))])
    with pytest.raises(RuntimeError):
        save_native(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporary left behind


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"not a safetensors file at all", b"\xff" * 8 + b"{}"])
def test_garbage_is_a_checkpoint_error(tmp_path, content: bytes) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_native(p)
    assert e.value.path == str(p)


def test_foreign_safetensors_and_bad_manifest(tmp_path) -> None:
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="without a RankScope manifest"):
        load_native(p)
    save_file({"w": torch.zeros(2)}, p, metadata={"rankscope": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_native(p)
    save_file({"w": torch.zeros(2)}, p, metadata={"rankscope": json.dumps({"format": "rankscope", "version": 99, "layers": []})})
    with pytest.raises(CheckpointError, match="newer"):
        load_native(p)


def test_missing_tensor_is_reported_with_the_layer(tmp_path) -> None:
    p = tmp_path / "a.safetensors"
    save_native(p, sample_set())
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.endswith("lr0.A")}
    save_file(tensors, p, metadata=meta)
    ds = load_native(p)  # the broken layer becomes a warning naming it; the healthy one still loads
    assert ds.names == ["</script><img src=x>"]
    assert len(ds.warnings) == 1 and "q_proj" in ds.warnings[0] and "delta.0.lr0.A is missing" in ds.warnings[0]
    assert torch.equal(ds["</script><img src=x>"].dense(), torch.eye(2))
