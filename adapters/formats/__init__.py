"""Files <-> ``DeltaSet``.

``load(path, base=None)`` reads whatever a user brings (see ``sniff``): RankScope's own file
(``native``), a Hugging Face PEFT folder or adapter file (``peft_folder``: LoRA, DoRA, AdaLoRA, VeRA,
LoHa, LoKr, VB-LoRA, RandLoRA, SHiRA, FourierFT, IA3, OFT), kohya / LyCORIS files (``kohya``), the
official RoSA / MoRA / NOLA formats (``official``), full fine-tune diffs (``diff``) and zip archives
(``zipsafe``). ``export_lora`` writes any ``DeltaSet`` as a PEFT LoRA folder.
"""

from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path
from typing import Any

from ..delta import CheckpointError, DeltaSet
from .hub import is_repo_id, resolve_source
from .native import load_native, save_native

__all__ = ["load", "load_native", "save_native", "list_adapters", "resolve_source", "is_repo_id", "base_note",
           "CheckpointError"]


def list_adapters(path: str | os.PathLike) -> list[str]:
    """The adapter names of a PEFT folder (``default`` is the folder itself)."""
    from .peft_common import list_adapters as _list

    p = Path(path)
    return list(_list(p)) if p.is_dir() else []


def load(path: str | os.PathLike, base: Any = None, *, adapter: str | None = None, check: bool = True) -> DeltaSet:
    """The ``DeltaSet`` held by ``path`` (a folder, a ``.safetensors`` / weights-only torch file, or a ``.zip``).

    Args:
        path: what to read; its kind is sniffed from names, headers and keys. A Hugging Face Hub repo id
            (``org/name``, ``org/name@rev``, ``org/name/subfolder``, ``hf://...``) is read from the local
            cache, or downloaded into it (``hub.resolve``); a local path of the same spelling wins.
        base: the base model (path, Hub repo id, state dict or ``nn.Module``) for formats whose ΔW depends on W0
            (DoRA, IA3, OFT), on base shapes (VeRA, SHiRA, FourierFT...), to name kohya modules,
            and for full fine-tune diffs (``path`` is then the tuned model). When a PEFT adapter needs
            W0 and ``base`` is None, its config's ``base_model_name_or_path`` is used (``hub_base``), and
            ``config["base_model_used"]`` says which.
        adapter: which adapter of a multi-adapter PEFT folder.
        check: build every layer once while loading (one at a time) so that broken modules and
            NaN/Inf values are reported in ``DeltaSet.warnings`` up front.

    Raises:
        CheckpointError: ``path`` (or ``base``) cannot be read; the reason names the problem.
    """
    from .basemodel import as_base
    from .hub import resolve
    from .sniff import sniff

    src = resolve(path)  # a local path as it is; a Hub repo id -> its files in the local cache
    if src.spec is not None:
        ds = load(src.path, base, adapter=adapter, check=check)
        ds.source = str(path)
        ds.config["hub_source"] = src.describe()
        return ds
    s = sniff(path)
    bw = as_base(base)
    if s.kind == "zip":
        return _load_zip(s.path, base, adapter, check)
    if s.kind == "rankscope":
        return load_native(s.path)
    if s.kind == "peft":
        from .peft_folder import load_peft

        if s.tensors is None:
            return load_peft(s.path, bw, adapter, check=check)
        return _load_peft_file(s, bw, check)
    if s.kind == "kohya":
        from .kohya import load_kohya

        return load_kohya(s.path, s.tensors, bw, check=check)
    if s.kind == "nola":
        from .official import load_nola_file

        return load_nola_file(s.path, s.tensors, bw, check=check)
    if bw is None:
        raise CheckpointError(s.path, "a plain model state dict with no adapter tensors: pass the base model "
                                      "(base=... / --base) to see it as a fine-tune diff")
    from .diff import load_diff

    return load_diff(s.path, s.tensors, bw, check=check)


def base_note(ds: DeltaSet) -> str | None:
    """One line saying which base model was found by itself (None when ``base`` was given or not needed)."""
    used = ds.config.get("base_model_used")
    if not isinstance(used, dict):
        return None
    return (f"no --base given: W0 read from the base named by adapter_config.json "
            f"{used.get('field')} = {used.get('name')!r}: {used.get('resolved')}")


def _load_peft_file(s: Any, bw: Any, check: bool) -> DeltaSet:
    from .peft_common import CONFIG_NAME, read_config
    from .peft_folder import load_peft_weights

    cfg_path = s.path.parent / CONFIG_NAME
    if cfg_path.is_file():
        return load_peft_weights(s.path, s.tensors, read_config(cfg_path), bw, check=check)
    warn = ("no adapter_config.json beside the file: PEFT LoRA keys read with scale 1 "
            "(alpha = r, the diffusers convention)")
    return load_peft_weights(s.path, s.tensors, {"peft_type": "LORA"}, bw, check=check, warnings=[warn])


def _load_zip(path: Path, base: Any, adapter: str | None, check: bool) -> DeltaSet:
    from .zipsafe import extract_zip

    root = extract_zip(path)
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        target = entries[0] if len(entries) == 1 else root
        if not entries:
            raise CheckpointError(path, "the archive is empty")
        try:
            ds = load(target, base, adapter=adapter, check=check)
        except CheckpointError as e:
            rel = os.path.relpath(e.path, root) if e.path.startswith(str(root)) else e.path
            raise CheckpointError(path, f"{rel}: {e.reason}" if rel != "." else e.reason) from None
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    ds.source = str(path)
    ds.config["archive_member"] = str(target.relative_to(root)) if target != root else ""
    weakref.finalize(ds, shutil.rmtree, str(root), True)  # the lazy layers read from the extracted copy
    return ds
