"""The one training step, the validation loss and lesson 05's loop."""

import math

import pytest
import torch

from lessons_lib import GPT, DataLoaderLite, GPTConfig, TrainingMonitor
from lessons_lib.loop import TrainingDivergedError, estimate_loss, train_loop, train_step

VOCAB = 100


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=16, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=16))


def loader(B=2, T=16, n=400, seed=0):
    tokens = torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))
    return DataLoaderLite(B, T, tokens)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture
def forward_calls(monkeypatch) -> list[bool]:
    """``return_logits`` of every ``GPT.forward`` call, in order."""
    calls = []
    original = GPT.forward

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("return_logits", True))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", spy)
    return calls


def test_step_is_zero_grad_forward_backward_update():
    """With every feature off, the step is exactly the four lines of lesson 05 (on the CPU, with the
    loss taken without the logits)."""
    ours, ref = tiny_gpt(), tiny_gpt()
    opt_a, opt_b = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (ours, ref))
    data_a, data_b = loader(), loader()
    for step in range(3):
        result = train_step(ours, opt_a, data_a, step)
        x, y = data_b.next_batch()
        opt_b.zero_grad(set_to_none=True)
        _, loss = ref(x, y, return_logits=False)
        loss.backward()
        opt_b.step()
        assert result.loss == loss.item() and result.grad_norm is None
    assert all(torch.equal(a, b) for a, b in zip(params(ours), params(ref), strict=True))


def test_the_fused_loss_is_used_where_it_is_faster_and_agrees_with_the_plain_one(monkeypatch, forward_calls):
    """On the CPU the step asks for no logits (the fused output layer + loss); on other devices it
    asks for them (as it does on a step a monitor records: the test below). Both paths
    train the same model to float32 rounding."""
    import lessons_lib.loop as loop

    fused, plain = tiny_gpt(), tiny_gpt()
    opt_f, opt_p = (torch.optim.SGD(m.parameters(), lr=0.5) for m in (fused, plain))  # Adam would
    data_f, data_p = loader(), loader()  # blow a gradient's 1e-9 up to lr where the gradient is ~0
    fused_losses = [train_step(fused, opt_f, data_f).loss for _ in range(3)]
    assert forward_calls == [False] * 3
    monkeypatch.setattr(loop, "FUSED_LOSS_DEVICES", frozenset())  # as on a device not in the set
    plain_losses = [train_step(plain, opt_p, data_p).loss for _ in range(3)]
    assert forward_calls[3:] == [True] * 3
    assert fused_losses == pytest.approx(plain_losses, rel=1e-6)
    for a, b in zip(params(fused), params(plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lr_is_set_on_every_group_and_kept_when_none():
    model = tiny_gpt()
    opt = torch.optim.AdamW(
        [{"params": [model.lm_head.weight]}, {"params": model.transformer.h.parameters()}]
    )
    data = loader()
    train_step(model, opt, data, lr=3e-3)
    assert [g["lr"] for g in opt.param_groups] == [3e-3, 3e-3]
    train_step(model, opt, data)
    assert [g["lr"] for g in opt.param_groups] == [3e-3, 3e-3]


def test_grad_clip_bounds_the_norm_and_zero_only_measures_it():
    model = tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the gradients stay to be inspected
    measured = train_step(model, opt, loader(), grad_clip=0)
    raw = math.sqrt(sum((p.grad**2).sum().item() for p in model.parameters()))
    assert measured.grad_norm == pytest.approx(raw, rel=1e-6) and raw > 0.1
    clipped = train_step(model, opt, loader(), grad_clip=0.1)
    after = math.sqrt(sum((p.grad**2).sum().item() for p in model.parameters()))
    assert clipped.grad_norm == pytest.approx(raw, rel=1e-6)  # the norm before clipping
    assert after == pytest.approx(0.1, rel=1e-4)


def test_accumulated_micro_batches_give_the_big_batch_gradient():
    tokens = torch.randint(0, VOCAB, (8 * 16 + 1,), generator=torch.Generator().manual_seed(3))
    big, small = tiny_gpt().double(), tiny_gpt().double()
    sgd = {m: torch.optim.SGD(m.parameters(), lr=0.0) for m in (big, small)}
    a = train_step(big, sgd[big], DataLoaderLite(8, 16, tokens))
    b = train_step(small, sgd[small], DataLoaderLite(2, 16, tokens), accum_steps=4)
    assert a.loss == pytest.approx(b.loss, rel=1e-12, abs=0)
    diff = max(
        (p.grad - q.grad).abs().max().item()
        for p, q in zip(big.parameters(), small.parameters(), strict=True)
    )
    assert diff <= 1e-12


def test_ignored_targets_take_no_loss():
    model = tiny_gpt()
    x, y = loader().next_batch()
    masked = y.clone()
    masked[:, :8] = -100

    class Fixed:
        def next_batch(self):
            return x, masked

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    result = train_step(model, opt, Fixed())
    with torch.no_grad():
        logits, _ = model(x)
        expected = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, VOCAB), y[:, 8:].reshape(-1))
    assert result.loss == pytest.approx(expected.item(), rel=1e-6)


