"""The optimiser and schedule of the GPT-2 124M recipe (lesson 08).

- AdamW with weight decay on the 2-D tensors only (matmul weights and embeddings): decaying
  biases and LayerNorm gains only pulls them towards zero for no benefit.
- A learning rate that warms up linearly, then follows a cosine down to a floor.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParamGroupCounts:
    decayed_tensors: int
    decayed_params: int
    other_tensors: int
    other_params: int


def configure_optimizer(
    model: nn.Module,
    lr: float = 6e-4,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> tuple[torch.optim.AdamW, ParamGroupCounts]:
    """AdamW with two parameter groups; ``fused=None`` uses the fused kernel where it exists.

    Returns the optimiser and how many tensors/parameters each group holds.
    """
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    if fused is None:
        device = params[0].device.type
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)
    counts = ParamGroupCounts(
        len(decay), sum(p.numel() for p in decay), len(other), sum(p.numel() for p in other)
    )
    return optimizer, counts


def cosine_lr(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warmup to ``max_lr`` over ``warmup_steps``,
    cosine decay to ``min_lr`` at ``max_steps``, then ``min_lr``."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
