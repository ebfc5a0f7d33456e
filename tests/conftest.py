"""Fixtures shared by the unit tests: the device of the tests that can run on an accelerator, a
tiny GPT and a few SGD steps on it, one thread for tiny models."""

import os

import pytest
import torch

from lessons_lib import GPT, GPTConfig
from lessons_lib.device import get_device

TEST_DEVICE_ENV = "LESSONS_TEST_DEVICE"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The CPU, or ``$LESSONS_TEST_DEVICE`` (``cuda`` from benchmarks/gpu_check.sh): the tests that
    take this fixture (model, chunked loss, KV cache) check there what they check on the CPU."""
    return get_device(os.environ.get(TEST_DEVICE_ENV) or "cpu")


@pytest.fixture
def one_thread():
    """Tiny models only lose from threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=16, vocab_size=100, n_layer=2, n_head=2, n_embd=16))


def _train_sgd(model: GPT, steps: int, monitor=None) -> GPT:
    """A few SGD steps on batches drawn from the global RNG: if the monitor consumed random
    numbers, the batches (and so the weights) would differ. (No torch.optim: its first use
    imports torch._dynamo, seconds of a test file that is otherwise fast.)"""
    torch.manual_seed(1)
    for step in range(steps):
        x, y = torch.randint(0, 100, (2, 4, 16)).unbind(0)
        if monitor:
            monitor.start_step(step)
        logits, loss = model(x, y)
        if monitor:
            monitor.observe(step, logits)
        loss.backward()
        if monitor:
            monitor.observe_grads(step)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
                p.grad = None
    return model


@pytest.fixture
def tiny_gpt():
    """``tiny_gpt(seed=0)``: a seeded 2-layer GPT, block 16, vocabulary 100, width 16."""
    return _tiny_gpt


@pytest.fixture
def train_sgd():
    """``train_sgd(model, steps, monitor=None)``: plain SGD steps on seeded random batches."""
    return _train_sgd
