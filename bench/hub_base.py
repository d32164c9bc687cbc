"""Does the base found by itself read only what the adapted layers need? (docs/hub.md)

    python -m bench.hub_base [--small] [--blocks 32] [--hidden 1024] [--rounds 5]

Builds, in a temporary Hugging Face cache, a Llama-shaped base of ``--blocks`` blocks (q/k/v/o and
gate/up/down, float16) saved as one safetensors shard per block with ``model.safetensors.index.json``,
and a PEFT DoRA adapter (r=16) on q_proj and v_proj of ONE block whose config names the base repo.
Reports, measured side by side in one run:

- shards opened by the load / shards in the base (target: 1 of ``--blocks``, the block's own shard);
- load + check time with the base found by itself from the cache (``load("org/adapter")``) against
  the same with ``base=<local folder of the same shards>`` (every shard header opened): the median
  over interleaved rounds of the per-round ratio (target <= 1.25: resolving costs nothing much).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from bench import summary
from bench.timing import interleaved

NAME = "hub_base"


def _put(cache: Path, repo: str, folder: Path, commit: str) -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    for src in sorted(folder.iterdir()):
        blob = root / "blobs" / hashlib.sha256(src.name.encode() + str(src.stat().st_size).encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, blob)
        link = root / "snapshots" / commit / src.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def build(tmp: Path, blocks: int, d: int, r: int = 16) -> tuple[Path, Path, int]:
    """(base folder, adapter folder, adapted block) written by hand in the layouts transformers/PEFT use."""
    from safetensors.torch import save_file

    ffn = int(d * 2.6875) // 16 * 16
    base, ad = tmp / "base", tmp / "adapter"
    base.mkdir()
    ad.mkdir()
    g = torch.Generator().manual_seed(0)
    shapes = {"self_attn.q_proj": (d, d), "self_attn.k_proj": (d, d), "self_attn.v_proj": (d, d),
              "self_attn.o_proj": (d, d), "mlp.gate_proj": (ffn, d), "mlp.up_proj": (ffn, d), "mlp.down_proj": (d, ffn)}
    wm = {}
    for b in range(blocks):
        shard = f"model-{b + 1:05d}-of-{blocks:05d}.safetensors"
        t = {f"model.layers.{b}.{m}.weight": (torch.randn(s, generator=g) * 0.02).half() for m, s in shapes.items()}
        save_file(t, base / shard, metadata={"format": "pt"})
        wm.update({k: shard for k in t})
    (base / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    blk = blocks // 2
    tensors = {}
    for m in ("q_proj", "v_proj"):
        p = f"base_model.model.model.layers.{blk}.self_attn.{m}"
        tensors[f"{p}.lora_A.weight"] = torch.randn(r, d, generator=g) * 0.02
        tensors[f"{p}.lora_B.weight"] = torch.randn(d, r, generator=g) * 0.02
        tensors[f"{p}.lora_magnitude_vector"] = torch.rand(d, generator=g) + 0.5
    save_file(tensors, ad / "adapter_model.safetensors")
    (ad / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "use_dora": True, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "org/base", "bias": "none"}))
    return base, ad, blk


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hub_base", description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--blocks", type=int, default=32)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.small:
        a.blocks, a.hidden, a.rounds = 4, 64, 3
    torch.set_num_threads(a.threads)
    from adapters.formats import load
    from adapters.formats.hub_base import hub_base

    saved = {k: os.environ.get(k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    try:
        return _run(a, load, hub_base)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(a: argparse.Namespace, load, hub_base) -> int:
    with tempfile.TemporaryDirectory(prefix="rankscope-bench-hub-") as tmp:
        tmp = Path(tmp)
        base, ad, blk = build(tmp, a.blocks, a.hidden)
        cache = tmp / "hub"
        _put(cache, "org/base", base, "a" * 40)
        _put(cache, "org/adapter", ad, "b" * 40)
        os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
        size = sum(f.stat().st_size for f in base.glob("*.safetensors"))
        print(f"base: {a.blocks} blocks x hidden {a.hidden} (float16), {size / 2**20:.1f} MiB in {a.blocks} shards; "
              f"DoRA r=16 on block {blk}'s q_proj and v_proj", flush=True)

        bw = hub_base("org/base")
        ds = load("org/adapter", base=bw)
        opened = sum(getattr(f, "_file", None) is not None for f in bw.files)
        names = sorted(ds.names)
        assert ds.config.get("hub_source") and len(names) == 2
        auto = load("org/adapter")
        assert auto.config["base_model_used"]["name"] == "org/base"
        summary.record(NAME, "shards opened by the load", f"{opened} of {len(bw.files)}", "",
                       target="1 (the adapted block's)", met=opened == 1)
        timing = interleaved({"auto base (cache)": lambda: load("org/adapter").materialize(),
                              "--base local folder": lambda: load(str(ad), base=str(base)).materialize()},
                             rounds=a.rounds, warmup=1, block_s=0.5)
        ratio = timing.ratio("auto base (cache)", "--base local folder")
        lo, hi = timing.ratio_iqr("auto base (cache)", "--base local folder")
        for n in timing.times:
            print(f"{n:>22}: {timing.median(n) * 1e3:8.1f} ms per load + check", flush=True)
        summary.record(NAME, "load time, auto base from cache / --base local folder", round(ratio, 3), "x",
                       target="<= 1.25", met=ratio <= 1.25, note=f"rounds' IQR {lo:.2f}-{hi:.2f}")
        print(f"shards opened: {opened} of {len(bw.files)}; time ratio auto/local {ratio:.3f} (IQR {lo:.2f}-{hi:.2f})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
