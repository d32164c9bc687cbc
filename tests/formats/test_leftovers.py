"""No leftovers: a save killed outright leaves its hidden temp file, and the next save to that target
removes it (and nothing else)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

import adapters.formats.atomic as atomic
from adapters.delta import DeltaSet, LayerDelta, LowRank
from adapters.formats.native import load_native, save_native

REPO = Path(__file__).resolve().parents[2]


def _deltas(v: float) -> DeltaSet:
    return DeltaSet([LayerDelta("l0", (8, 8), low_rank=LowRank(torch.full((8, 1), v), torch.ones(1, 8)))])


def _unrelated(folder: Path, name: str) -> dict[Path, bytes]:
    """Files beside the target that look like its temp files but are not (or are someone else's)."""
    other = folder / "elsewhere.bin"
    other.write_bytes(b"elsewhere")
    files = {
        folder / f".{name}.abcdefgh.tmp.keep": b"1",       # longer name
        folder / f".{name}.abc.tmp": b"2",                 # not mkstemp's 8 characters
        folder / f"{name}.abcdefgh.tmp": b"3",             # not hidden
        folder / f".other-{name}.abcdefgh.tmp": b"4",      # another target's temp
        folder / f".{name}x.abcdefgh.tmp": b"5",           # a target whose name only starts the same
        folder / "notes.txt": b"6",
    }
    for p, data in files.items():
        p.write_bytes(data)
    (folder / f".{name}.linkxxxx.tmp").symlink_to(other)  # a link is never removed (nor its target)
    files[other] = b"elsewhere"
    old = atomic.STARTED - 100
    for p in files:
        os.utime(p, (old, old))
    return files


def _run(script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_killed_save_leaves_a_temp_file_the_next_save_removes(tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    save_native(path, _deltas(1.0))
    unrelated = _unrelated(tmp_path, path.name)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from adapters.formats.atomic import atomic_write
        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(b"half of a checkpoint"); f.flush()
            print("half", flush=True)
            time.sleep(120)
        atomic_write({str(path)!r}, write)
    """)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"half", proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    pat = atomic.temp_pattern(path.name)
    left = [p for p in tmp_path.iterdir() if pat.fullmatch(p.name) and not p.is_symlink()]
    assert len(left) == 1 and left[0].read_bytes() == b"half of a checkpoint"  # the leftover is there
    time.sleep(0.05)  # the next process starts strictly after the leftover was last written
    done = _run(f"""
        import torch
        from adapters.delta import DeltaSet, LayerDelta, LowRank
        from adapters.formats.native import save_native
        save_native({str(path)!r}, DeltaSet([LayerDelta("l0", (8, 8), low_rank=LowRank(torch.full((8, 1), 3.0), torch.ones(1, 8)))]))
    """)
    assert done.returncode == 0, done.stderr
    assert not left[0].exists()  # the next save to the target removed it
    assert torch.equal(load_native(path)["l0"].dense(), torch.full((8, 8), 3.0))
    for p, data in unrelated.items():  # everything else is untouched
        assert p.read_bytes() == data, p
    assert (tmp_path / f".{path.name}.linkxxxx.tmp").is_symlink()


def test_a_live_writers_temp_file_is_left_alone(tmp_path: Path) -> None:
    """Same process: a temp file written after this process started may belong to a live writer."""
    path = tmp_path / "a.safetensors"
    live = tmp_path / f".{path.name}.live0000.tmp"
    live.write_bytes(b"in progress")
    stale = tmp_path / f".{path.name}.dead0000.tmp"
    stale.write_bytes(b"killed")
    os.utime(stale, (atomic.STARTED - 5, atomic.STARTED - 5))
    ancient = tmp_path / f".{path.name}.old00000.tmp"
    ancient.write_bytes(b"killed long ago")
    os.utime(ancient, (time.time() - 2 * atomic.STALE_AFTER_S,) * 2)
    atomic.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and live.read_bytes() == b"in progress"
    assert not stale.exists() and not ancient.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name])
