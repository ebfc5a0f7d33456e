"""The shared positive-integer check and the model-mode context manager."""

import pytest
import torch

from lessons_lib.utils import mode, positive_int


def test_positive_int():
    assert positive_int("steps", 5) == 5
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=r"steps must be a positive integer, got "):
            positive_int("steps", bad)


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
