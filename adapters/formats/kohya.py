"""kohya-ss / sd-scripts LoRA files (and LyCORIS LoCon / LoHa / LoKr in the same naming).

Keys are ``<lora_name>.lora_down.weight`` (r, in[, k, k]), ``<lora_name>.lora_up.weight`` (out, r[, 1, 1]),
``<lora_name>.alpha`` (0-dim), optionally ``.lora_mid.weight`` (r, r, kh, kw) for Tucker LoCon, where
``lora_name`` is a prefix (``lora_unet``, ``lora_te``, ``lora_te1``...) plus the module path with every
``.`` replaced by ``_``. ΔW = up@down · alpha/r with r = down.shape[0]; a missing alpha means scale 1.
LyCORIS LoHa: ((w1a@w1b) ⊙ (w2a@w2b)) · alpha/r; LoKr: kron(w1, w2) · alpha/r, but scale 1 when both
factors are full (LyCORIS semantics, unlike PEFT). Conv weights are flattened to (out, in·kh·kw).

Names: with a base state dict, each kohya name is mapped back to the unique base module whose path
mangles to it (underscores are ambiguous, so only an exact, unique match is used); otherwise the
kohya name is kept as the layer name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..delta import CheckpointError, DeltaSet, LayerDelta, LowRank
from .basemodel import BaseWeights
from .lazy import ModuleProblem, finish
from .peft_common import fp
from .safetensors_io import TensorFile

__all__ = ["load_kohya", "kohya_name_map", "PREFIXES"]

PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_te_", "lora_transformer_", "lycoris_", "lora_")
_FIELDS = ("lora_down.weight", "lora_up.weight", "lora_mid.weight", "alpha", "dora_scale", "hada_w1_a", "hada_w1_b",
           "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2", "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2",
           "lokr_w2_a", "lokr_w2_b", "lokr_t2")


def _split(key: str) -> tuple[str, str] | None:
    for f in _FIELDS:
        if key.endswith("." + f):
            return key[: -len(f) - 1], f
    return None


def kohya_name_map(names: list[str], base: BaseWeights) -> tuple[dict[str, str], list[str]]:
    """``{kohya name: module path}`` for the names that map to exactly one base module; and notes."""
    mangled: dict[str, list[str]] = {}
    for key in base.keys():
        if key.endswith(".weight"):
            module = key[: -len(".weight")]
            mangled.setdefault(module.replace(".", "_"), []).append(module)
    out: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        stem = next((name[len(p):] for p in PREFIXES if name.startswith(p)), name)
        hits = mangled.get(stem, [])
        if not hits:  # the base state dict may carry a prefix (text_model., model.diffusion_model....)
            hits = [m for k, ms in mangled.items() if k.endswith("_" + stem) for m in ms]
        if len(hits) == 1:
            out[name] = hits[0]
        elif hits:
            notes.append(f"{name}: matches {len(hits)} base modules ({', '.join(hits[:3])}); kohya name kept")
        else:
            notes.append(f"{name}: no base module mangles to this name; kohya name kept")
    return out, notes


def _scale(alpha: Tensor | None, r: int) -> tuple[float, float]:
    if alpha is None or r == 0:
        return 1.0, float(r)
    a = float(fp(alpha).reshape(-1)[0])
    return a / r, a


def _build(name: str, label: str, parts: dict[str, str], tf: TensorFile) -> LayerDelta:
    t = {k: tf.get(v) for k, v in parts.items()}
    alpha = t.get("alpha")
    n_params = sum(v.numel() for k, v in t.items() if k != "alpha")
    meta: dict[str, Any] = {"kohya_name": name}
    if "dora_scale" in t:
        raise ModuleProblem("DoRA (dora_scale) in kohya/LyCORIS files is not supported")
    if "lora_down.weight" in t or "lora_up.weight" in t:
        if "lora_down.weight" not in t or "lora_up.weight" not in t:
            raise ModuleProblem("lora_down without lora_up" if "lora_down.weight" in t else "lora_up without lora_down")
        down, up = t["lora_down.weight"], t["lora_up.weight"]
        r = int(down.shape[0])
        scale, a = _scale(alpha, r)
        meta.update(r=r, alpha=a, scale=scale, alpha_stored=alpha is not None)
        if down.dim() > 2:
            meta["kernel_size"] = list(down.shape[2:]) if "lora_mid.weight" not in t else list(t["lora_mid.weight"].shape[2:])
        if "lora_mid.weight" in t:  # LyCORIS Tucker: down 1x1, mid (r, r, kh, kw), up 1x1
            mid = fp(t["lora_mid.weight"])
            w = torch.einsum("ijkl,ip,jr->prkl", mid, fp(up).flatten(1).T, fp(down).flatten(1))
            dense = w.flatten(1) * scale
            return LayerDelta(label, tuple(dense.shape), dense_part=dense, method="kohya-locon", n_params=n_params, meta=meta)
        B, A = up.flatten(1), down.flatten(1)
        if up.dim() > 2 and any(s != 1 for s in up.shape[2:]):
            raise ModuleProblem(f"lora_up of shape {tuple(up.shape)} is not a 1x1 convolution")
        if B.shape[1] != A.shape[0]:
            raise ModuleProblem(f"inner dimensions disagree: lora_up {tuple(up.shape)}, lora_down {tuple(down.shape)}")
        return LayerDelta(label, (int(B.shape[0]), int(A.shape[1])), low_rank=LowRank(B, A, scale), method="kohya-lora",
                          n_params=n_params, meta=meta)
    w = {k: fp(v) for k, v in t.items()}
    try:
        if "hada_w1_a" in w:
            r = int(w["hada_w1_b"].shape[0])
            scale, a = _scale(alpha, r)
            if "hada_t1" in w:
                p = [torch.einsum("ijkl,jr,ip->prkl", w[f"hada_t{i}"], w[f"hada_w{i}_b"], w[f"hada_w{i}_a"]) for i in (1, 2)]
                dense = (p[0] * p[1]).flatten(1) * scale
            else:
                dense = (w["hada_w1_a"] @ w["hada_w1_b"]) * (w["hada_w2_a"] @ w["hada_w2_b"]) * scale
            meta.update(r=r, alpha=a, scale=scale)
            return LayerDelta(label, tuple(dense.shape), dense_part=dense, method="lycoris-loha", n_params=n_params, meta=meta)
        w1 = w["lokr_w1"] if "lokr_w1" in w else w["lokr_w1_a"] @ w["lokr_w1_b"]
        if "lokr_w2" in w:
            w2 = w["lokr_w2"]
        elif "lokr_t2" in w:
            w2 = torch.einsum("ijkl,ip,jr->prkl", w["lokr_t2"], w["lokr_w2_a"], w["lokr_w2_b"])
        else:
            w2 = w["lokr_w2_a"] @ w["lokr_w2_b"]
    except KeyError as e:
        raise ModuleProblem(f"missing {e.args[0]}") from None
    except RuntimeError as e:
        raise ModuleProblem(f"factor shapes disagree ({str(e).splitlines()[0][:120]})") from None
    decomposed = [k for k in ("lokr_w1_b", "lokr_w2_b") if k in w]
    r = int(w[decomposed[0]].shape[0]) if decomposed else 0
    scale, a = _scale(alpha, r) if decomposed else (1.0, float("nan"))
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    dense = torch.kron(w1, w2.contiguous()).flatten(1) * scale
    meta.update(r=r, scale=scale, semantics="lycoris (scale 1 when both factors are full)")
    return LayerDelta(label, tuple(dense.shape), dense_part=dense, method="lycoris-lokr", n_params=n_params, meta=meta)


def load_kohya(path: Path, tf: TensorFile, base: BaseWeights | None, *, check: bool = True) -> DeltaSet:
    groups: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for key in tf.keys():
        hit = _split(key)
        if hit is None:
            other.append(key)
        else:
            groups.setdefault(hit[0], {})[hit[1]] = key
    groups = {n: g for n, g in groups.items() if set(g) - {"alpha"}}
    if not groups:
        raise CheckpointError(path, "no lora_down / lora_up (or LyCORIS) tensors found")
    warns: list[str] = []
    if other:
        warns.append(f"{len(other)} tensor(s) not understood and ignored: " + ", ".join(other[:5]))
    labels = {n: n for n in groups}
    if base is not None:
        mapping, notes = kohya_name_map(list(groups), base)
        labels.update(mapping)
        warns.extend(notes)
    layers = {}
    for name, parts in groups.items():
        layers[labels[name]] = (lambda n=name, p=parts: _build(n, labels[n], p, tf))
    meta = {k: v for k, v in tf.metadata.items() if k.startswith(("ss_network", "ss_base_model", "modelspec"))}
    config = {"metadata": meta, "names_mapped": base is not None}
    module = tf.metadata.get("ss_network_module", "")
    return finish(layers, source=str(path), method="kohya-lora" if "lycoris" not in module else "lycoris",
                  format="kohya", config=config, warnings=warns, check=check)
