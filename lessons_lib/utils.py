"""Two small helpers every module shares: a positive-integer check and a model-mode switch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def positive_int(name: str, value) -> int:
    """``value`` if it is a positive ``int`` (not a bool), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


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
