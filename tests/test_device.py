"""Device choice."""

import pytest
import torch

from lessons_lib.device import DEVICE_ENV, get_device, has_float64, synchronize


def test_preferred_device_and_the_environment_override(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("cpu:0") == torch.device("cpu:0")  # an explicit choice wins over the variable


def test_best_available_without_a_choice(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


def test_unavailable_device_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="Device 'cuda' is not available here"):
        get_device("cuda")
    with pytest.raises(ValueError, match="is not available"):
        get_device("xla")


def test_float64_everywhere_but_on_apple_gpus():
    assert has_float64("cpu") and has_float64(torch.device("cuda:1")) and not has_float64("mps")


def test_synchronize_waits_for_the_device_it_is_given(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize("cpu")  # nothing to wait for
    synchronize("mps")
    synchronize(torch.device("cuda", 1))
    assert calls == [("mps", None), ("cuda", torch.device("cuda", 1))]
