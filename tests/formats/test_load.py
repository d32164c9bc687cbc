"""``load`` sniffing: native files, PEFT folders and single files, zips (safe extraction), laziness."""

from __future__ import annotations

import zipfile

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError, DeltaSet, LayerDelta, LowRank
from adapters.formats import load, save_native
from adapters.formats.zipsafe import extract_zip
from tests.formats.helpers import LoraConfig, expected_delta, peft_round_trip, tiny


def test_native_file_through_load(tmp_path) -> None:
    ds = DeltaSet([LayerDelta("a.b", (4, 3), low_rank=LowRank(torch.randn(4, 2), torch.randn(2, 3), 0.5))], method="lora")
    p = save_native(tmp_path / "x.safetensors", ds)
    back = load(p)
    assert back.format == "rankscope" and torch.equal(back["a.b"].dense(), ds["a.b"].dense())


def test_peft_file_alone_uses_scale_one_and_config_beside_it(tmp_path) -> None:
    base_sd, merged_sd = peft_round_trip(tiny(), LoraConfig(r=4, lora_alpha=4, target_modules=["lin0"]), tmp_path)
    single = load(tmp_path / "adapter_model.safetensors")  # config beside it is used
    assert torch.allclose(single["lin0"].dense(torch.float64), expected_delta(base_sd, merged_sd, "lin0"), atol=1e-5)
    lone = tmp_path / "elsewhere" / "lora.safetensors"
    lone.parent.mkdir()
    lone.write_bytes((tmp_path / "adapter_model.safetensors").read_bytes())
    ds = load(lone)
    assert ds["lin0"].low_rank[0].scale == 1.0 and "scale 1" in ds.warnings[0]


def test_zip_of_a_peft_folder(tmp_path) -> None:
    base_sd, merged_sd = peft_round_trip(tiny(), LoraConfig(r=4, target_modules=["lin0"]), tmp_path / "ad")
    z = tmp_path / "ad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in (tmp_path / "ad").iterdir():
            zf.write(f, f"my_adapter/{f.name}")
    ds = load(z)
    assert ds.source == str(z) and ds.config["archive_member"] == "my_adapter"
    assert torch.allclose(ds["lin0"].dense(torch.float64), expected_delta(base_sd, merged_sd, "lin0"), atol=1e-5)


def _zip(path, members: dict[str, bytes], **kw) -> None:
    with zipfile.ZipFile(path, "w", **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize("name", ["../evil.safetensors", "/abs/evil.safetensors", "a/../../evil", "C:/evil", "..\\evil"])
def test_zip_path_escapes_are_refused(tmp_path, name) -> None:
    z = tmp_path / "bad.zip"
    _zip(z, {name: b"x"})
    with pytest.raises(CheckpointError, match="escape") as e:
        load(z)
    assert e.value.path == str(z)
    assert not (tmp_path / "evil.safetensors").exists() and not (tmp_path.parent / "evil.safetensors").exists()


def test_zip_symlink_and_bombs_are_refused(tmp_path) -> None:
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(CheckpointError, match="link"):
        load(z)
    bomb = tmp_path / "bomb.zip"
    _zip(bomb, {"zeros.safetensors": b"\x00" * 2_000_000}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match="compression ratio"):
        load(bomb)
    big = tmp_path / "big.zip"
    _zip(big, {"a.bin": bytes(range(256)) * 400})
    with pytest.raises(CheckpointError, match="limit"):
        extract_zip(big, tmp_path / "out", max_total=50_000)


def test_corrupt_and_empty_zip(tmp_path) -> None:
    z = tmp_path / "c.zip"
    z.write_bytes(b"PK\x03\x04" + b"\x00" * 30)
    with pytest.raises(CheckpointError, match="zip"):
        load(z)
    e = tmp_path / "e.zip"
    _zip(e, {})
    with pytest.raises(CheckpointError, match="empty"):
        load(e)


def test_layers_are_lazy(tmp_path, monkeypatch) -> None:
    peft_round_trip(tiny(), LoraConfig(r=4, target_modules=["lin0", "lin1"]), tmp_path)
    ds = load(tmp_path, check=False)
    from adapters.formats.safetensors_io import SafetensorsFile

    reads: list[str] = []
    orig = SafetensorsFile.get
    monkeypatch.setattr(SafetensorsFile, "get", lambda self, k: reads.append(k) or orig(self, k))
    assert reads == [] and len(ds) == 2
    ds["lin1"]
    assert set(reads) == {"base_model.model.lin1.lora_A.weight", "base_model.model.lin1.lora_B.weight"}


def test_plain_state_dict_needs_a_base(tmp_path) -> None:
    p = tmp_path / "model.safetensors"
    save_file({"w.weight": torch.zeros(3, 3)}, p)
    with pytest.raises(CheckpointError, match="pass the base model"):
        load(p)
