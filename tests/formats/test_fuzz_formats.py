"""Fuzzing ``adapters.formats.load`` over every supported format (harness: tests/fuzz_corrupt.py).

Valid small inputs are built in code: PEFT folders written by the real ``peft`` package (LoRA with
rank/alpha patterns and rsLoRA, LoHa, LoKr, VeRA, AdaLoRA, FourierFT), a kohya file, the official
RoSA / MoRA / NOLA layouts, a full fine-tune diff, and zips of PEFT folders. Each case corrupts one
(the tensor file, the JSON config, both, a missing file; for zips hostile member names, links,
bombs, duplicates, nesting, wrong kinds, damaged bytes) and must end in a load that survives a
full walk, per-module warnings, or ``CheckpointError``. Derandomized and database-free."""

from __future__ import annotations

import functools
import io
import json
import shutil
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from adapters.delta import CheckpointError
from adapters.formats import load
from tests.fuzz_corrupt import check_case, corrupt_safetensors, mutate_json
from tests.formats.test_fuzz_loaders import FUZZ

OUTCOMES: dict[str, Counter] = {}


P = "base_model.model."


def _peft_folders(root: Path) -> dict[str, Path]:
    from peft import (AdaLoraConfig, FourierFTConfig, LoHaConfig, LoKrConfig, LoraConfig, VeraConfig,
                      get_peft_model)

    from tests.formats.helpers import randomize_adapter, tiny

    configs = {
        "lora": LoraConfig(r=4, lora_alpha=8, target_modules=["lin0", "lin1", "head"], rank_pattern={"lin1": 2},
                           alpha_pattern={"head": 3.0}, use_rslora=True),
        "loha": LoHaConfig(r=2, alpha=4, target_modules=["lin0", "head"]),
        "lokr": LoKrConfig(r=2, alpha=4, target_modules=["lin0", "head"]),
        "vera": VeraConfig(r=4, target_modules=["lin0", "head"], projection_prng_key=3),
        "adalora": AdaLoraConfig(init_r=4, target_r=2, total_step=10, target_modules=["lin0", "head"]),
        "fourierft": FourierFTConfig(n_frequency=20, target_modules=["lin0", "head"], random_loc_seed=7),
    }
    out = {}
    for name, cfg in configs.items():
        pm = get_peft_model(tiny(), cfg)
        randomize_adapter(pm, 1, 0.2)
        pm.save_pretrained(str(root / name))
        out[name] = root / name
    return out


def _st(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous().clone() for k, v in tensors.items()}, metadata=metadata)


