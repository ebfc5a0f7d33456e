"""TrainingMonitor: what it records, that recording never changes training, and its state."""

import pytest
import torch

from lessons_lib.checkpoint import load_checkpoint, save_checkpoint
from lessons_lib.monitor import TrainingMonitor

pytestmark = pytest.mark.usefixtures("one_thread")


def test_monitor_does_not_change_training(tiny_gpt, train_sgd):
    plain = train_sgd(tiny_gpt(), 4)
    monitor = TrainingMonitor(watched := tiny_gpt(), every=1, bins=16, record_layers=True)
    train_sgd(watched, 4, monitor)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert monitor.logits["step"] == [0, 1, 2, 3]
    assert monitor.activations["step"] == monitor.grads["step"] == [0, 1, 2, 3]
    assert all(len(row) == 2 for row in monitor.activations["std"] + monitor.grads["norm"])


def test_monitor_records_every_n_steps_and_the_first_micro_batch_only():
    monitor = TrainingMonitor(torch.nn.Linear(1, 1), every=3, bins=8, positions=4)
    g = torch.Generator().manual_seed(0)
    first = {}
    for step in range(8):
        for micro in range(2):  # gradient accumulation: two forwards per step
            logits = torch.randn(2, 6, 10, generator=g)
            recorded = monitor.observe(step, logits)
            assert recorded == (micro == 0 and step % 3 == 0)
            if recorded:
                first[step] = logits
    assert monitor.logits["step"] == [0, 3, 6]
    for i, step in enumerate([0, 3, 6]):
        sample = first[step].reshape(-1, 10)[::3][:4].flatten()  # 12 rows -> 4 evenly spaced
        lo, hi = monitor.logits["range"][i]
        assert (lo, hi) == pytest.approx((sample.min().item(), sample.max().item()))
        assert monitor.logits["counts"][i] == torch.histc(sample, 8, lo, hi).int().tolist()
        assert sum(monitor.logits["counts"][i]) == 40
        assert monitor.logits["mean"][i] == pytest.approx(sample.mean().item(), abs=1e-6)


def test_fixed_logit_range_counts_what_falls_outside():
    monitor = TrainingMonitor(torch.nn.Linear(1, 1), every=1, bins=4, logit_range=(-1, 1), positions=1)
    monitor.observe(0, torch.tensor([[-3.0, -0.9, -0.1, 0.1, 0.2, 0.9, 2.0, 5.0]]))
    assert monitor.logits["counts"] == [[1, 1, 2, 1]]
    assert (monitor.logits["below"], monitor.logits["above"]) == ([1], [2])
    monitor.observe(1, torch.tensor([[float("nan"), float("inf"), 0.5]]))  # diverged: no crash
    assert monitor.logits["counts"][1] == [0, 0, 0, 1]


def test_layer_statistics_match_a_direct_computation(tiny_gpt):
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=1, record_layers=True)
    x = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    monitor.start_step(0)
    logits, loss = model(x, x)
    monitor.observe(0, logits)
    loss.backward()
    monitor.observe_grads(0)
    with torch.no_grad():
        h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(16))
        for i, block in enumerate(model.transformer.h):
            h = block(h)
            assert monitor.activations["mean"][0][i] == pytest.approx(h.mean().item(), abs=1e-6)
            assert monitor.activations["std"][0][i] == pytest.approx(h.std().item(), rel=1e-5)
            norm = torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item()
            assert monitor.grads["norm"][0][i] == pytest.approx(norm, rel=1e-5)


def test_monitor_state_rides_in_a_checkpoint(tmp_path, tiny_gpt, train_sgd):
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=2, bins=8, record_layers=True)
    train_sgd(model, 5, monitor)
    path = save_checkpoint(tmp_path / "ckpt.pt", model, monitor=monitor.state_dict())
    state = load_checkpoint(path)["monitor"]  # torch.load(weights_only=True) inside
    resumed = TrainingMonitor(model, every=2, bins=8)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["logits"] == monitor.state_dict()["logits"]
    assert resumed.grads == monitor.grads and resumed.activations["step"] == [0, 2, 4]
    with pytest.raises(ValueError, match="missing"):
        resumed.load_state_dict({"logits": {}})


def test_remove_detaches_the_hooks(tiny_gpt):
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=1, record_layers=True)
    assert all(len(b._forward_hooks) == 1 for b in model.transformer.h)
    monitor.remove()
    assert all(len(b._forward_hooks) == 0 for b in model.transformer.h)
    monitor.start_step(0)
    monitor.observe(0, model(torch.zeros(1, 4, dtype=torch.long))[0])
    assert monitor.logits["step"] == [0] and monitor.activations["step"] == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, "every"),
        ({"bins": 2.5}, "bins"),
        ({"logit_range": (1.0, 1.0)}, "lo < hi"),
        ({"record_layers": True}, "Blocks"),
    ],
)
def test_monitor_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingMonitor(torch.nn.Linear(1, 1), **kwargs)
