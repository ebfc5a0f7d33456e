"""A plain training loop: AdamW over batches, with validation loss along the way (lesson 05)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from .data import DataLoaderLite
from .model import GPT


@torch.no_grad()
def estimate_loss(model: GPT, loader: DataLoaderLite, batches: int) -> float:
    """Mean loss over the first ``batches`` batches of ``loader``: the same text every call, so
    successive estimates are comparable."""
    was_training = model.training
    model.eval()
    loader.reset()
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(batches):
        x, y = loader.next_batch()
        total += model(x.to(device), y.to(device))[1].item()
    model.train(was_training)
    return total / batches


def train_loop(
    model: GPT,
    train_loader: DataLoaderLite,
    optimizer: torch.optim.Optimizer,
    steps: int,
    val_loader: DataLoaderLite | None = None,
    eval_interval: int = 50,
    eval_batches: int = 8,
    progress: bool = True,
) -> dict[str, list]:
    """``steps`` AdamW steps on ``train_loader``'s batches; validation every ``eval_interval``.

    Returns the history: ``step``/``train_loss`` per step, ``val_step``/``val_loss`` per eval.
    """
    device = next(model.parameters()).device
    history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    model.train()
    bar = tqdm(range(steps), desc="train", disable=not progress, mininterval=1.0)
    for step in bar:
        last = step == steps - 1
        if val_loader is not None and (step % eval_interval == 0 or last):
            history["val_step"].append(step)
            history["val_loss"].append(estimate_loss(model, val_loader, eval_batches))
        x, y = train_loader.next_batch()
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        postfix = {"loss": f"{history['train_loss'][-1]:.3f}"}
        if history["val_loss"]:
            postfix["val"] = f"{history['val_loss'][-1]:.3f}"
        bar.set_postfix(postfix, refresh=False)
    return history
