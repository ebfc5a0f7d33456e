"""Number formats for training (lesson 07): fp32, TF32, bf16 and fp16 autocast, and ``auto``.

- ``fp32``: everything in float32. Always correct, the reference.
- ``tf32``: float32 tensors, but matmuls on NVIDIA tensor cores round their inputs to 10 mantissa
  bits (Ampere and later). Same code, several times faster matmuls.
- ``bf16``: autocast runs matmuls in bfloat16 (8 exponent bits like fp32, so no overflow, and
  7 mantissa bits); parameters, optimizer state and reductions stay fp32.
- ``fp16``: autocast in float16 (5 exponent bits): gradients can underflow, so the loss is
  scaled up before backward and the gradients scaled back (``torch.amp.GradScaler``).
- ``fp64``: parameters and activations in float64, no autocast. Several times slower, but its
  results agree across CPUs and thread counts far beyond the printed digits, where float32's
  kernels differ in the last bits and training amplifies it; the course's CI size runs in it.
- ``auto``: the fastest correct choice for the device: bf16 on CUDA GPUs that support it (else
  fp16), bf16 on CPUs with native bf16 instructions (AVX512-BF16/AMX), else fp32; fp32 on MPS.
"""

from __future__ import annotations

import contextlib

import torch

from .utils import UserError

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16", "fp64")
# the dtype of the parameters (and of everything autocast leaves alone) under each precision
PARAM_DTYPES = {"fp64": torch.float64}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when oneDNN can run bf16 matmuls natively; elsewhere bf16 is emulated and slow."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Turn ``auto`` into a concrete precision and check that the device supports the choice."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision == "tf32" and device.type != "cuda":
        return "fp32"  # TF32 is an NVIDIA tensor-core format; elsewhere fp32 is what runs
    if precision == "fp64" and device.type == "mps":
        raise UserError("MPS has no float64; use precision fp32 (or run on the CPU).")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("fp16 autocast is not supported for training on CPU; use bf16 or fp32.")
    return precision


def param_dtype(precision: str) -> torch.dtype:
    """The dtype a model's parameters are kept in under a resolved ``precision``."""
    return PARAM_DTYPES.get(precision, torch.float32)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (bf16/fp16 logits before a softmax or a loss; float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def set_tf32(enabled: bool) -> None:
    """Let float32 matmuls use TF32 tensor cores (no effect without an NVIDIA Ampere+ GPU)."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The forward-pass context for a resolved ``precision`` (a no-op for fp32/tf32)."""
    dtype = _AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """Loss scaling for fp16; disabled (a pass-through) for every other precision."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
