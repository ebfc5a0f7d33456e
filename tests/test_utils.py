"""The shared number checks (their allowed ranges), the model-mode context manager, seeding."""

import math
import random

import numpy as np
import pytest
import torch

from lessons_lib.utils import (
    NON_NEGATIVE,
    POSITIVE,
    RATE,
    SEED,
    Bounds,
    UserError,
    mode,
    positive_int,
    seed_everything,
)


def test_positive_int():
    assert positive_int("steps", 5) == 5
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(UserError, match=r"steps must be a positive integer, got "):
            positive_int("steps", bad)


@pytest.mark.parametrize(
    "bounds, good, bad, text",
    [
        (POSITIVE, [1, 10**12], [0, -1, 1.0, True], "a positive integer"),
        (NON_NEGATIVE, [0, 3], [-1, 0.5, None], "an integer >= 0"),
        (SEED, [0, 2**32 - 1], [-1, 2**32], "an integer in [0, 4,294,967,295]"),
        (RATE, [1e-9, 3, 0.5], [0, -1e-3, math.nan, math.inf, "0.1"], "a number > 0"),
        (Bounds(low=0, high=1, open_low=True), [1, 0.5], [0, 1.01], "a number in (0, 1]"),
    ],
)
def test_bounds_accept_their_range_and_name_it_when_refusing(bounds, good, bad, text):
    assert str(bounds) == text
    for value in good:
        assert bounds.check("x", value) == value
    for value in bad:
        with pytest.raises(UserError) as err:
            bounds.check("x", value)
        assert str(err.value) == f"x must be {text}, got {value!r}."


@pytest.mark.parametrize("start", [True, False])
def test_mode_sets_and_restores_also_on_error(start):
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(start)
    with mode(model, training=False):
        assert not model.training and not model[0].training
    assert model.training is start
    with pytest.raises(RuntimeError), mode(model, training=not start):
        assert model.training is not start
        raise RuntimeError("inside the block")
    assert model.training is start


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first
    seed_everything(4)
    assert draw() != first
