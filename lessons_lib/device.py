"""Which device to run on (the best one here, or the one asked for), what it can compute, and how to
wait for it (lesson 00)."""

from __future__ import annotations

import os

import torch

from .utils import UserError

DEVICE_ENV = "LESSONS_DEVICE"


def get_device(preferred: str | None = None) -> torch.device:
    """cuda, then mps, then cpu; ``preferred`` or ``$LESSONS_DEVICE`` overrides the choice."""
    choice = preferred or os.environ.get(DEVICE_ENV) or ""
    if choice:
        device = torch.device(choice)
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise UserError(f"Device {choice!r} is not available here; use 'cpu' or leave it unset.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def has_float64(device: torch.device | str) -> bool:
    """Whether ``device`` computes in float64: Apple's MPS does not (``.to("mps")`` of a float64
    tensor raises TypeError), CPUs and CUDA GPUs do."""
    return torch.device(device).type != "mps"


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished the work queued on it. CUDA and MPS run kernels
    asynchronously: a timer read without this measures how fast kernels were launched, not run."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
