import pytest

from lessons_lib import GPT, GPTConfig
from lessons_lib.optim import configure_optimizer, cosine_lr


def test_weight_decay_on_2d_tensors_only():
    model = GPT(GPTConfig(block_size=16, vocab_size=100, n_layer=2, n_head=2, n_embd=16))
    opt, counts = configure_optimizer(model, weight_decay=0.1)
    # per block: c_attn, c_proj, c_fc, mlp c_proj weights; plus wte (tied with lm_head) and wpe
    assert counts.decayed_tensors == 2 * 4 + 2
    # per block: 4 biases + 2 LayerNorms x (weight, bias); plus ln_f
    assert counts.other_tensors == 2 * (4 + 4) + 2
    assert counts.decayed_params + counts.other_params == model.num_params()
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in opt.param_groups[0]["params"])


def test_cosine_schedule_shape():
    # max_lr / warmup_steps (6e-5) and max_lr / 10 (6e-5) both differ from min_lr (1e-5), so a warmup
    # or a cosine that ends in the wrong place cannot pass by coincidence
    max_lr, min_lr = 6e-4, 1e-5
    lrs = [cosine_lr(s, max_lr, min_lr, warmup_steps=10, max_steps=100) for s in range(120)]
    assert lrs[0] == pytest.approx(max_lr / 10) and lrs[4] == pytest.approx(max_lr * 5 / 10)
    assert lrs[9] == lrs[10] == pytest.approx(max_lr)
    assert lrs[55] == pytest.approx(min_lr + 0.5 * (max_lr - min_lr))  # halfway down the cosine
    assert lrs[100] == lrs[119] == pytest.approx(min_lr)
    assert lrs[99] == pytest.approx(min_lr, rel=0.05)  # the cosine itself arrives at min_lr
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_cosine_schedule_ends_at_min_lr_not_a_tenth_of_max_lr():
    lrs = [cosine_lr(s, 1e-3, 0.0, warmup_steps=0, max_steps=50) for s in range(50)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] < 1e-5  # 1e-4 (max_lr / 10) would fail here
