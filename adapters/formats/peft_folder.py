"""Load a Hugging Face PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).

The ``peft_type`` picks a tuner from ``TUNERS``: the parameter names it stores per module, its
shared tensors, and a builder ``(module, slots, ctx) -> LayerDelta``. Keys that are not adapter
factors are handled here for every tuner: ``modules_to_save`` copies (reported; a dense delta when
the base is given) and trained base biases (``bias="all"|"lora_only"``, folded in as a bias change
when the base is given).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..delta import CheckpointError, DeltaSet, LayerDelta
from .basemodel import BaseWeights
from .lazy import ModuleProblem, finish
from .peft_common import CONFIG_NAME, Ctx, fp, group_keys, list_adapters, read_config, weights_file
from .peft_lora import LORA_PARAMS, build_lora

__all__ = ["Tuner", "TUNERS", "load_peft", "load_peft_weights"]


@dataclass(frozen=True)
class Tuner:
    params: tuple[str, ...]
    build: Callable[[str, dict[str, str], Ctx], LayerDelta]
    method: str
    shared: tuple[str, ...] = ()
    needs_base: str | None = None  # why the whole file needs W0 (checked before reading modules)


TUNERS: dict[str, Tuner] = {"LORA": Tuner(LORA_PARAMS, build_lora, "lora")}


def _register_more() -> None:
    from .official import OFFICIAL_TUNERS
    from .peft_tuners import MORE_TUNERS

    for k, v in {**MORE_TUNERS, **OFFICIAL_TUNERS}.items():
        TUNERS.setdefault(k, Tuner(**v))


def _pick_tuner(ptype: str, cfg: dict[str, Any]) -> Tuner | None:
    """The tuner for ``peft_type``; the MoRA and NOLA forks keep ``LORA`` and add a flag."""
    if ptype == "LORA" and cfg.get("use_mora"):
        return TUNERS["MORA"]
    if ptype == "LORA" and cfg.get("use_nola"):
        return TUNERS["NOLA"]
    return TUNERS.get(ptype) if ptype not in ("MORA", "NOLA") else None


_DORA_NEEDS = "DoRA adapters need the base model: ΔW = m/‖W+s·BA‖·(W+s·BA) − W depends on W (pass base=... / --base)"

# LoRA variants that change the maths (formats.md 1.2 / 1.4)
_UNSUPPORTED_LORA = {"use_bdlora": "BD-LoRA", "kasa_config": "KaSA", "use_qalora": "QA-LoRA",
                     "arrow_config": "Arrow", "alora_invocation_tokens": "aLoRA"}


def _lora_checks(cfg: dict[str, Any], path: Path, base: BaseWeights | None, warns: list[str]) -> None:
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.split("_")[0].lower() in ("pissa", "olora", "corda", "loftq"):
        warns.append(f"init_lora_weights={init!r}: the base saved with this adapter is a residual, so s·B@A is "
                     "not the fine-tuning update (convert with path_initial_model_for_weight_conversion)")
    for key, label in _UNSUPPORTED_LORA.items():
        if cfg.get(key):
            warns.append(f"{label} ({key}) changes the update's formula; shown as plain LoRA s·B@A (approximate)")
    if cfg.get("use_dora") and base is None:
        raise CheckpointError(path, _DORA_NEEDS)


def _matches(module: str, names: Any) -> bool:
    if not names:
        return False
    names = [names] if isinstance(names, str) else list(names)
    return any(module == n or module.endswith("." + n) for n in names if isinstance(n, str))


def _extra_keys(ctx: Ctx, warns: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Split the keys no tuner claimed: ``(modules_to_save {module: {leaf: key}}, trained biases {module: key})``."""
    saved: dict[str, dict[str, str]] = {}
    biases: dict[str, str] = {}
    unknown: list[str] = []
    for key in ctx.grouped.other:
        bare = key
        for pre in ("base_model.model.", "base_model."):
            if bare.startswith(pre):
                bare = bare[len(pre):]
                break
        module, _, leaf = bare.rpartition(".")
        if module.endswith(".base_layer") and leaf == "bias":
            biases[module[: -len(".base_layer")]] = key
        elif module.endswith(".modules_to_save.default") or _matches(module, ctx.config.get("modules_to_save")):
            module = module.replace(".modules_to_save.default", "")
            saved.setdefault(module, {})[leaf] = key
        elif ".lora_" in key or "_spa." in key:
            unknown.append(key)
        elif module and leaf in ("weight", "bias"):  # plain module tensors that nobody declared
            saved.setdefault(module, {})[leaf] = key
        else:
            unknown.append(key)
    if unknown:
        warns.append(f"{len(unknown)} tensor(s) not understood and ignored: " + ", ".join(unknown[:5]))
    return saved, biases


def _with_bias(loader: Callable[[], LayerDelta], module: str, key: str, ctx: Ctx) -> Callable[[], LayerDelta]:
    def load() -> LayerDelta:
        d = loader()
        b0 = ctx.base.tensor(module, "bias") if ctx.base is not None else None
        if b0 is None:
            return d
        b = fp(ctx.get(key)) - fp(b0)
        if tuple(b.shape) != (d.shape[0],):
            raise ModuleProblem(f"trained bias of shape {tuple(b.shape)} for {d.shape[0]} outputs")
        return dataclasses.replace(d, bias=b if d.bias is None else d.bias + b)

    return load


