"""Long runs lose nothing: a NaN/Inf (loss or weights) stops training naming the step and keeps the
last good state for EVERY method (buffers and masks included); a checkpoint write that fails on a
full disk half-way through a run is a clear CLI error and leaves the previous checkpoint whole."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import adapters
import adapters.formats.atomic as atomic
from adapters.formats.native import load_adapters, load_native
from adapters.training import train
from adapters.training.tasks import LowRankTask
from app import cli

METHODS = sorted(adapters.METHODS)
CONFIGS = {"lora": {"r": 2}, "rosa": {"r": 2, "density": 0.05, "warmup_steps": 2}, "nola": {"r": 2},
           "mora": {"r": 2}, "roselora": {"r": 2, "total_steps": 8, "t_init": 1, "t_final": 6}}


class _Poisoned(LowRankTask):
    """From step ``at`` on, either the loss is NaN or its gradient is infinite (Adam then writes NaN)."""

    def __init__(self, seed: int, at: int, how: str) -> None:
        super().__init__(seed, features=24, batch_size=32)
        self.at, self.how, self._step = at, how, -1

    def batch(self, step):
        self._step = step
        return super().batch(step)

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        if self._step >= self.at and loss.requires_grad:  # training steps only, not evaluations
            if self.how == "loss":
                return loss * float("nan")
            loss.register_hook(lambda g: g * float("inf"))
        return loss


def _state(res) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in res.modules().items() for k, v in m.adapter_state().items()}


@pytest.mark.parametrize("how", ["loss", "grad"])
@pytest.mark.parametrize("method", METHODS)
def test_nan_stops_at_the_step_and_keeps_the_last_good_state(method: str, how: str) -> None:
    at = 4
    bad = train(_Poisoned(0, at, how), method, config=CONFIGS.get(method, {"r": 2}), steps=8, lr=1e-2, device="cpu", seed=0)
    assert bad.stopped and f"step {at}:" in bad.stopped and "kept the last good state" in bad.stopped
    # a NaN loss at step `at` condemns the state it was computed on (after `at` updates): the last good
    # one is the state before it; infinite gradients at step `at` spoil only the update they drive
    good_steps = at - 1 if how == "loss" else at
    assert bad.steps_done == good_steps and f"after {good_steps} steps" in bad.stopped
    clean = train(LowRankTask(0, features=24, batch_size=32), method, config=CONFIGS.get(method, {"r": 2}), steps=good_steps,
                  lr=1e-2, device="cpu", seed=0)
    got, want = _state(bad), _state(clean)
    assert got.keys() == want.keys()
    for k in want:  # every parameter AND buffer (masks, importance scores) equals a clean run of `at` steps
        assert torch.equal(got[k], want[k]), k
    assert all(torch.isfinite(d.dense()).all() for d in bad.deltas.deltas())


def _failing_on_call(n: int):
    """``save_file`` that works ``n - 1`` times, then writes half a file and hits a full disk."""
    real, calls = atomic.save_file, {"n": 0}

    def write(tensors, tmp, metadata=None):
        calls["n"] += 1
        real(tensors, tmp, metadata=metadata)
        if calls["n"] >= n:
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_full_disk_during_a_run_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "run.safetensors"
    monkeypatch.setattr(atomic, "save_file", _failing_on_call(3))  # checkpoints at steps 2, 4, then 6 fails
    code = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "10", "--checkpoint-every", "2",
                     "--device", "cpu", "--quiet", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"error: {out}: could not write the file (No space left on device)"
    ds = load_native(out)  # the checkpoint written at step 4 is whole and loads, adapters included
    assert ds.extra["steps_done"] == 4 and len(ds.extra["trajectory"]) == 4
    assert set(load_adapters(out)) == set(ds.names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.safetensors"]  # no half-written temporary left


def test_write_permission_error_is_clear(tmp_path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
        pytest.skip("permissions are not enforced for this user")
    code = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "2", "--device", "cpu",
                     "--quiet", "-o", str(ro / "x.safetensors")])
    assert code == 2 and "could not write the file (Permission denied)" in capsys.readouterr().err
