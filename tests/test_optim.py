import math

import pytest
import torch

from lessons_lib import GPT, GPTConfig
from lessons_lib.optim import configure_optimizer, cosine_lr
from lessons_lib.precision import autocast, param_dtype, resolve_precision, upcast


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
    lrs = [cosine_lr(s, 6e-4, 6e-5, warmup_steps=10, max_steps=100) for s in range(120)]
    assert lrs[0] == pytest.approx(6e-5) and lrs[9] == pytest.approx(6e-4)
    assert lrs[10] == pytest.approx(6e-4)
    assert lrs[55] == pytest.approx(6e-5 + 0.5 * (6e-4 - 6e-5))
    assert lrs[100] == lrs[119] == pytest.approx(6e-5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert math.isclose(lrs[99], 6e-5, rel_tol=1e-2)


def test_precision_resolution_and_errors():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("tf32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") in {"bf16", "fp32"}
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="fp16 autocast is not supported for training on CPU"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("fp64", "cpu") == "fp64"
    with pytest.raises(ValueError, match="MPS has no float64"):
        resolve_precision("fp64", "mps")


def test_param_dtype_and_upcast():
    assert param_dtype("fp64") == torch.float64
    assert all(param_dtype(p) == torch.float32 for p in ("fp32", "tf32", "bf16", "fp16"))
    for dtype, expected in [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                            (torch.float32, torch.float32), (torch.float64, torch.float64)]:  # fmt: skip
        assert upcast(torch.ones(2, dtype=dtype)).dtype == expected


def test_bf16_autocast_runs_matmuls_in_bf16():
    a = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32
