"""The bundled sample checkpoints: every method trained on two tasks (its home task and digits-shift),
a transformer-shaped LoRA (the uuid task's model with 8 blocks, all 56 linear layers adapted, trained
for real), plus one LoRA folder written by the real ``peft`` package, and a README table describing them.

Deterministic: CPU, seed 0, one torch thread (so the reduction order, and the bytes, repeat on a
given machine). ``generate(out_dir)`` is what ``rankscope samples`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..registry import METHODS

__all__ = ["PLAN", "PEFT_FOLDER", "TRANSFORMER", "generate", "peft_sample", "readme", "transformer_sample"]

#: (method, task) pairs, in README order: each method on its home task and on digits-shift
PLAN: tuple[tuple[str, str], ...] = (
    ("lora", "lowrank"), ("lora", "digits-shift"),
    ("rosa", "lowrank-plus-sparse"), ("rosa", "digits-shift"),
    ("nola", "lowrank"), ("nola", "digits-shift"),
    ("mora", "memorize"), ("mora", "digits-shift"),
    ("roselora", "sparse-edit"), ("roselora", "digits-shift"),
)
PEFT_FOLDER = "peft_lora_digits"
#: the transformer-shaped sample: method, task, the task's sizes, file name
TRANSFORMER: tuple[str, str, dict[str, int], str] = ("lora", "uuid", {"n_blocks": 8}, "lora_uuid_8blocks.safetensors")
SEED = 0
TRAJECTORY_ROWS = 100


def _file(method: str, task: str) -> str:
    return f"{method}_{task}.safetensors"


def peft_sample(out_dir: str | Path, steps: int = 300) -> dict[str, Any]:
    """Train LoRA with the real ``peft`` package on digits-shift and ``save_pretrained`` it to
    ``out_dir/peft_lora_digits``. Raises ``ImportError`` (naming peft) when it is not installed."""
    try:
        import peft
    except ImportError as e:  # pragma: no cover - exercised only without peft
        raise ImportError("the peft package is not installed (pip install peft); the PEFT sample folder needs it") from e
    from .tasks import make_task

    task = make_task("digits-shift", SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(task.targets), lora_dropout=0.0)
        model = peft.get_peft_model(task.model, cfg)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=task.default_lr)
        for step in range(steps):
            opt.zero_grad()
            task.loss(model, task.batch(step)).backward()
            opt.step()
    model.eval()
    metrics = task.evaluate(model)
    folder = Path(out_dir) / PEFT_FOLDER
    model.save_pretrained(str(folder))
    _sort_target_modules(folder / "adapter_config.json")
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"file": PEFT_FOLDER + "/", "method": "lora (peft)", "task": "digits-shift", "n_params": n,
            "metrics": metrics, "config": {"r": 4, "lora_alpha": 8, "steps": steps}}


def transformer_sample(out_dir: str | Path, steps: int | None = None, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Train ``TRANSFORMER`` (LoRA on every linear layer of the 8-block uuid transformer, the task's
    budget) and write it to ``out_dir``; ``sizes`` override the task's (for quick checks)."""
    from ..formats.native import save_native
    from .loop import train
    from .tasks import make_task

    method, task_name, task_sizes, file = TRANSFORMER
    task = make_task(task_name, SEED, **{**task_sizes, **(sizes or {})})
    res = train(task, method, device="cpu", seed=SEED, steps=steps)
    if res.stopped:
        raise RuntimeError(f"sample {file}: {res.stopped}")
    save_native(Path(out_dir) / file, res.deltas, modules=res.modules(), extra=res.extra(TRAJECTORY_ROWS, timings=False))
    return {"file": file, "method": method, "task": task_name, "n_params": res.n_params, "metrics": res.metrics,
            "config": res.config, "layers": len(task.targets), "blocks": task.cfg.n_blocks}