def test_a_nan_loss_raises_before_the_update():
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))
    before = params(model)
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 7; the parameters were not"):
        train_step(model, torch.optim.AdamW(model.parameters()), loader(), step=7)
    assert all(
        torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
        for a, b in zip(before, params(model), strict=True)
    )


def test_a_non_finite_gradient_raises_before_the_update():
    """A finite loss whose gradients overflow: the update would write NaN into every weight."""
    model = tiny_gpt()
    model.transformer.wte.weight.register_hook(lambda g: g * float("inf"))
    before = params(model)
    diverged = r"gradient norm became (inf|nan) at step 4 \(loss [\d.]+\); the parameters were not updated"
    with pytest.raises(TrainingDivergedError, match=diverged):
        train_step(model, torch.optim.AdamW(model.parameters()), loader(), step=4, grad_clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, params(model), strict=True))
    scaler = torch.amp.GradScaler("cpu")  # fp16's loss scaling: an overflow is its to skip, and lower
    result = train_step(model, torch.optim.AdamW(model.parameters()), loader(), grad_clip=1.0, scaler=scaler)
    assert result.grad_norm == math.inf and scaler.get_scale() == 2.0**15
    assert all(torch.equal(a, b) for a, b in zip(before, params(model), strict=True))


def test_monitor_records_the_step_it_is_given():
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=2, record_layers=True)
    opt = torch.optim.AdamW(model.parameters())
    data = loader()
    for step in range(5):
        train_step(model, opt, data, step, monitor=monitor)
    assert monitor.logits["step"] == [0, 2, 4] and monitor.grads["step"] == [0, 2, 4]


def test_logits_are_made_only_on_the_steps_the_monitor_records(forward_calls):
    model = tiny_gpt()
    monitor = TrainingMonitor(model, every=3)
    opt, data = torch.optim.SGD(model.parameters(), lr=0.1), loader()
    for step in range(7):
        train_step(model, opt, data, step, monitor=monitor)
    assert forward_calls == [True, False, False, True, False, False, True]  # the fused loss in between
    assert monitor.logits["step"] == [0, 3, 6]


def test_bad_accum_steps():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="accum_steps must be a positive integer, got 0"):
        train_step(model, torch.optim.AdamW(model.parameters()), loader(), accum_steps=0)


def test_estimate_loss_is_the_mean_over_the_first_batches_in_eval_mode():
    model = tiny_gpt()
    val = loader(seed=1)
    val.next_batch()  # wherever the loader stands, the estimate starts from the beginning
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(m.training))
    loss = estimate_loss(model, val, 3)
    ref = loader(seed=1)
    with torch.no_grad():  # the plain path (the estimate takes the fused loss on the CPU)
        expected = sum(model(*ref.next_batch())[1].item() for _ in range(3)) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    assert seen[:3] == [False] * 3 and model.training  # evaluated in eval mode, then restored


def test_estimate_loss_asks_for_logits_only_where_training_does(monkeypatch, forward_calls):
    import lessons_lib.loop as loop

    model = tiny_gpt()
    fused = estimate_loss(model, loader(seed=1), 2)
    monkeypatch.setattr(loop, "FUSED_LOSS_DEVICES", frozenset())  # as on a device not in the set
    plain = estimate_loss(model, loader(seed=1), 2)
    assert forward_calls == [False, False, True, True]
    assert fused == pytest.approx(plain, rel=1e-6)  # two paths, equal to float rounding


def test_train_loop_is_train_step_plus_validation():
    a, b = tiny_gpt(), tiny_gpt()
    opt_a, opt_b = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (a, b))
    history = train_loop(
        a, loader(), opt_a, 5, loader(seed=1), eval_interval=2, eval_batches=1, progress=False
    )
    data = loader()
    losses = [train_step(b, opt_b, data, step).loss for step in range(5)]
    assert history["train_loss"] == losses and history["step"] == list(range(5))
    assert history["val_step"] == [0, 2, 4] and len(history["val_loss"]) == 3
    assert all(torch.equal(p, q) for p, q in zip(params(a), params(b), strict=True))


def test_train_loop_restores_the_models_mode():
    model = tiny_gpt().eval()
    train_loop(model, loader(), torch.optim.AdamW(model.parameters()), 2, progress=False)
    assert not model.training
