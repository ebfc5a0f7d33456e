"""The training step every loop in the library takes, the validation loss, and the plain loop
of lesson 05.

``train_step`` is one optimizer step: clear the gradients, forward and backward over one or more
micro-batches, clip, update. Lesson 05's ``train_loop`` calls it with every feature off; the
Trainer of the recipes (``lessons_lib.run``) adds a learning-rate schedule, gradient accumulation,
mixed precision, DDP and the monitor; fine-tuning (``lessons_lib.finetune``) feeds it batches whose
targets are -100 where no loss is taken; ``benchmarks/train_step.py`` times it. A fix made here
reaches all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

from .distributed import mean_across_ranks
from .precision import autocast, upcast
from .utils import UserError, mode, positive_int

# Devices where the training step takes the fused, chunked output layer + loss (chunked_loss.py):
# measured faster there (lesson 07, section 9; benchmarks/train_step.py). Elsewhere the step keeps
# the plain lm_head + F.cross_entropy, until a measurement on that device shows the fused one faster.
FUSED_LOSS_DEVICES = frozenset({"cpu"})


class Batches(Protocol):
    """Anything with ``next_batch() -> (x, y)``: ``DataLoaderLite``, ``ShardedDataLoader``,
    ``finetune.ChatBatches``."""

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class TrainingDivergedError(UserError, RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the step's update was not applied."""


@dataclass
class StepResult:
    loss: float  # mean loss of the step's batch (over all micro-batches and processes)
    grad_norm: float | None  # global gradient norm before clipping; None when not measured


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    step: int = 0,
    lr: float | None = None,
    grad_clip: float | None = None,
    accum_steps: int = 1,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    monitor=None,
) -> StepResult:
    """One optimizer step of ``model`` (called as ``model(x, y, return_logits=...) -> (logits,
    loss)``) on ``accum_steps`` micro-batches from ``batches``.

    - The logits are asked for only on a step ``monitor`` records, or where ``device.type`` is not in
      ``FUSED_LOSS_DEVICES``; otherwise the model computes the loss without them (``GPT``: the
      fused, chunked output layer + loss, equal to the plain path to float rounding).
    - ``lr``: set on every parameter group first (a schedule's value); ``None`` keeps the rate.
    - ``grad_clip``: clip the global gradient norm to it; ``0`` measures the norm without
      clipping; ``None`` does neither.
    - ``accum_steps``: each micro-batch's mean loss is divided by it, so the summed gradients are
      those of one batch ``accum_steps`` times larger.
    - ``precision``: a resolved precision (``lessons_lib.precision``) for the forward pass;
      ``scaler``: fp16's loss scaling, whose state the caller keeps across steps.
    - ``model`` may be compiled or wrapped in ``DistributedDataParallel``; then gradients are
      averaged across processes once, after the last micro-batch, and so is the reported loss.
    - ``monitor``: a ``TrainingMonitor`` that records step ``step``.

    Targets equal to -100 take no loss (fine-tuning masks everything but the answers this way).
    A loss, or a measured gradient norm, that is NaN or infinite raises ``TrainingDivergedError``
    before the update, so the weights stay those of the previous step (under fp16 an infinite
    gradient is the scaler's to skip). Both numbers reach the host in one read.
    """
    positive_int("accum_steps", accum_steps)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    device = next(model.parameters()).device
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    records = monitor is not None and monitor.start_step(step)  # a step the monitor records
    want_logits = records or device.type not in FUSED_LOSS_DEVICES
    loss_sum = None
    for micro in range(accum_steps):
        x, y = batches.next_batch()
        x, y = x.to(device), y.to(device)
        if ddp:  # average gradients across processes once, after the last micro-batch
            model.require_backward_grad_sync = micro == accum_steps - 1
        with autocast(precision, device):
            logits, loss = model(x, y, return_logits=want_logits)
        if records:
            monitor.observe(step, logits)
        # each micro-batch's mean loss / n: the sum of their gradients is the big batch's
        loss = loss / accum_steps
        part = upcast(loss.detach())
        loss_sum = part if loss_sum is None else loss_sum + part
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if ddp:
        loss_sum = mean_across_ranks(loss_sum)
    if scaler is not None:
        scaler.unscale_(optimizer)
    if monitor is not None:
        monitor.observe_grads(step)
    if grad_clip is None:
        loss_value, norm = float(loss_sum), None
    else:
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
        dtype = torch.promote_types(loss_sum.dtype, total.dtype)
        loss_value, norm = torch.stack([loss_sum.to(dtype), total.to(dtype)]).tolist()  # one sync
    hint = "Lower the learning rate, warm it up for longer, or use bf16/fp32 instead of fp16."
    if not math.isfinite(loss_value):
        raise TrainingDivergedError(
            f"The loss became {loss_value} at step {step}; the parameters were not updated. {hint}"
        )
    if norm is not None and not math.isfinite(norm) and not (scaler is not None and scaler.is_enabled()):
        raise TrainingDivergedError(
            f"The gradient norm became {norm} at step {step} (loss {loss_value:.4g}); the parameters "
            f"were not updated. {hint}"
        )
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return StepResult(loss_value, norm)


@torch.no_grad()
def estimate_loss(model: nn.Module, loader, batches: int) -> float:
    """Mean loss over the first ``batches`` batches of ``loader``, in eval mode: the same text
    every call, so successive estimates are comparable. Only the loss is needed, so on
    ``FUSED_LOSS_DEVICES`` the logits are never made (the fused loss: 2.6x faster on the CPU at
    cpu-tiny B4 T64, equal to float rounding)."""
    positive_int("batches", batches)
    loader.reset()
    device = next(model.parameters()).device
    want_logits = device.type not in FUSED_LOSS_DEVICES
    total = 0.0
    with mode(model, training=False):
        for _ in range(batches):
            x, y = loader.next_batch()
            total += model(x.to(device), y.to(device), return_logits=want_logits)[1].item()
    return total / batches


def train_loop(
    model: nn.Module,
    train_loader: Batches,
    optimizer: torch.optim.Optimizer,
    steps: int,
    val_loader=None,
    eval_interval: int = 50,
    eval_batches: int = 8,
    progress: bool = True,
) -> dict[str, list]:
    """``steps`` calls of ``train_step`` with every feature off (a constant learning rate, no
    clipping, one micro-batch), validation every ``eval_interval`` steps and at the last.

    Returns the history: ``step``/``train_loss`` per step, ``val_step``/``val_loss`` per eval.
    """
    positive_int("steps", steps)
    positive_int("eval_interval", eval_interval)
    history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    bar = tqdm(range(steps), desc="train", disable=not progress, mininterval=1.0)
    with mode(model, training=True):
        for step in bar:
            if val_loader is not None and (step % eval_interval == 0 or step == steps - 1):
                history["val_step"].append(step)
                history["val_loss"].append(estimate_loss(model, val_loader, eval_batches))
            result = train_step(model, optimizer, train_loader, step)
            history["step"].append(step)
            history["train_loss"].append(result.loss)
            postfix = {"loss": f"{result.loss:.3f}"}
            if history["val_loss"]:
                postfix["val"] = f"{history['val_loss'][-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
    return history
