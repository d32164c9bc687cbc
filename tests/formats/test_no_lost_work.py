"""No lost work: a save killed half-way or failing on a full disk leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import adapters.formats.atomic as atomic
from adapters.delta import DeltaSet, LayerDelta, LowRank
from adapters.formats.native import load_native, save_native

REPO = Path(__file__).resolve().parents[2]


def deltas(value: float, n: int = 8) -> DeltaSet:
    return DeltaSet([LayerDelta(f"l{i}", (n, n), low_rank=LowRank(torch.full((n, 2), value), torch.ones(2, n)))
                     for i in range(3)], method="lora")


def half_writer(real, fail):
    """A ``save_file`` that writes the first half of the real file, then calls ``fail()``."""

    def write(tensors, tmp, metadata=None):
        real(tensors, tmp, metadata=metadata)
        data = Path(tmp).read_bytes()
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            fail()

    return write


def assert_previous_intact(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert torch.equal(load_native(path)["l0"].dense(), torch.full((8, 8), 2.0))
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left behind"


def test_writer_failing_half_way_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "run.safetensors"
    save_native(path, deltas(1.0))
    before = path.read_bytes()
    monkeypatch.setattr(atomic, "save_file", half_writer(atomic.save_file, lambda: (_ for _ in ()).throw(RuntimeError("boom"))))
    with pytest.raises(RuntimeError, match="boom"):
        save_native(path, deltas(5.0))
    assert_previous_intact(path, before)


def test_full_disk_is_a_clear_oserror_and_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "run.safetensors"
    save_native(path, deltas(1.0))
    before = path.read_bytes()

    def no_space():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "save_file", half_writer(atomic.save_file, no_space))
    with pytest.raises(OSError) as e:
        save_native(path, deltas(5.0))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert e.value.strerror == "could not write the file (No space left on device)"
    assert_previous_intact(path, before)


def test_saved_files_get_the_umask_permissions_without_touching_the_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        p = save_native(tmp_path / "p.safetensors", deltas(1.0))
        assert os.umask(0o027) == 0o027  # atomic_write left the process umask alone
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640


def test_process_killed_mid_write_keeps_the_previous_file(tmp_path) -> None:
    """A real SIGKILL while the new checkpoint is half on disk: the old one is still there, whole."""
    path = tmp_path / "run.safetensors"
    save_native(path, deltas(1.0))
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import sys, time, torch
        import adapters.formats.atomic as atomic
        from adapters.delta import DeltaSet, LayerDelta, LowRank
        from adapters.formats.native import save_native
        def stall():
            print("half", flush=True)
            time.sleep(60)
        real = atomic.save_file
        def write(tensors, tmp, metadata=None):
            real(tensors, tmp, metadata=metadata)
            data = open(tmp, "rb").read()
            with open(tmp, "wb") as f:
                f.write(data[: len(data) // 2]); f.flush()
                stall()
        atomic.save_file = write
        big = DeltaSet([LayerDelta("l0", (512, 512), low_rank=LowRank(torch.ones(512, 64), torch.ones(64, 512)))])
        save_native({str(path)!r}, big)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"half", proc.stderr.read().decode()
        temps = [p for p in tmp_path.iterdir() if p.name != path.name]
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # the half-written new file exists...
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # ...and the checkpoint the user had is untouched
    assert torch.equal(load_native(path)["l0"].dense(), torch.full((8, 8), 2.0))