def _handmade(g: torch.Generator) -> dict[str, dict[str, bytes]]:
    """kohya, the official RoSA / MoRA / NOLA layouts and a fine-tune diff, from their documented keys."""
    kohya = {}
    for m, (o, i, r) in {"lora_unet_down_blocks_0_proj": (8, 6, 2), "lora_te_text_model_fc1": (5, 7, 3)}.items():
        kohya |= {f"{m}.lora_down.weight": torch.randn(r, i, generator=g), f"{m}.lora_up.weight": torch.randn(o, r, generator=g),
                  f"{m}.alpha": torch.tensor(float(r) / 2)}
    cfg = lambda d: json.dumps(d).encode()  # noqa: E731
    rows = torch.tensor([0, 2, 2, 3, 5, 5, 6], dtype=torch.int32)  # CSR over a 6 x 10 matrix, 6 entries
    spa = {"values": torch.randn(6, generator=g), "row_offs": rows, "row_idx": torch.arange(6, dtype=torch.int16),
           "col_idx": torch.tensor([1, 7, 3, 0, 9, 2], dtype=torch.int16)}
    rosa = {f"{P}lin0.rosa_A.weight": torch.randn(2, 10, generator=g), f"{P}lin0.rosa_B.weight": torch.randn(6, 2, generator=g),
            **{f"{P}lin0.rosa_spa.{k}": v for k, v in spa.items()}}
    M = torch.randn(6, 6, generator=g)
    nola = {f"{P}fc.lora_A.weight": torch.randn(4, 12, generator=g), f"{P}fc.lora_A.seed": torch.tensor([123]),
            f"{P}fc.lora_A.coefficients": torch.randn(8, generator=g), f"{P}fc.lora_B.weight": torch.zeros(10, 4),
            f"{P}fc.lora_B.seed": torch.tensor([321]), f"{P}fc.lora_B.coefficients": torch.randn(8, generator=g)}
    tuned = {"lin0.weight": torch.randn(6, 10, generator=g), "lin0.bias": torch.randn(6, generator=g),
             "k.weight": torch.randn(16, 24, generator=g)}
    return {
        "kohya": {"lora.safetensors": _st(kohya, {"ss_network_dim": "2", "ss_network_alpha": "1"})},
        "rosa": {"adapter_config.json": cfg({"peft_type": "ROSA", "r": 2, "lora_alpha": 4, "d": 0.1}),
                 "adapter_model.safetensors": _st(rosa)},
        "mora": {"adapter_config.json": cfg({"peft_type": "LORA", "r": 1, "lora_alpha": 16, "use_mora": True, "mora_type": 6}),
                 "adapter_model.safetensors": _st({f"{P}k.lora_A.weight": M, f"{P}k.lora_B.weight": M.clone()})},
        "nola": {"adapter_config.json": cfg({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_nola": True, "nola_num_basis": 8}),
                 "adapter_model.safetensors": _st(nola)},
        "diff": {"tuned.safetensors": _st(tuned)},
    }


@functools.lru_cache(maxsize=1)
def valid_inputs() -> dict[str, dict[str, bytes]]:
    """{name: {relative file: bytes}} of every valid input (a folder is several files)."""
    with tempfile.TemporaryDirectory() as d, torch.random.fork_rng():
        torch.manual_seed(0)
        root = Path(d)
        out = {name: {f.name: f.read_bytes() for f in folder.iterdir() if f.suffix in (".json", ".safetensors")}
               for name, folder in _peft_folders(root).items()}
        out |= _handmade(torch.Generator().manual_seed(0))
    return out


@functools.lru_cache(maxsize=1)
def bases() -> dict[str, object]:
    """The base each input needs (VeRA, FourierFT: layer shapes; MoRA, RoSA, diffs: the weights)."""
    from tests.formats.helpers import tiny

    g = torch.Generator().manual_seed(1)
    model = tiny()
    plain = {"lin0.weight": torch.randn(6, 10, generator=g), "lin0.bias": torch.zeros(6),
             "k.weight": torch.randn(16, 24, generator=g)}
    return {"vera": model, "fourierft": model, "rosa": plain, "mora": plain, "diff": plain}


KINDS = ["lora", "loha", "lokr", "vera", "adalora", "fourierft", "kohya", "rosa", "mora", "nola", "diff"]


@pytest.fixture(scope="module", autouse=True)
def _built_once() -> None:
    """Build the valid inputs (imports peft) before any timed case runs, and check they ARE valid."""
    for kind in KINDS:
        with tempfile.TemporaryDirectory() as d:
            ds = load(_write(Path(d) / kind, valid_inputs()[kind]), base=bases().get(kind))
            assert len(ds) >= 1 and not [w for w in ds.warnings if "module skipped" in w], (kind, ds.warnings)


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder if len(files) > 1 else folder / next(iter(files))


def _record(test: str, outcome: str) -> None:
    OUTCOMES.setdefault(test, Counter())[outcome] += 1


@st.composite
def corrupt_folder(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    """One corruption of a folder: its tensor file, its JSON config, both, or a missing file."""
    files = dict(files)
    weights = next((n for n in files if n.endswith(".safetensors")), None)
    configs = [n for n in files if n.endswith(".json")]
    kinds = ["weights", "weights", "config", "config", "both", "drop"] if configs else ["weights"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("weights", "both") and weights:
        files[weights] = draw(corrupt_safetensors(files[weights]))
    if kind in ("config", "both"):
        name = draw(st.sampled_from(configs))
        cfg = json.loads(files[name])
        text = json.dumps(draw(mutate_json(cfg)))
        if draw(st.integers(0, 9)) == 0:  # not JSON at all, or cut short
            text = text[: draw(st.integers(0, len(text)))]
        files[name] = text.encode()
    if kind == "drop":
        files.pop(draw(st.sampled_from(sorted(files))))
    return files


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(data=st.data(), which=st.sampled_from(KINDS))
def test_fuzz_formats_load(tmp_path, data, which) -> None:
    files = data.draw(corrupt_folder(valid_inputs()[which]))
    if not files:
        return
    path = _write(tmp_path / "case", files)
    base = bases().get(which)
    _record(which, check_case(lambda p: load(p, base=base), str(path)))


# -- zips ------------------------------------------------------------------------------------------
def _zip_bytes(members: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buf.getvalue()


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


HOSTILE_MEMBER_NAMES = ["../escape.safetensors", "/tmp/abs.safetensors", "a/../../escape", "C:\\evil", "..\\evil",
                        "ok/../../../../escape", "a" * 300, "<script>alert(1)</script>.safetensors",
                        "\x1b[31mred.safetensors", "dir/", "./adapter_config.json"]


@st.composite
def hostile_zip(draw: st.DrawFn, folder: dict[str, bytes]) -> bytes:
    """A zip of a valid PEFT folder, then broken: renamed/added hostile members, links, bombs, bytes."""
    prefix = draw(st.sampled_from(["", "my_adapter/", "a/b/"]))
    members: list[tuple[zipfile.ZipInfo | str, bytes]] = [(prefix + n, d) for n, d in folder.items()]
    kind = draw(st.sampled_from(["name", "link", "bomb", "bytes", "inner", "dup", "nested", "wrong_kind"]))
    compression = zipfile.ZIP_STORED
    if kind == "name":
        i = draw(st.integers(0, len(members) - 1))
        bad = draw(st.sampled_from(HOSTILE_MEMBER_NAMES))
        if draw(st.booleans()):  # an extra hostile member
            members.insert(i, (bad, b"x" * draw(st.integers(0, 64))))
        else:  # a real member renamed
            members[i] = (bad, members[i][1])
    elif kind == "link":
        members.append((_link(prefix + draw(st.sampled_from(["adapter_model.safetensors", "x", "../x"])),
                              draw(st.sampled_from(["/etc/passwd", "../../secret", "adapter_config.json"]))), b"/etc/passwd"))
    elif kind == "bomb":
        members.append((prefix + "zeros.safetensors", b"\x00" * draw(st.sampled_from([300_000, 2_000_000]))))
        compression = zipfile.ZIP_DEFLATED
    elif kind == "inner":
        members = [(prefix + n, d) for n, d in draw(corrupt_folder(folder)).items()]
    elif kind == "dup":
        members.append(members[0])
    elif kind == "nested":
        members = [(prefix + "inner.zip", _zip_bytes(members))]
    elif kind == "wrong_kind":
        members = [(prefix + draw(st.sampled_from(["notes.txt", "model.onnx", "x.gguf", "adapter_config.json"])),
                    draw(st.binary(max_size=64)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        data = _zip_bytes(members, compression)
    if kind == "bytes":
        data = bytearray(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data) - 1))]
        else:
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(data)
    return data


@pytest.mark.slow
@settings(max_examples=800, **FUZZ)
@given(data=st.data(), which=st.sampled_from(["lora", "loha"]))
def test_fuzz_zip_load(tmp_path, data, which) -> None:
    work = tmp_path / "w"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    z = work / "upload.zip"
    z.write_bytes(data.draw(hostile_zip(valid_inputs()[which])))
    before = set(tmp_path.parent.rglob("*escape*")) | set(Path("/tmp").glob("abs.safetensors"))
    _record("zip", check_case(load, str(z)))
    after = set(tmp_path.parent.rglob("*escape*")) | set(Path("/tmp").glob("abs.safetensors"))
    assert after == before, f"a member was written outside the extraction folder: {after - before}"


@pytest.mark.parametrize("test", [*KINDS, "zip"])
def test_fuzz_formats_reached_every_outcome(test: str) -> None:
    """Each input was both loaded (possibly with warnings) and refused many times: the corruptions
    reach past the first check, and the valid parts of a damaged input still load."""
    seen = OUTCOMES.get(test)
    if seen is None:
        pytest.skip("the fuzz test did not run in this session")
    assert seen["refused"] >= 5 and seen["loaded"] + seen["warned"] >= 5, dict(seen)


def test_fuzz_formats_warned_often() -> None:
    total = sum((OUTCOMES.get(k, Counter()) for k in KINDS), Counter()) if OUTCOMES else None
    if not total:
        pytest.skip("the fuzz test did not run in this session")
    assert total["warned"] >= 20 and total["loaded"] >= 100 and total["refused"] >= 100, dict(total)


@pytest.mark.slow
@settings(max_examples=300, **FUZZ)
@given(data=st.data(), which=st.sampled_from(["lora", "kohya"]), name=st.sampled_from(
    ["upload.zip", "../../x.zip", "<script>.zip", "a.safetensors", "adapter_config.json", "\x1b[31m.zip"]))
def test_fuzz_app_upload(tmp_path, data, which, name) -> None:
    """The workbench's upload path (``app.sources.save_upload``) on hostile zips and files: the
    checkpoints it makes load or are refused, and nothing is written outside the session folder."""
    from app.errors import UserError
    from app.sources import save_upload

    work = tmp_path / "session"
    if work.exists():
        shutil.rmtree(work)
    blob = data.draw(hostile_zip(valid_inputs()[which])) if name.endswith(".zip") else \
        data.draw(corrupt_safetensors(next(iter(valid_inputs()["kohya"].values()))))
    try:
        paths = save_upload([(name, blob)], work / "uploads", max_total_bytes=64 * 2**20)
    except (UserError, CheckpointError) as e:
        assert e.path and e.reason
        _record("app_upload", "refused")
        paths = []
    for p in paths:
        assert Path(p).resolve().is_relative_to((work / "uploads").resolve())
        _record("app_upload", check_case(load, str(p)))
    outside = [p for p in tmp_path.rglob("*") if not p.resolve().is_relative_to(work.resolve())]
    assert outside == [], outside
