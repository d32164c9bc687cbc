"""Decide what a path holds from its name, its header and its key names (no tensor is read).

``sniff(path) -> Sniffed(kind, ...)`` with kind one of:

- ``rankscope``: RankScope's own file (a ``rankscope`` manifest in the safetensors metadata);
- ``peft``: a folder with ``adapter_config.json`` (here or in adapter sub-folders), or a tensor file
  whose keys are PEFT adapter keys (``lora_A``/``lora_B``/... under ``base_model.model.``);
- ``kohya``: ``lora_down``/``lora_up``/``alpha`` (or LyCORIS ``hada_``/``lokr_``) keys;
- ``nola``: UCDvision NOLA keys (``.coefficients`` + ``.seed``) without a config;
- ``state_dict``: any other tensor file (a full model; a fine-tune diff when a base is given);
- ``zip``: a zip archive (extracted safely first).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..delta import CheckpointError
from .peft_common import CONFIG_NAME, list_adapters
from .safetensors_io import PICKLE_SUFFIXES, TensorFile, open_tensor_file

__all__ = ["Sniffed", "sniff", "classify_keys"]

_KOHYA_MARKERS = (".lora_down.weight", ".lora_up.weight", ".hada_w1_a", ".lokr_w1", ".lora_mid.weight")


@dataclass
class Sniffed:
    kind: str
    path: Path
    tensors: TensorFile | None = None
    notes: list[str] = field(default_factory=list)


def classify_keys(keys: list[str]) -> str:
    """``kohya``, ``peft``, ``nola`` or ``state_dict`` from key names alone."""
    if any(k.endswith(_KOHYA_MARKERS) for k in keys) and any(k.startswith(("lora_", "lycoris_")) or
                                                             ".lora_down" in k or ".hada_" in k for k in keys):
        if not any(k.startswith("base_model.") for k in keys):
            return "kohya"
    if any(k.endswith(".coefficients") for k in keys) and any(k.endswith(".seed") for k in keys):
        return "nola"
    from .peft_folder import peft_markers  # the tensor names the PEFT loaders read

    markers = peft_markers()
    if any(m in k for k in keys for m in markers):
        return "peft"
    return "state_dict"


def sniff(path: str | os.PathLike) -> Sniffed:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(p, "no such file or folder")
    if p.is_symlink() and not p.resolve().exists():
        raise CheckpointError(p, "a dangling link")
    if p.is_dir():
        if list_adapters(p):
            return Sniffed("peft", p)
        files = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES))
        if len(files) == 1:
            return sniff(files[0])
        raise CheckpointError(p, f"a folder without {CONFIG_NAME} and with {len(files)} tensor files "
                                 "(expected a PEFT adapter folder or one checkpoint file)")
    if p.stat().st_size == 0:
        raise CheckpointError(p, "the file is empty")
    with open(p, "rb") as f:
        magic = f.read(4)
    if p.suffix.lower() == ".zip" or (magic == b"PK\x03\x04" and p.suffix.lower() not in PICKLE_SUFFIXES):
        if not zipfile.is_zipfile(p):
            raise CheckpointError(p, "not a readable zip archive")
        return Sniffed("zip", p)
    if p.suffix.lower() == ".json":
        raise CheckpointError(p, "a config file alone: give the folder that holds it and its weights")
    tf = open_tensor_file(p)
    if "rankscope" in tf.metadata:
        return Sniffed("rankscope", p, tf)
    if (p.parent / CONFIG_NAME).is_file():
        return Sniffed("peft", p, tf)
    return Sniffed(classify_keys(tf.keys()), p, tf)
