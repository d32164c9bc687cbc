"""Interleaved step timing and per-step memory, on CPU or CUDA.

Timing: every variant runs ``warmup`` steps, is calibrated to a block of ``n`` steps lasting about
``block_s`` seconds, then the variants take turns for ``rounds`` rounds (A B C, B C A, C A B, ...:
the order rotates so no variant always follows the same neighbour). Each round gives one
seconds-per-step figure per variant; a ratio is the median over rounds of the per-round ratio, so a
slow spell of the machine moves numerator and denominator together. On CUDA a block is timed with
CUDA events and synchronised once at its end; nothing inside a step waits for the GPU.

Memory: ``step_peak_bytes`` is the highest number of bytes the step allocates above what was live
when it started (activations, gradients, optimizer temporaries). On CUDA it is
``max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU it replays the allocation and
free events that ``torch.profiler`` records from torch's CPU allocator (``profile_memory=True``), in
time order, and takes the peak of the running sum. (tracemalloc does not see torch's allocator,
and RSS deltas mostly measure glibc's caching, so neither is used.)
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Timing", "interleaved", "step_peak_bytes", "state_bytes", "host_sync_free", "machine_description"]

Step = Callable[[], None]


@dataclass
class Timing:
    """Seconds per step of each variant, one figure per round (``times[name][i]`` = round i)."""

    times: dict[str, list[float]] = field(default_factory=dict)
    steps_per_block: dict[str, int] = field(default_factory=dict)

    def median(self, name: str) -> float:
        """Median seconds per step of ``name`` over the rounds."""
        return statistics.median(self.times[name])

    def ratios(self, name: str, ref: str) -> list[float]:
        """Per-round ratios time(name) / time(ref), both measured in the same round."""
        return [a / b for a, b in zip(self.times[name], self.times[ref]) if b > 0]

    def ratio(self, name: str, ref: str) -> float:
        """Median over rounds of time(name) / time(ref)."""
        r = self.ratios(name, ref)
        return statistics.median(r) if r else float("nan")

    def ratio_iqr(self, name: str, ref: str) -> tuple[float, float]:
        """(25th, 75th) percentile of the per-round ratios: the spread a reader should allow for."""
        r = sorted(self.ratios(name, ref))
        if len(r) < 2:
            return (r[0], r[0]) if r else (float("nan"), float("nan"))
        q = statistics.quantiles(r, n=4, method="inclusive")
        return q[0], q[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_block(step: Step, n: int, device: torch.device) -> float:
    """Seconds per step over ``n`` back-to-back steps."""
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / n
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def interleaved(steps: Mapping[str, Step], *, rounds: int, warmup: int, block_s: float,
                device: torch.device | str = "cpu", max_block: int = 1000) -> Timing:
    """Time every step function side by side (see the module docstring); returns a ``Timing``."""
    device = torch.device(device)
    names = list(steps)
    out = Timing(times={n: [] for n in names})
    for n in names:
        for _ in range(warmup):
            steps[n]()
        _sync(device)
        t = _time_block(steps[n], 1, device)  # calibration
        out.steps_per_block[n] = max(1, min(max_block, round(block_s / max(t, 1e-9))))
    for i in range(rounds):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            out.times[n].append(_time_block(steps[n], out.steps_per_block[n], device))
    return out


def step_peak_bytes(step: Step, device: torch.device | str = "cpu") -> int | None:
    """Peak bytes allocated by one call of ``step`` above those live before it (None if unmeasurable)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        events = prof.profiler.kineto_results.events()  # every allocation and free, with its size
        mem = sorted((e.start_ns(), e.nbytes()) for e in events
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    except (AttributeError, RuntimeError):  # the profiler's raw event API moved: say so, do not guess
        return None
    live = peak = 0
    for _, nbytes in mem:
        live += nbytes
        peak = max(peak, live)
    return peak


def state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None,
                exclude: tuple[torch.Tensor, ...] = ()) -> int:
    """Bytes a variant keeps between steps beyond the frozen base: its parameters and buffers
    (other than the tensors in ``exclude``, the shared base weight and bias) and its optimizer state."""
    skip = {t.data_ptr() for t in exclude}
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.data_ptr() in skip or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    if optimizer is not None:
        for st in optimizer.state.values():
            for v in st.values():
                if isinstance(v, torch.Tensor) and v.data_ptr() not in seen:
                    seen.add(v.data_ptr())
                    total += v.numel() * v.element_size()
    return total


def host_sync_free(step: Step, device: torch.device | str) -> bool | None:
    """On CUDA: run one step with ``torch.cuda.set_sync_debug_mode("error")`` and say whether it
    completed without a host synchronisation (an ``.item()``, a nonzero(), a CPU read of a GPU
    tensor). None on CPU, where the question does not arise."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    prev = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        ok = True
    except RuntimeError:
        ok = False
    finally:
        torch.cuda.set_sync_debug_mode(prev)
    torch.cuda.synchronize(device)
    return ok


def machine_description(device: torch.device | str = "cpu") -> str:
    """'NVIDIA H100 80GB HBM3' on CUDA; on CPU the model name and core count, e.g. 'AMD EPYC, 2 cores'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"
