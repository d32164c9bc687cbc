"""The ``uuid`` task (MoRA §4.1, scaled down): memorise random key → value hex strings in a
pretrained causal transformer with every linear layer of every block adapted.

    base      ``transformer.pretrained`` (4 blocks, d = 128, trained on value = rule(key); fixed seed 0,
              so every task seed shares one base, cached on disk)
    data      ``n_pairs`` random distinct 6-digit hex keys, each with an independent random 6-digit
              value (nothing the pretraining rule predicts): pure memorisation
    batches   minibatches of ``batch_size`` pairs, one shuffled pass over the pairs per epoch
    loss      cross-entropy of the value digits given ``BOS key SEP`` and the previous value digits
    metrics   exact_match (all value digits right: greedy decoding reproduces the value), char_acc
              (the paper's character accuracy), loss (over all pairs)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .task_base import Task, _device, _gen
from .transformer import HEX, TinyLMConfig, pair_tokens, pretrained, value_loss

__all__ = ["UuidTask"]

BASE_SEED = 0


class UuidTask(Task):
    name = "uuid"
    description = ("memorise 128 random 6-hex-digit key→value pairs in a pretrained 4-block transformer (d = 128), "
                   "all 28 linear layers adapted (MoRA's UUID task)")
    default_steps, default_lr, default_budget = 150, 3e-3, 34816  # the budget: LoRA r = 4 on every layer
    headline: ClassVar[dict[str, bool]] = {"exact_match": True, "char_acc": True, "loss": False}

    def __init__(self, seed: int = 0, n_pairs: int = 128, batch_size: int = 32, d: int = 128, n_blocks: int = 4,
                 n_heads: int = 4, mlp: int = 256, key_len: int = 6, pretrain_steps: int = 300) -> None:
        super().__init__(seed)
        self.cfg = TinyLMConfig(d=int(d), n_blocks=int(n_blocks), n_heads=int(n_heads), mlp=int(mlp),
                                key_len=int(key_len), pretrain_steps=int(pretrain_steps))
        if not 1 <= int(batch_size):
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(n_pairs) > HEX ** (int(key_len) - 1):
            raise ValueError(f"{n_pairs} pairs do not fit in {key_len}-digit keys")
        self.model: nn.Module = pretrained(self.cfg, BASE_SEED)
        self.targets = self.model.linear_names()
        self.n_pairs, self.batch_size = int(n_pairs), min(int(batch_size), int(n_pairs))
        g = _gen(seed, 7)
        keys = torch.randint(0, HEX, (2 * self.n_pairs, self.cfg.key_len), generator=g)
        keys = torch.unique(keys, dim=0)  # distinct keys (sorted), then a seeded order
        keys = keys[torch.randperm(len(keys), generator=g)[: self.n_pairs]]
        values = torch.randint(0, HEX, (self.n_pairs, self.cfg.key_len), generator=g)
        self.seqs = pair_tokens(keys, values)  # (n_pairs, 2L + 2)

    def batch(self, step: int) -> tuple[Tensor, ...]:
        per_epoch = -(-self.n_pairs // self.batch_size)
        epoch, i = divmod(int(step), per_epoch)
        order = torch.randperm(self.n_pairs, generator=_gen(self.seed, 30_000 + epoch))
        return (self.seqs[order[i * self.batch_size: (i + 1) * self.batch_size]],)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        (seqs,) = batch
        return value_loss(model(seqs[:, :-1]), seqs, self.cfg.key_len)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        L = self.cfg.key_len
        seqs = self.seqs.to(_device(model))
        with torch.no_grad():
            logits = model(seqs[:, :-1])
            right = (logits[:, L + 1: 2 * L + 1].argmax(-1) == seqs[:, L + 2:]).cpu()
            loss = float(value_loss(logits, seqs, L))
        return {"exact_match": float(right.all(-1).float().mean()), "char_acc": float(right.float().mean()),
                "loss": loss}
