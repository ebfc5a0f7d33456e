"""GPT-2 in one file: attention, MLP, block, the whole model and its configuration.

Lessons 02-04 build each class here from scratch; this is the finished version they import.
Parameter names follow OpenAI's checkpoint (``c_attn``, ``c_proj``, ``ln_1``, ...) so the
Hugging Face weights map onto it one to one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .chunked_loss import linear_cross_entropy
from .precision import upcast
from .utils import UserError, positive_int

ATTENTION_IMPLS = ("sdpa", "explicit")

# The four OpenAI sizes, plus small sizes that train on two CPU cores in minutes.
PRESETS: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    "cpu-tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64),
    "cpu-narrow": dict(n_layer=4, n_head=2, n_embd=64, block_size=128),  # the main job's model
    "cpu-small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "cpu-medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
}


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the position embedding covers
    vocab_size: int = 50257  # 50,000 BPE merges + 256 bytes + <|endoftext|>
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    attention: str = "sdpa"  # "sdpa" (fused kernel) or "explicit" (masked softmax, for teaching)
    # Round the embedding's rows up to a multiple of this (64 turns 50,257 into 50,304): GPU
    # matmuls are faster on such "nice" sizes. Logits are still returned for vocab_size tokens only.
    vocab_multiple: int = 1
    # Fraction of activations zeroed in training (embeddings, attention weights, each residual
    # branch), as in GPT-2's paper (0.1). 0 for pretraining on much data (nanoGPT, build-nanogpt):
    # dropout regularises a model that sees its training text more than once.
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "vocab_multiple"):
            positive_int(f"GPTConfig.{name}", getattr(self, name))
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout={self.dropout!r} must be in [0, 1): the fraction of activations zeroed")
        if self.n_embd % self.n_head != 0:
            raise UserError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: every head needs "
                f"the same width. Choose n_head among the divisors of {self.n_embd}, or change n_embd."
            )
        if self.attention not in ATTENTION_IMPLS:
            raise UserError(f"attention={self.attention!r}; choose one of {ATTENTION_IMPLS}.")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A named size (``PRESETS``): ``gpt2`` ... ``gpt2-xl``, or one of the ``cpu-*`` sizes."""
        if name not in PRESETS:
            raise UserError(f"Unknown preset {name!r}. Known presets: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``F.dropout`` where ``p > 0``; at 0 (evaluation, or a model without dropout) ``x`` itself,
    drawing no random numbers."""
    return F.dropout(x, p) if p > 0 else x


class KVCache:
    """Keys and values of every token seen so far, per layer, preallocated to ``max_len``.

    With it, generating a token costs one position's worth of work instead of re-running the
    whole prefix: the keys and values of earlier tokens never change in a causal model.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype) -> None:
        head_size = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # number of positions already stored

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for ``layer``; return all keys/values so far."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    """Every position mixes in the values of the positions before it, weighted by q.k similarity."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attention = config.attention
        self.dropout = config.dropout
        self.layer_idx = layer_idx

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, nh, T, hs): heads become a batch dimension
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, nh, S, hs), S = past + T
        S = k.size(2)
        p = self.dropout if self.training else 0.0
        # query i sits at absolute position S - T + i and may see keys 0 .. S - T + i
        mask = None if S == T else torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None)
        else:
            if mask is None:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, S)
            att = att.masked_fill(~mask, float("-inf"))
            y = dropout(F.softmax(att, dim=-1), p) @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return dropout(self.c_proj(y), p)


class MLP(nn.Module):
    """Per-token computation: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")  # the approximation GPT-2 was trained with
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.c_proj(self.gelu(self.c_fc(x))), self.dropout if self.training else 0.0)


class Block(nn.Module):
    """Pre-LayerNorm block: the residual stream ``x`` is only ever added to, never normalised."""

    def __init__(self, config: GPTConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        # Weight tying: one matrix maps tokens to vectors and vectors back to token scores.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2's init. Each block adds two projections to the residual stream; scaling them by
        # 1/sqrt(2 * n_layer) keeps the stream's std from growing with depth.
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "RESIDUAL_SCALE_INIT", False):
                std *= (2 * self.config.n_layer) ** -0.5
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameter count; the tied embedding/head matrix counts once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        return_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits ``(B, T, vocab_size)`` for every position, and the mean cross-entropy if
        ``targets`` (same shape as ``idx``; -100 marks positions to ignore) are given.

        ``return_logits=False`` with targets (a training step that only needs the loss) returns
        ``(None, loss)`` and computes the loss with ``linear_cross_entropy``: no (B, T, V) logits,
        only one vocabulary chunk of them at a time (lessons_lib/chunked_loss.py).
        """
        self._check_input(idx, targets, kv_cache)
        B, T = idx.size()
        start = 0 if kv_cache is None else kv_cache.pos
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        x = dropout(x, self.config.dropout if self.training else 0.0)
        for block in self.transformer.h:
            x = block(x, kv_cache)
        if kv_cache is not None:
            kv_cache.pos += T
        x = self.transformer.ln_f(x)
        if targets is not None and not return_logits:
            weight = self.lm_head.weight[: self.config.vocab_size]  # padding rows are never predicted
            return None, linear_cross_entropy(x.reshape(B * T, -1), weight, targets.reshape(-1))
        logits = self.lm_head(x)  # (B, T, padded_vocab_size)
        if self.config.padded_vocab_size != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]  # padding rows are never predicted
        loss = None
        if targets is not None:
            loss = F.cross_entropy(upcast(logits.reshape(-1, logits.size(-1))), targets.reshape(-1))
        return logits, loss

    def _check_input(self, idx: torch.Tensor, targets: torch.Tensor | None, kv_cache: KVCache | None) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ValueError(f"idx must be a 2-D tensor of token ids (B, T), got {shape}.")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(
                f"idx must hold integer token ids, got dtype {idx.dtype}. "
                "Convert with idx.long(), or encode text with lessons_lib.get_encoding()."
            )
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(
                f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}."
            )
        T = idx.size(1)
        past = 0 if kv_cache is None else kv_cache.pos
        limit = self.config.block_size if kv_cache is None else min(self.config.block_size, kv_cache.max_len)
        if past + T > limit:
            raise ValueError(
                f"Sequence of length {past + T} is longer than the model's context "
                f"(block_size={self.config.block_size}"
                + ("" if kv_cache is None else f", KV cache max_len={kv_cache.max_len}")
                + f"). Crop the input to its last {limit - past} tokens."
            )
        if torch.compiler.is_compiling():
            return
        bad = (idx < 0) | (idx >= self.config.vocab_size)
        where = (
            f"outside the vocabulary [0, {self.config.vocab_size}). "
            "Encode text with the tokenizer the model was built for, or raise vocab_size."
        )
        if idx.device.type == "cpu":
            if bad.any():  # on the CPU the answer is already there: no wait
                raise UserError(f"Token id {idx[bad][0].item()} is {where}")
        else:
            # Reading the answer back would make the host wait for the GPU in every forward
            # (a sync); the device checks it instead and the error surfaces at the next sync.
            torch._assert_async(~bad.any(), f"A token id is {where}")
