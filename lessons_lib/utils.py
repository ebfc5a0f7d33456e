"""Small helpers every module shares: the error a user can fix, number checks with their allowed
range, a model-mode switch, and seeding."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class UserError(ValueError):
    """A mistake in what was asked for (a setting out of range, a missing or damaged file, a folder
    that holds another run) or something the user can supply; its message says what to do.

    The command lines print it as one line, without a traceback; other exceptions are bugs and keep
    theirs. The library's own error classes for such cases (``CheckpointError``, ``ShardError``,
    ``AssetUnavailableError``, ``TrainingDivergedError``) derive from it.
    """


@dataclass(frozen=True)
class Bounds:
    """The numbers a setting may take: ``low <= value <= high`` (``low`` excluded with
    ``open_low``; ``None``: no bound), integers only with ``integer``; never NaN or infinite."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.integer and self.low == 1 and self.high is None:
            return "a positive integer"
        low, high = (_number(b) for b in (self.low, self.high))
        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.open_low else '['}{low}, {high}]"
        if self.low is not None:
            return f"{kind} {'>' if self.open_low else '>='} {low}"
        return kind if self.high is None else f"{kind} <= {high}"

    def allows(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        return low_ok and (self.high is None or value <= self.high)

    def check(self, name: str, value):
        """``value`` if allowed, else a ``UserError`` naming ``name`` and the allowed range."""
        if not self.allows(value):
            raise UserError(f"{name} must be {self}, got {value!r}.")
        return value


def _number(bound: float | None) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}" if bound is not None else ""


POSITIVE = Bounds(low=1, integer=True)
NON_NEGATIVE = Bounds(low=0, integer=True)  # counts and intervals where 0 means "none" or "off"
SEED = Bounds(low=0, high=2**32 - 1, integer=True)  # what numpy's seed accepts
RATE = Bounds(low=0, open_low=True)  # a learning rate
NON_NEGATIVE_NUMBER = Bounds(low=0)  # weight decay, a clipping norm, a temperature


def positive_int(name: str, value) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else a ``UserError`` naming ``name``."""
    return POSITIVE.check(name, value)


@contextlib.contextmanager
def mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in training (``True``) or eval (``False``) mode for a ``with`` block, and
    restore the mode it had afterwards, also when the block raises.

    Eval mode switches dropout off; the callers that evaluate or generate use this so that they
    never leave a model in a mode its owner did not choose.
    """
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
