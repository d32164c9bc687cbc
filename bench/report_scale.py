"""Benchmark: ``rankscope report`` of a Llama-2-7B-shaped PEFT LoRA (r=16, q/k/v/o/gate/up/down × 32 blocks,
224 modules) against ``rankscope inspect`` on the same folder, measured side by side in one run.

Both commands run in process through ``app.cli.main``, alternating (inspect, report, then report,
inspect, …) so a slow patch of the machine hits both; the ratio printed is the median over rounds of
report time / inspect time. Also printed: the HTML report's size and the model map's shape.

Targets (issue 13): report ≤ 12 MB, report time ≤ 3 × inspect time.

    python -m bench.report_scale            # full size (~2 min on 2 cores)
    python -m bench.report_scale --small    # 3 blocks of tiny shapes, seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from bench import summary
from bench.inspect_scale import synthesize

SIZE_TARGET_MB = 12.0
TIME_TARGET = 3.0


def _run(argv: list[str]) -> float:
    from app import cli

    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        if cli.main(argv) != 0:
            raise RuntimeError(f"rankscope {' '.join(argv)} failed")
    return time.perf_counter() - t0


def map_shape(html_text: str) -> tuple[int, int] | None:
    """(blocks, module types) of the first heatmap of the report's first figure (the model map)."""
    start = html_text.index("id='rankscope-figures'>") + len("id='rankscope-figures'>")
    specs = json.loads(html_text[start:html_text.index("</script>", start)])
    for tr in specs[0]["fig"]["data"] if specs else []:
        if tr.get("type") == "heatmap":
            return len(tr["y"]), len(tr["x"])
    return None


def measure(folder: Path, out: Path, rounds: int = 2) -> dict[str, Any]:
    """Alternate inspect and report ``rounds`` times; times in seconds, size in bytes."""
    html = out / "report.html"
    _run(["inspect", str(folder), "--json"])  # warm imports and the page cache for both
    t_inspect, t_report = [], []
    for i in range(rounds):
        order = ("inspect", "report") if i % 2 == 0 else ("report", "inspect")
        for what in order:
            if what == "inspect":
                t_inspect.append(_run(["inspect", str(folder), "--json"]))
            else:
                t_report.append(_run(["report", str(folder), "-o", str(html), "--csv", str(out / "layers.csv")]))
    text = html.read_text(encoding="utf-8")
    ratios = [r / i for r, i in zip(t_report, t_inspect)]
    return {"report_bytes": html.stat().st_size, "t_inspect_s": min(t_inspect), "t_report_s": min(t_report),
            "report_over_inspect": statistics.median(ratios), "ratios": ratios, "map_shape": map_shape(text),
            "csv_rows": sum(1 for _ in open(out / "layers.csv", encoding="utf-8")) - 1}


def table(res: dict[str, Any]) -> str:
    mb = res["report_bytes"] / 1e6
    rows = [("rankscope inspect --json", f"{res['t_inspect_s']:.2f} s", "", ""),
            ("rankscope report", f"{res['t_report_s']:.2f} s", "", ""),
            ("report / inspect (median of rounds)", f"{res['report_over_inspect']:.2f}", f"<= {TIME_TARGET:g}",
             res["report_over_inspect"] <= TIME_TARGET),
            ("report size", f"{mb:.2f} MB", f"<= {SIZE_TARGET_MB:g} MB", mb <= SIZE_TARGET_MB),
            ("model map shape (blocks x modules)", "x".join(map(str, res["map_shape"] or ("-",))), "", ""),
            ("layers.csv rows", str(res["csv_rows"]), "", "")]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measure'.ljust(w)}  {'value':>12}  {'target':>10}  met"]
    for name, val, target, ok in rows:
        lines.append(f"{name.ljust(w)}  {val:>12}  {target:>10}  {'' if target == '' else ('yes' if ok else 'NO')}")
    lines.append("per-round ratios: " + ", ".join(f"{r:.2f}" for r in res["ratios"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny shapes (hidden 64, MLP 172, 3 blocks, r 4)")
    ap.add_argument("--rounds", type=int, default=None, help="alternations of inspect and report (default 3, small 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    hidden, mlp, layers, r = (64, 172, 3, 4) if args.small else (4096, 11008, 32, 16)
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        folder = synthesize(Path(tmp) / "lora", hidden, mlp, layers, r)
        res = measure(folder, Path(tmp), rounds=args.rounds or (1 if args.small else 3))
    shape = f"{layers} blocks x 7, {hidden}x{mlp}, r={r}"
    summary.record("report_scale", f"report size, {shape}", round(res["report_bytes"] / 1e6, 2), " MB",
                   f"<= {SIZE_TARGET_MB:g} MB", res["report_bytes"] / 1e6 <= SIZE_TARGET_MB)
    summary.record("report_scale", f"report / inspect time, {shape}", round(res["report_over_inspect"], 2), "x",
                   f"<= {TIME_TARGET:g}", res["report_over_inspect"] <= TIME_TARGET,
                   f"inspect {res['t_inspect_s']:.1f} s, report {res['t_report_s']:.1f} s")
    print(json.dumps(res) if args.json else table(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
