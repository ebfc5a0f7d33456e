"""Fixtures shared by the unit tests: a tiny GPT, a few SGD steps on it, one thread for tiny models."""

import pytest
import torch

from lessons_lib import GPT, GPTConfig


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