def _saved_loader(module: str, leaves: dict[str, str], ctx: Ctx) -> Callable[[], LayerDelta]:
    def load() -> LayerDelta:
        assert ctx.base is not None
        W1, W0 = ctx.get(leaves["weight"]), ctx.base.tensor(module)
        if W0 is None or tuple(W0.shape) != tuple(W1.shape):
            raise ModuleProblem("modules_to_save copy does not match the base weight's shape")
        W1, W0 = W1.reshape(W1.shape[0], -1), W0.reshape(W0.shape[0], -1)
        bias = None
        if "bias" in leaves and ctx.base.tensor(module, "bias") is not None:
            bias = fp(ctx.get(leaves["bias"])) - fp(ctx.base.tensor(module, "bias"))
        return LayerDelta(module, tuple(W1.shape), dense_part=fp(W1) - fp(W0), bias=bias, base=W0,
                          method="full", n_params=sum(ctx.tf.shape(k)[0] if len(ctx.tf.shape(k)) == 1 else
                                                      W1.numel() for k in leaves.values()),
                          meta={"modules_to_save": True})

    return load


def _builder(tuner: Tuner, module: str, slots: dict[str, str], ctx: Ctx) -> Callable[[], LayerDelta]:
    return lambda: tuner.build(module, slots, ctx)


def load_peft_weights(path: Path, tf: Any, cfg: dict[str, Any], base: BaseWeights | None, *,
                      check: bool = True, warnings: list[str] | None = None) -> DeltaSet:
    """The ``DeltaSet`` of PEFT weights ``tf`` read under config ``cfg`` (dispatch on ``peft_type``)."""
    _register_more()
    warns = list(warnings or [])
    ptype = str(cfg.get("peft_type", "")).upper()
    tuner = _pick_tuner(ptype, cfg)
    if tuner is None:
        raise CheckpointError(path, f"unsupported peft_type {ptype[:40]!r} (supported: {', '.join(sorted(set(TUNERS) - {'MORA', 'NOLA'}))}, "
                                    "and LORA with use_mora / use_nola)")
    if tuner.method == "nola":
        from .official import _NOLA_NOTE
        if _NOLA_NOTE not in warns:
            warns.append(_NOLA_NOTE)
    base_used = None
    why = tuner.needs_base or (_DORA_NEEDS if tuner.method == "lora" and cfg.get("use_dora") else None)
    if base is None and why:  # the base found by itself: adapter_config.json's base_model_name_or_path
        from .hub_base import BASE_FIELD, find_base

        base = find_base(path, cfg, why)
        base_used = {"field": BASE_FIELD, "name": cfg.get(BASE_FIELD), "resolved": base.label}
    if tuner.method == "lora":
        _lora_checks(cfg, path, base, warns)
    if tuner.needs_base and base is None:
        raise CheckpointError(path, tuner.needs_base)
    ctx = Ctx(path=path, tf=tf, config=cfg, base=base, grouped=group_keys(tf.keys(), tuner.params, tuner.shared))
    if not ctx.grouped.modules:
        raise CheckpointError(path, f"no {ptype} adapter tensors found (keys like <module>.{tuner.params[0]})")
    saved, biases = _extra_keys(ctx, warns)
    layers: dict[str, Callable[[], LayerDelta]] = {}
    for module, slots in ctx.grouped.modules.items():
        loader = _builder(tuner, module, slots, ctx)
        if module in biases:
            loader = _with_bias(loader, module, biases.pop(module), ctx)
        layers[module] = loader
    if biases:
        warns.append(f"trained biases saved for {len(biases)} module(s) without an adapter: " + ", ".join(list(biases)[:5]))
    if ctx.base is None and any(k.endswith(".base_layer.bias") for k in ctx.grouped.other):
        warns.append("trained base-layer biases are saved (bias='all' or 'lora_only'); their change needs the base model")
    for module, leaves in saved.items():
        if ctx.base is not None and "weight" in leaves:
            layers.setdefault(module, _saved_loader(module, leaves, ctx))
        else:
            warns.append(f"{module}: fully trained copy (modules_to_save), not a low-rank update; pass the base "
                         "model to see it as a dense delta")
    config = dict(cfg)
    config["modules_to_save_found"] = sorted(saved)
    if base_used:
        config["base_model_used"] = base_used
    method = "dora" if ptype == "LORA" and cfg.get("use_dora") else tuner.method
    return finish(layers, source=str(path), method=method, format="peft", config=config, warnings=warns,
                  check=check)


def load_peft(folder: Path, base: BaseWeights | None, adapter: str | None = None, *, check: bool = True) -> DeltaSet:
    """Load one adapter of a PEFT folder; several adapters need ``adapter=`` unless ``default`` exists."""
    adapters = list_adapters(folder)
    if not adapters:
        raise CheckpointError(folder, f"no {CONFIG_NAME} in the folder or its sub-folders")
    warns: list[str] = []
    if adapter is None:
        if len(adapters) > 1 and "default" not in adapters:
            raise CheckpointError(folder, f"the folder holds several adapters ({', '.join(adapters)}); choose one with adapter=NAME")
        adapter = "default" if "default" in adapters else next(iter(adapters))
        if len(adapters) > 1:
            warns.append(f"the folder holds adapters {', '.join(adapters)}; loaded {adapter!r} (choose with adapter=NAME)")
    elif adapter not in adapters:
        raise CheckpointError(folder, f"no adapter named {adapter!r} (the folder holds {', '.join(adapters)})")
    where = adapters[adapter]
    cfg = read_config(where / CONFIG_NAME)
    tf = weights_file(where)
    ds = load_peft_weights(where, tf, cfg, base, check=check, warnings=warns)
    ds.config["adapter_name"] = adapter
    ds.config["adapters"] = list(adapters)
    return ds
