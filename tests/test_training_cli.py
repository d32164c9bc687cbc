"""``rankscope train`` / ``compare`` / ``samples`` end to end on tiny runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import adapters
from adapters.formats.native import load_adapters, load_native
from app import cli


def test_train_writes_a_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "run.safetensors"
    code = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "6", "--seed", "2",
                     "--device", "cpu", "--quiet", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "1024 trainable parameters" in capsys.readouterr().out
    ds = load_native(out)
    assert ds.method == "lora" and ds.names == ["layer"]
    assert ds.extra["task"] == "lowrank" and ds.extra["seed"] == 2 and ds.extra["steps_done"] == 6
    assert len(ds.extra["trajectory"]) == 6 and "recovery_error" in ds.extra["metrics"]
    torch.testing.assert_close(load_adapters(out)["layer"].delta_weight(), ds["layer"].dense())


def test_huge_learning_rate_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys) -> None:
    out = tmp_path / "nan.safetensors"
    code = cli.main(["train", "--task", "lowrank", "--method", "lora", "--steps", "20", "--lr", "1e30",
                     "--device", "cpu", "--quiet", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {out}: training stopped at step") and "Traceback" not in err
    assert "learning rate 1e+30" in err and "kept the last good state" in err
    ds = load_native(out)
    assert ds.extra["stopped"] and all(torch.isfinite(d.dense()).all() for d in ds.deltas())


@pytest.mark.parametrize("argv, where", [
    (["train", "--task", "nope", "--method", "lora", "-o", "x.safetensors"], "nope"),
    (["train", "--task", "lowrank", "--method", "vera", "-o", "x.safetensors"], "vera"),
    (["train", "--task", "lowrank", "--method", "lora", "--budget", "7", "-o", "x.safetensors"], "--budget"),
    (["train", "--task", "lowrank", "--method", "lora", "--steps", "0", "-o", "x.safetensors"], "--steps"),
    (["compare", "--task", "lowrank", "--methods", "lora,lora", "-o", "d"], "--methods"),
])
def test_mistakes_are_one_line_errors(argv, where, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {where}") and "Traceback" not in err


def test_compare_every_method(tmp_path, capsys) -> None:
    methods = sorted(adapters.METHODS)
    code = cli.main(["compare", "--task", "lowrank", "--methods", ",".join(methods), "--budget", "1024",
                     "--steps", "4", "--device", "cpu", "--quiet", "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert list(m["method"]) == methods and (m["task"] == "lowrank").all()
    extra = m["method"].map(lambda k: adapters.METHODS[k].extra_params([(128, 128)]))  # on top of the budget
    assert ((m["n_params"] - extra - 1024).abs() <= 0.05 * 1024).all() and m["recovery_error"].notna().all()
    assert all(isinstance(json.loads(c), dict) for c in m["config"])
    traj = pd.read_csv(tmp_path / "trajectory.csv")
    assert set(traj["method"]) == set(methods) and len(traj) == 4 * len(methods)
    for method in methods:
        ds = load_native(tmp_path / f"{method}.safetensors")
        assert ds.method == method and ds.extra["n_params"] == int(m.set_index("method").loc[method, "n_params"])
        snaps = sorted((tmp_path / "snapshots" / method).glob("*.safetensors"))
        assert [p.name for p in snaps][0] == "step_000000.safetensors" and len(snaps) >= 3
        assert load_native(snaps[-1])["layer"].shape == (128, 128)
