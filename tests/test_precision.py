import pytest
import torch

from lessons_lib import precision
from lessons_lib.precision import autocast, grad_scaler, param_dtype, resolve_precision, upcast


def test_precision_resolution_and_errors():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("tf32", "cpu") == "fp32"
    assert resolve_precision("tf32", "cuda") == "tf32"
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="fp16 autocast is not supported for training on CPU"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("fp64", "cpu") == "fp64"
    with pytest.raises(ValueError, match="MPS has no float64"):
        resolve_precision("fp64", "mps")


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_exactly_where_it_is_native(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: native)
    assert resolve_precision("auto", "cuda") == ("bf16" if native else "fp16")
    assert resolve_precision("auto", "mps") == "fp32"


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


def test_grad_scaler_scales_only_for_fp16():
    assert grad_scaler("fp16", "cpu").is_enabled()
    assert not any(grad_scaler(p, "cpu").is_enabled() for p in ("fp32", "bf16", "fp64"))
