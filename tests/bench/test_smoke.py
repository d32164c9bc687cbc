"""The benchmarks cannot rot: each one's ``main`` runs with ``--small`` (tiny sizes, seconds).

No timing assertions (machines are noisy); the checks are on values the benchmarks compute that do
not depend on speed: parameter counts against the methods' formulas, bytes of optimizer state,
peak-memory accounting on a step with a known allocation, and the ratio arithmetic.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch

import adapters
from bench import run as bench_run
from bench import summary, train_step
from bench.timing import Timing, interleaved, state_bytes, step_peak_bytes
from bench.variants import DenseMaskedRosa, build, matched_specs


def test_step_peak_bytes_sees_a_known_allocation() -> None:
    n = 1 << 20  # 4 MiB of float32

    def step() -> None:
        a = torch.ones(n)
        b = torch.ones(n)  # a and b live together: the peak is 8 MiB
        del a, b
        c = torch.ones(n // 2)  # 2 MiB after both were freed: does not raise the peak
        del c

    peak = step_peak_bytes(step, "cpu")
    assert peak is not None and 8 * 2**20 <= peak < 8 * 2**20 + 64 * 1024


def test_timing_ratios_are_per_round_medians() -> None:
    t = Timing(times={"a": [1.0, 2.0, 10.0], "b": [2.0, 4.0, 5.0]})
    assert t.ratios("a", "b") == [0.5, 0.5, 2.0]
    assert t.ratio("a", "b") == 0.5  # the slow round 3 of "a" does not move the median
    assert t.median("a") == 2.0
    lo, hi = t.ratio_iqr("a", "b")
    assert lo == 0.5 and hi == 1.25


def test_interleaved_runs_every_variant_every_round() -> None:
    calls: list[str] = []
    steps = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    t = interleaved(steps, rounds=3, warmup=1, block_s=0.0, device="cpu")
    assert all(len(v) == 3 for v in t.times.values())
    timed = calls[6:]  # 3 warm-up + 3 calibration calls first
    assert timed == list("abc") + list("bca") + list("cab")  # rotating order


def test_budget_matching_follows_the_formulas() -> None:
    specs, _ = matched_specs(1024, 1024, rank=32, densities=(0.005, 0.01, 0.05), nola_r=8, nola_basis=64)
    by = {s.key: s for s in specs}
    b = 32 * 2048
    assert by["peft_lora"].n_params == b and by["lora"].n_params == b
    for key, s in by.items():
        if s.kind in adapters.METHODS:
            cfg = adapters.make_config(s.kind, **s.config)
            assert s.n_params == cfg.n_params(1024, 1024)
        if key.startswith("rosa"):  # RoSA: nnz + r(in+out), r from the remainder of the budget
            nnz = math.floor(s.config["density"] * 1024 * 1024)
            r = max(0, round((b - nnz) / 2048))
            assert s.config["r"] == r and s.n_params == r * 2048 + nnz
    if "mora" in adapters.METHODS:
        assert by["mora"].n_params == 256**2  # r̂ = ⌊√(2048·32)⌋ = 256


def test_dense_masked_rosa_has_exact_density_and_matches_its_formula() -> None:
    base = torch.nn.Linear(40, 30)
    m = DenseMaskedRosa(base, r=3, density=0.05, generator=torch.Generator().manual_seed(0))
    assert int(m.mask.sum()) == math.floor(0.05 * 40 * 30)
    with torch.no_grad():
        m.S.normal_()
        m.lora_B.normal_()
    x = torch.randn(5, 40)
    dw = m.mask * m.S + m.scale * m.lora_B @ m.lora_A
    torch.testing.assert_close(m(x), base(x) + x @ dw.t(), rtol=1e-5, atol=1e-5)
    m(x).sum().backward()
    assert torch.all(m.S.grad[m.mask == 0] == 0)


def test_state_bytes_counts_adam_state() -> None:
    base = torch.nn.Linear(64, 32)
    spec = [s for s in matched_specs(64, 32, rank=4, densities=(), nola_r=2, nola_basis=4)[0] if s.key == "lora"][0]
    v = build(spec, base)
    step = train_step.make_step(v, torch.randn(3, 64, requires_grad=True), torch.randn(3, 32))
    step()
    n = 4 * (64 + 32)
    # parameters + Adam's exp_avg and exp_avg_sq (float32), plus one scalar step tensor per parameter
    assert state_bytes(v.module, step.optimizer, (base.weight, base.bias)) == 3 * 4 * n + 2 * 4


@pytest.mark.slow
def test_train_step_small_runs_every_registered_method(tmp_path) -> None:
    out = tmp_path / "ts.json"
    summary.take()
    assert train_step.main(["--small", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for size in res["results"]:
        keys = {r["key"] for r in size["rows"]}
        assert {"frozen", "peft_lora", "lora"} <= keys
        assert all(m in {k.split("@")[0].split("_")[0] for k in keys} for m in adapters.METHODS)
        for r in size["rows"]:
            assert r["ms"] > 0 and r["state_mib"] >= 0
            assert r["peak_mib"] is not None and r["peak_mib"] > 0
        assert {t["variant"] for t in size["targets"]} >= {"lora"}
    rows = summary.take()
    assert any(r.figure.endswith("lora / peft_lora time") for r in rows)


@pytest.mark.slow
def test_run_prints_summary_and_reports_missing_benchmarks(capfd) -> None:
    rc = bench_run.main(["--small", "--only", "train_step", "--methods", "lora"])
    out = capfd.readouterr().out
    assert rc == 0
    assert "SUMMARY" in out and "train_step" in out and "ok" in out


def test_run_reports_import_errors(monkeypatch, capfd) -> None:
    def boom(name: str):
        raise ImportError("simulated: missing dependency")

    monkeypatch.setattr(bench_run.importlib, "import_module", boom)
    assert bench_run._child("train_step", []) == bench_run.IMPORT_ERROR
    assert "simulated: missing dependency" in capfd.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in bench_run.BENCHMARKS if n not in ("train_step", "app_pages")])
def test_other_benchmarks_small(name: str, tmp_path, monkeypatch) -> None:
    if importlib.util.find_spec(f"bench.{name}") is None:
        pytest.skip(f"bench/{name}.py is not there yet")
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(f"bench.{name}")
    rc = mod.main(["--small"])
    assert rc in (0, None)


@pytest.mark.slow
def test_app_pages_small_renders_the_inspect_page(tmp_path, monkeypatch) -> None:
    from bench import app_pages

    monkeypatch.setenv("RANKSCOPE_SAMPLES", "")  # the benchmark points it at its folders; restored after
    summary.take()
    out = tmp_path / "ap.json"
    assert app_pages.main(["--small", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    samples = sorted(p.name for p in (bench_run.REPO / "sample_checkpoints").glob("*.safetensors"))[:2]
    assert sorted(res["samples"]) == samples
    assert res["large"]["layers"] == 2 * 7  # 2 layers × 7 projections, every one in the Inspect table
    assert all(v["first_s"] > 0 and v["warm_s"] > 0 for v in res["samples"].values())
    rows = summary.take()
    assert [r.target for r in rows] == ["< 2 s", "< 5 s", ""] and all(r.bench == "app_pages" for r in rows)
