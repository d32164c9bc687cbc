"""The safetensors header validator (checked before safe_open), and the fuzz harness's own guards."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats.native import load_native, save_native
from adapters.formats.safetensors_check import check_safetensors, check_safetensors_bytes
from tests.fuzz_corrupt import CaseTimeout, build_safetensors, check_case, split_safetensors


def valid_bytes(tmp_path) -> bytes:
    p = tmp_path / "v.safetensors"
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)},
              p, metadata={"k": "v"})
    return p.read_bytes()


def test_valid_file_is_described_exactly(tmp_path) -> None:
    data = valid_bytes(tmp_path)
    h = check_safetensors(tmp_path / "v.safetensors")
    assert h.metadata == {"k": "v"} and h.file_size == len(data)
    assert {n: (t.dtype, t.shape, t.end - t.start) for n, t in h.tensors.items()} == {
        "a": ("F32", (2, 3), 24), "b": ("BF16", (4,), 8)}
    assert data[h.tensors["a"].start:h.tensors["a"].end] == torch.arange(6, dtype=torch.float32).numpy().tobytes()
    assert check_safetensors_bytes(data).tensors == h.tensors


def _edit(data: bytes, fn) -> bytes:
    header, payload = split_safetensors(data)
    fn(header)
    return build_safetensors(header, payload)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d[:5], "too short"),
    (lambda d: struct.pack("<Q", 2**63) + d[8:], "absurd safetensors header length 9223372036854775808"),
    (lambda d: struct.pack("<Q", len(d)) + d[8:], "truncated: the header claims"),
    (lambda d: struct.pack("<Q", 0) + d[8:], "header is empty"),
    (lambda d: d[:8] + b"[" + d[9:], "not a JSON object"),
    (lambda d: d[:8] + b"{\xff" + d[10:], "not UTF-8"),
    (lambda d: _edit(d, lambda h: h["a"].update(dtype="F128")), "unknown dtype 'F128'"),
    (lambda d: _edit(d, lambda h: h["a"].update(dtype="F4")), "sub-byte dtype F4"),
    (lambda d: _edit(d, lambda h: h["a"].update(shape=[2, -3])), "non-negative integers"),
    (lambda d: _edit(d, lambda h: h["a"].update(shape=[2**40, 2**40])), "do not hold shape"),
    (lambda d: _edit(d, lambda h: h["a"].update(shape=[2, 3.0])), "non-negative integers"),
    (lambda d: _edit(d, lambda h: h["a"].update(data_offsets=[0, 2**62])), "truncated: tensor 'a' ends at byte"),
    (lambda d: _edit(d, lambda h: h["a"].update(data_offsets=[24, 0])), "0 <= begin <= end"),
    (lambda d: _edit(d, lambda h: h["a"].pop("dtype")), "dtype missing"),
    (lambda d: _edit(d, lambda h: h.update(__metadata__={"k": 1})), "strings to strings"),
    (lambda d: _edit(d, lambda h: h["b"].update(data_offsets=[20, 28])), "overlaps or leaves a gap"),
    (lambda d: d + b"\0\0\0\0", "4 trailing bytes no tensor claims"),
])
def test_malformed_headers_are_named(tmp_path, mutate, message) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(mutate(valid_bytes(tmp_path)))
    with pytest.raises(CheckpointError, match=message) as e:
        check_safetensors(p)
    assert e.value.path == str(p)


def test_duplicate_keys_nan_and_deep_nesting_are_refused(tmp_path) -> None:
    head = b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'
    with pytest.raises(CheckpointError, match="duplicate key 'a'"):
        check_safetensors_bytes(struct.pack("<Q", len(head)) + head)
    head = b'{"__metadata__": {"x": "y"}, "n": NaN}'
    with pytest.raises(CheckpointError, match="not valid JSON"):
        check_safetensors_bytes(struct.pack("<Q", len(head)) + head)
    head = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(CheckpointError, match="nested too deeply"):
        check_safetensors_bytes(struct.pack("<Q", len(head)) + head)


def test_directory_and_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="directory"):
        check_safetensors(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        check_safetensors(tmp_path / "nope.safetensors")


def test_native_rejects_before_safe_open(tmp_path, monkeypatch) -> None:
    """A file the validator refuses never reaches safetensors' reader."""
    import adapters.formats.native as native

    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    monkeypatch.setattr(native, "safe_open", lambda *a, **k: pytest.fail("safe_open was called"))
    with pytest.raises(CheckpointError, match="absurd"):
        load_native(p)


def test_unbacked_huge_layer_shape_is_a_warning_not_an_allocation(tmp_path) -> None:
    from adapters.delta import DeltaSet, LayerDelta, LowRank
    from adapters.formats.native import read_manifest

    p = save_native(tmp_path / "a.safetensors", DeltaSet([
        LayerDelta("empty", (3, 3)),
        LayerDelta("ok", (2, 2), low_rank=LowRank(torch.ones(2, 1), torch.ones(1, 2)))]))
    m = read_manifest(p)
    m["layers"][0]["shape"] = [2**14, 2**14]  # 268M elements: legal only when tensors back it
    header, payload = split_safetensors(p.read_bytes())
    header["__metadata__"]["rankscope"] = json.dumps(m)
    p.write_bytes(build_safetensors(header, payload))
    ds = load_native(p)
    assert ds.names == ["ok"] and "not backed by stored tensors" in ds.warnings[0]
    assert torch.equal(ds["ok"].dense(), torch.ones(2, 2))


def test_harness_flags_timeouts_and_allocations_driven_by_claims(tmp_path) -> None:
    """check_case itself can fail: a hang, a file-sized allocation and a stray exception all propagate."""
    p = str(tmp_path / "x")
    with pytest.raises(CaseTimeout):
        check_case(lambda _: time.sleep(5), p, seconds=0.2)
    with pytest.raises((RuntimeError, MemoryError)):
        check_case(lambda _: torch.empty(2**40, dtype=torch.uint8).fill_(1), p)
    with pytest.raises(TypeError):
        check_case(lambda _: None + 1, p)

    def refuse(_):
        raise CheckpointError(p, "bad")
    assert check_case(refuse, p) == "refused"