def _config_text(config: dict[str, Any]) -> str:
    """``r=4, keep=0.1``; a per-layer config shows each varying value as ``r=3/5/5 (per layer)``."""
    if "per_layer" in config:
        layers = list(config["per_layer"].values())
        keys = list(layers[0])
        return ", ".join(f"{k}={'/'.join(str(c[k]) for c in layers)}" for k in keys) + " (per layer)"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())


def _sort_target_modules(path: Path) -> None:
    """peft writes ``target_modules`` from a set (arbitrary order); sort it so the file repeats.
    The JSON stays in peft's own layout (indent 2, sorted keys)."""
    import json

    from ..formats.atomic import atomic_write_bytes

    cfg = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    atomic_write_bytes(path, (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode())


def readme(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """The sample folder's README.md: one table row per file."""
    from .tasks import TASKS

    lines = ["# Sample checkpoints", "",
             "Regenerated deterministically by `rankscope samples` (CPU, seed 0, one thread); see the "
             "training section of the top-level README. Each `.safetensors` file is a RankScope checkpoint "
             "whose manifest `extra` holds the task, metrics and training trajectory.", "",
             "| file | method | task | params | config | headline metrics |", "|---|---|---|---|---|---|"]
    for r in rows:
        head = TASKS[r["task"]].headline
        shown = [k for k in head if k in r["metrics"]] or list(r["metrics"])
        metrics = ", ".join(f"{k} {r['metrics'][k]:.3f}" for k in shown)
        cfg = _config_text(r["config"])
        task = f"{r['task']} ({r['blocks']} blocks, {r['layers']} layers)" if "blocks" in r else r["task"]
        lines.append(f"| `{r['file']}` | {r['method']} | {task} | {r['n_params']:,} | {cfg} | {metrics} |")
    lines += ["", "Tasks:", ""]
    lines += [f"- `{name}`: {cls.description}" for name, cls in TASKS.items()]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def generate(out_dir: str | Path, methods: list[str] | None = None,
             progress: Callable[[str], None] | None = None, with_peft: bool = True,
             steps: int | None = None, transformer_sizes: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Train and write every planned sample into ``out_dir`` (and its README.md); ``steps``
    overrides the tasks' step counts and ``transformer_sizes`` the transformer sample's model (for
    quick checks).

    Returns (rows, notes): one row per file written; notes say what was skipped and why.
    """
    from ..formats.atomic import atomic_write_bytes
    from ..formats.native import save_native
    from .loop import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = methods if methods is not None else sorted({m for m, _ in PLAN})
    notes = [f"method {m!r} is not available in this build; its samples were skipped" for m in wanted if m not in METHODS]
    rows: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for method, task in PLAN:
            if method not in wanted or method not in METHODS:
                continue
            if progress:
                progress(f"{method} on {task}")
            res = train(task, method, device="cpu", seed=SEED, steps=steps)
            if res.stopped:
                raise RuntimeError(f"sample {method}/{task}: {res.stopped}")
            save_native(out / _file(method, task), res.deltas, modules=res.modules(), extra=res.extra(TRAJECTORY_ROWS, timings=False))
            rows.append({"file": _file(method, task), "method": method, "task": task, "n_params": res.n_params,
                         "metrics": res.metrics, "config": res.config})
        if TRANSFORMER[0] in wanted and TRANSFORMER[0] in METHODS:
            if progress:
                progress(f"{TRANSFORMER[0]} on the {TRANSFORMER[2]['n_blocks']}-block {TRANSFORMER[1]} transformer")
            rows.append(transformer_sample(out, steps=steps, sizes=transformer_sizes))
        if with_peft:
            if progress:
                progress("lora with the peft package on digits-shift")
            try:
                rows.append(peft_sample(out) if steps is None else peft_sample(out, steps=steps))
            except ImportError as e:
                notes.append(str(e))
    finally:
        torch.set_num_threads(threads)
    atomic_write_bytes(out / "README.md", readme(rows, notes).encode())
    return rows, notes
