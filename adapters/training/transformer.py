"""A small causal transformer built and pretrained in code (no downloads), for the ``uuid`` task.

    tokens (B, T) -> embed_tokens + embed_positions -> layers.{i}: x + self_attn(norm(x)),
                     x + mlp(norm(x)) -> norm -> lm_head -> logits (B, T, vocab)
    self_attn: q_proj, k_proj, v_proj, o_proj (d -> d, causal, ``n_heads`` heads)
    mlp:       down_proj(silu(gate_proj(x)) * up_proj(x))   (d -> mlp -> d, LLaMA's gated MLP)

Module names follow Hugging Face's LLaMA (``layers.3.self_attn.q_proj``, ``layers.3.mlp.up_proj``), so
``analysis.names`` reads blocks and module types. Every linear layer is bias-free.

The vocabulary is 16 hex digits plus ``BOS`` and ``SEP``. A pretraining sequence is
``BOS key SEP value`` with a random hex key and value = ``rule(key)`` (the key reversed, every digit
+1 mod 16): a deterministic synthetic language that teaches the format and position-based copying.
``pretrained(config, seed)`` trains it briefly (Adam, fixed steps) and caches the weights on disk
(safetensors, written atomically) keyed by the config and seed, so later runs load instead of training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TinyLMConfig", "TinyLM", "BOS", "SEP", "VOCAB", "rule", "pair_tokens", "pretrained",
           "cache_dir", "LINEAR_NAMES"]

HEX = 16
BOS, SEP = 16, 17
VOCAB = 18
LINEAR_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass(frozen=True)
class TinyLMConfig:
    """Sizes of the model and of its pretraining. ``key_len`` hex digits of key and of value."""

    d: int = 128
    n_blocks: int = 4
    n_heads: int = 4
    mlp: int = 256
    key_len: int = 8
    pretrain_steps: int = 300
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3

    @property
    def seq_len(self) -> int:
        """BOS key SEP value: 2 · key_len + 2 tokens."""
        return 2 * self.key_len + 2


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.n_heads

        def heads(z: Tensor) -> Tensor:
            return z.view(b, t, h, d // h).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                           is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(cfg.d), RMSNorm(cfg.d)
        self.self_attn, self.mlp = Attention(cfg.d, cfg.n_heads), MLP(cfg.d, cfg.mlp)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class TinyLM(nn.Module):
    """The causal LM: ``forward(tokens (B, T) int64) -> logits (B, T, VOCAB)``."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        if cfg.d % cfg.n_heads:
            raise ValueError(f"d = {cfg.d} is not a multiple of n_heads = {cfg.n_heads}")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(VOCAB, cfg.d)
        self.embed_positions = nn.Embedding(cfg.seq_len, cfg.d)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.norm = RMSNorm(cfg.d)
        self.lm_head = nn.Linear(cfg.d, VOCAB, bias=False)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0.0, 0.02)
            for blk in self.layers:  # GPT-2's scaled init of the residual outputs
                for lin in (blk.self_attn.o_proj, blk.mlp.down_proj):
                    lin.weight.mul_((2 * cfg.n_blocks) ** -0.5)

    def linear_names(self) -> list[str]:
        """Every linear layer inside the blocks, in model order (the lm_head is not one of them)."""
        return [f"layers.{i}.{n}" for i in range(self.cfg.n_blocks) for n in LINEAR_NAMES]

    def forward(self, tokens: Tensor) -> Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed_tokens(tokens) + self.embed_positions(pos)
        for blk in self.layers:
            x = blk(x)
        return self.lm_head(self.norm(x))


def rule(keys: Tensor) -> Tensor:
    """The pretraining language's value for each key (n, L): reversed, every digit + 1 mod 16."""
    return (keys.flip(-1) + 1) % HEX


def pair_tokens(keys: Tensor, values: Tensor) -> Tensor:
    """(n, 2L + 2) sequences ``BOS key SEP value``."""
    n = keys.shape[0]
    bos = torch.full((n, 1), BOS, dtype=torch.int64)
    sep = torch.full((n, 1), SEP, dtype=torch.int64)
    return torch.cat((bos, keys, sep, values), dim=1)


def value_loss(logits: Tensor, seqs: Tensor, key_len: int) -> Tensor:
    """Cross-entropy of the value digits only: positions key_len+1 .. 2·key_len predict them."""
    pred = logits[:, key_len + 1: 2 * key_len + 1]
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), seqs[:, key_len + 2:].reshape(-1))


def _key(cfg: TinyLMConfig, seed: int) -> str:
    blob = json.dumps({"cfg": dataclasses.asdict(cfg), "seed": int(seed), "torch": torch.__version__.split("+")[0],
                       "format": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_dir() -> Path:
    """``$RANKSCOPE_CACHE`` or ``~/.cache/rankscope``, subfolder ``tinylm``."""
    root = os.environ.get("RANKSCOPE_CACHE") or Path.home() / ".cache" / "rankscope"
    return Path(root) / "tinylm"


def _pretrain(cfg: TinyLMConfig, seed: int) -> dict[str, Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyLM(cfg)
    g = torch.Generator().manual_seed(int(seed) * 7919 + 11)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
    warm = max(1, cfg.pretrain_steps // 10)
    for step in range(cfg.pretrain_steps):
        keys = torch.randint(0, HEX, (cfg.pretrain_batch, cfg.key_len), generator=g)
        seqs = pair_tokens(keys, rule(keys))
        for grp in opt.param_groups:  # linear warm-up, then cosine decay to a tenth
            frac = (step + 1) / warm if step < warm else 0.55 + 0.45 * torch.cos(
                torch.tensor((step - warm) / max(1, cfg.pretrain_steps - warm) * torch.pi)).item()
            grp["lr"] = cfg.pretrain_lr * frac
        opt.zero_grad(set_to_none=True)
        value_loss(model(seqs[:, :-1]), seqs, cfg.key_len).backward()
        opt.step()
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def pretrained(cfg: TinyLMConfig = TinyLMConfig(), seed: int = 0, cache: bool = True) -> TinyLM:
    """The pretrained model for (cfg, seed), frozen and in eval mode; from the disk cache when there.

    A cache file that cannot be read is retrained and rewritten (never trusted, never unpickled).
    """
    from safetensors.torch import load_file, save

    model = TinyLM(cfg)
    path = cache_dir() / f"{_key(cfg, seed)}.safetensors"
    state = None
    if cache and path.is_file():
        try:
            state = load_file(str(path))
            model.load_state_dict(state)
        except Exception:  # a torn or foreign file: retrain
            state = None
    if state is None:
        state = _pretrain(cfg, seed)
        model.load_state_dict(state)
        if cache:
            from ..formats.atomic import atomic_write_bytes

            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, save(state))
            except OSError:  # a read-only home: run without the cache
                pass
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
