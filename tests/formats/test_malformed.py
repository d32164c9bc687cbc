"""Bad input never crashes and never loses what did load: file-level problems raise CheckpointError
naming the file (CLI: ``error: <path>: <reason>``, exit 2); module-level problems become warnings."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats import load
from app import cli

P = "base_model.model."


def _st(path, tensors, metadata=None):
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, path, metadata=metadata)
    return path


def _folder(path, config, tensors):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if tensors is not None:
        _st(path / "adapter_model.safetensors", tensors)
    return path


def _good(tmp_path):
    g = torch.Generator().manual_seed(0)
    return _st(tmp_path / "good.safetensors", {f"{P}a.lora_A.weight": torch.randn(2, 8, generator=g),
                                               f"{P}a.lora_B.weight": torch.randn(4, 2, generator=g)})


def _header_file(path, header: dict, data: bytes = b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def bad_files(tmp_path) -> dict[str, tuple]:
    good = _good(tmp_path).read_bytes()
    cases = {}
    (tmp_path / "empty.safetensors").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.safetensors", "empty")
    (tmp_path / "trunc.safetensors").write_bytes(good[: len(good) - 20])
    cases["truncated"] = (tmp_path / "trunc.safetensors", "truncated")
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    cases["shorter than a header"] = (tmp_path / "short.safetensors", "too short")
    (tmp_path / "huge.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    cases["absurd header length"] = (tmp_path / "huge.safetensors", "absurd")
    (tmp_path / "garbage.safetensors").write_bytes(struct.pack("<Q", 5) + b"{{{{{" + b"x" * 10)
    cases["corrupt header"] = (tmp_path / "garbage.safetensors", "not valid JSON")
    _header_file(tmp_path / "dtype.safetensors", {"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\x00")
    cases["unknown dtype"] = (tmp_path / "dtype.safetensors", "unknown dtype 'Q7'")
    _header_file(tmp_path / "offs.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 4)
    cases["offsets past the end"] = (tmp_path / "offs.safetensors", "truncated")
    _header_file(tmp_path / "size.safetensors", {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8)
    cases["bytes do not fit shape"] = (tmp_path / "size.safetensors", "do not hold shape")
    _folder(tmp_path / "ptype", {"peft_type": "WOBBLE", "r": 2}, {f"{P}a.lora_A.weight": torch.zeros(2, 2)})
    cases["unknown peft_type"] = (tmp_path / "ptype", "unsupported peft_type 'WOBBLE'")
    _folder(tmp_path / "badjson", "{not json", None)
    cases["config not JSON"] = (tmp_path / "badjson" , "not valid JSON")
    _folder(tmp_path / "noweights", {"peft_type": "LORA"}, None)
    cases["config without weights"] = (tmp_path / "noweights", "without adapter_model.safetensors")
    _folder(tmp_path / "notype", {"r": 2}, {f"{P}a.lora_A.weight": torch.zeros(2, 2)})
    cases["config without peft_type"] = (tmp_path / "notype", "no peft_type")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": torch.zeros(2, 2), "x": Evil()}, tmp_path / "evil.bin")
    cases["pickle with objects"] = (tmp_path / "evil.bin", "refused")
    cases["missing file"] = (tmp_path / "nope.safetensors", "no such file")
    return cases


CASE_NAMES = ["empty", "truncated", "shorter than a header", "absurd header length", "corrupt header", "unknown dtype",
              "offsets past the end", "bytes do not fit shape", "unknown peft_type", "config not JSON",
              "config without weights", "config without peft_type", "pickle with objects", "missing file"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_file_level_problems_python_and_cli(tmp_path, capsys, case) -> None:
    path, reason = bad_files(tmp_path)[case]
    with pytest.raises(CheckpointError) as e:
        load(path)
    assert reason in e.value.reason and str(path) in e.value.path
    code = cli.main(["export", str(path), "--rank", "1", "-o", str(tmp_path / "out")])
    cap = capsys.readouterr()
    assert code == 2 and cap.err.startswith(f"error: {path}") and reason in cap.err
    assert "Traceback" not in cap.err and "pwned" not in cap.out + cap.err
    assert not (tmp_path / "out").exists()


def test_module_level_problems_are_warnings(tmp_path, capsys) -> None:
    g = torch.Generator().manual_seed(1)
    t = {
        f"{P}ok.lora_A.weight": torch.randn(2, 8, generator=g), f"{P}ok.lora_B.weight": torch.randn(4, 2, generator=g),
        f"{P}noB.lora_A.weight": torch.randn(2, 8, generator=g),
        f"{P}inner.lora_A.weight": torch.randn(2, 8, generator=g), f"{P}inner.lora_B.weight": torch.randn(4, 3, generator=g),
        f"{P}wrongr.lora_A.weight": torch.randn(3, 8, generator=g), f"{P}wrongr.lora_B.weight": torch.randn(4, 3, generator=g),
        f"{P}nan.lora_A.weight": torch.tensor([[float("nan")] * 8] * 2), f"{P}nan.lora_B.weight": torch.randn(4, 2, generator=g),
        f"{P}<script>alert(1)</script>.lora_A.weight": torch.randn(2, 8, generator=g),
        f"{P}<script>alert(1)</script>.lora_B.weight": torch.randn(4, 2, generator=g),
    }
    d = _folder(tmp_path / "mixed", {"peft_type": "LORA", "r": 2, "lora_alpha": 2}, t)
    ds = load(d)
    assert sorted(ds.names) == sorted(["ok", "nan", "<script>alert(1)</script>"])
    w = "\n".join(ds.warnings)
    assert "noB: lora_A without lora_B" in w
    assert "inner: inner dimensions disagree" in w
    assert "wrongr: the config says r=2 but the tensors have rank 3" in w
    assert "nan: contains NaN or Inf" in w and ds["nan"].nonfinite and not ds["ok"].nonfinite
    assert torch.allclose(ds["ok"].dense(), t[f"{P}ok.lora_B.weight"] @ t[f"{P}ok.lora_A.weight"])
    code = cli.main(["export", str(d), "--rank", "1", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "warning: noB: lora_A without lora_B" in out and "<script>alert(1)</script>" in out


def test_weights_only_pickle_adapter_loads(tmp_path) -> None:
    g = torch.Generator().manual_seed(2)
    A, B = torch.randn(2, 8, generator=g), torch.randn(4, 2, generator=g)
    d = tmp_path / "binfolder"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    torch.save({f"{P}a.lora_A.weight": A, f"{P}a.lora_B.weight": B}, d / "adapter_model.bin")
    assert torch.allclose(load(d)["a"].dense(), 2 * B @ A)


def test_metadata_must_be_strings(tmp_path) -> None:
    p = _header_file(tmp_path / "m.safetensors", {"__metadata__": {"a": 1}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4)
    with pytest.raises(CheckpointError, match="metadata"):
        load(p)
